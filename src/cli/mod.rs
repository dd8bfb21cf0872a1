//! The command line. `--help` is the reference: every flag is described here.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

mod readers;
pub use readers::*;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (warnings may have been printed)
  1  the command ran but found problems (recipients that failed, broken links)
  2  error: bad input or configuration, or a send stopped by its server; printed on one line
  3  another `newsletter send` is running (it holds the lock); nothing was done (cron's
     `send` without an issue exits 0 quietly then)
130  interrupted (Ctrl-C, SIGTERM): in-flight messages were recorded; run again to resume";

/// The command line, with the exit codes after the help of every command and sub-command
/// (`newsletter suppress add --help` too), as the manual pages have them.
pub fn command() -> clap::Command {
    fn with_exit_codes(cmd: clap::Command) -> clap::Command {
        cmd.after_help(EXIT_CODES).mut_subcommands(with_exit_codes)
    }
    with_exit_codes(Cli::command())
}

/// The arguments of this process, or clap's message and exit.
pub fn parse() -> Cli {
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

#[derive(Debug, Parser)]
#[command(
    name = "newsletter",
    version,
    about = "Write, check and deliver the OpenInfra Foundation's monthly newsletter"
)]
pub struct Cli {
    /// Configuration file [default: newsletter.yaml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print errors only
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a project of your own in DIR (default: here): newsletter.yaml with your
    /// newsletter's name, sender, postal address and site, your projects, and the folders.
    /// On a terminal it asks for what the flags do not give
    Init(InitArgs),
    /// Check that a send can work, one line each, ok or what to fix: the configuration, the
    /// secrets, a login to each relay (EHLO, STARTTLS, AUTH; no mail is sent), and the DNS
    /// records (DKIM keys published and matching, SPF covering the relays, DMARC with rua=,
    /// the return path's MX). Exits 1 when something needs fixing
    Doctor(DoctorArgs),
    /// Render an issue as the email it will become: prints a summary and the text part,
    /// writes out/ISSUE/email.html, email.txt, email.eml and email.mjml
    Preview(PreviewArgs),
    /// Check an issue before it goes out: the offline checks (errors and warnings), then every
    /// link and image online. Exits 1 when anything is broken
    Check(CheckArgs),
    /// Start a new issue: newsletters/YYYY-MM.md with the usual sections
    New(NewArgs),
    /// Deliver an issue to the recipient list over SMTP, throttled; or a dry run, or a test
    /// send to the staff inboxes
    Send(SendArgs),
    /// Where each issue stands (draft, scheduled, due, interrupted, partial, complete), or one
    /// issue in detail with what cron will do with it
    Status(StatusArgs),
    /// How an issue did: delivered, bounced, complained, unsubscribed, reads and clicks
    /// (machines taken out, by reason), clicks by section and the top links, beside the issue
    /// sent before it. Counts only: nothing names a reader
    Report(ReportArgs),
    /// Read new mail in the bounce mailbox (delivery reports, complaints, unsubscribe requests),
    /// act on it once and print a summary: hard bounces and complaints suppress the address
    /// (more than bounces.mass_guard alike at one domain are held for `bounces review`), soft
    /// bounces count towards bounces.soft_limit
    Bounces(BouncesArgs),
    /// DMARC aggregate reports: read what is new in dmarc.mailbox (or the maildir, mbox or
    /// files given) and sum up the reports held: messages by reporter and by source, ours or
    /// not, DKIM and SPF alignment, what receivers did, and warnings with what to do. Reports
    /// in the bounce mailbox are read by `newsletter bounces`
    Dmarc(DmarcArgs),
    /// Apply `retention`: reduce the per-reader records of old issues to their counts, delete
    /// sign-ups never confirmed, give the space back (serve keeps answering). Cron's `send`
    /// does it once a day when retention is set
    Prune {
        /// Say what would be removed; remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Output: text for people, json for scripts
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// A consistent copy of the ledger, taken while serve answers and a send runs, with its
    /// key file beside it (FILE.key, readable by you only): keep both, elsewhere than this disk
    Backup {
        /// The copy to write (a new file)
        file: PathBuf,
        /// Output: text for people, json for scripts
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Restore a backup (and FILE.key) as the ledger: checked first (integrity, release, key);
    /// refused over a live ledger unless --force, which keeps the replaced one beside it
    Restore {
        /// The backup, as `newsletter backup` wrote it
        file: PathBuf,
        /// Replace the ledger that is there (stop serve and cron first)
        #[arg(long)]
        force: bool,
    },
    /// Manage the addresses that never get the newsletter
    #[command(subcommand)]
    Suppress(SuppressCommand),
    /// A reader's rights: what is held about them and why they are (not) mailed, all of it
    /// as JSON, and erasure
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
    /// The web service behind the links in every message: one-click unsubscribe (RFC 8058),
    /// sign-up with double opt-in, the preference centre, the issue archive and its feed,
    /// /healthz. Runs until SIGTERM or Ctrl-C
    Serve {
        /// Address and port [default: serve.listen of the configuration, 127.0.0.1:8026]
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<String>,
    },
    /// The archive: `--out DIR` writes it as static files (index.html, ISSUE/index.html,
    /// feed.xml); `publish ISSUE` replaces an issue's page, kept as it was sent, with the file's
    #[command(args_conflicts_with_subcommands = true)]
    Archive {
        /// The folder
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        #[command(subcommand)]
        action: Option<ArchiveCommand>,
    },
    /// Work with layouts: `layout export` writes the built-in one out for editing
    #[command(subcommand)]
    Layout(LayoutCommand),
    /// Print the DNS TXT records to publish for the configured DKIM keys (dkim.selector,
    /// dkim.ed25519_selector; keys from the environment)
    Dkim {
        /// Output: text for people, json for scripts
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a shell completion script: `newsletter completions bash > /etc/bash_completion.d/newsletter`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (newsletter.1 and one per command) into a folder, e.g.
    /// /usr/local/share/man/man1
    Man {
        /// The folder
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print the one-click unsubscribe URL of an address, as an issue carries it (the token
    /// is opaque: see the README for its format)
    UnsubscribeUrl(ReaderLinkArgs),
    /// Print the preference centre's URL of an address, as an issue carries it: where the
    /// reader chooses their projects
    PreferencesUrl(ReaderLinkArgs),
}

/// A reader's own link: `unsubscribe-url` and `preferences-url`.
#[derive(Debug, clap::Args)]
pub struct ReaderLinkArgs {
    /// The address
    #[arg(required_unless_present = "recipients")]
    pub email: Option<String>,
    /// The issue the link is for (an unsubscribe through it records the issue)
    #[arg(long, default_value = "manual")]
    pub issue: String,
    /// One URL per valid row of this recipient list instead (e.g. for a website's import)
    #[arg(long, value_name = "FILE", conflicts_with = "email")]
    pub recipients: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The folder of the new project (made when missing) [default: the current folder]
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The newsletter's name, e.g. "Kata Containers News"
    #[arg(long)]
    pub name: Option<String>,
    /// Who sends it, as the From line shows, e.g. "Kata Containers community"
    #[arg(long)]
    pub sender: Option<String>,
    /// The From address, e.g. news@katacontainers.io
    #[arg(long, value_name = "EMAIL")]
    pub from: Option<String>,
    /// The postal address printed in every footer (anti-spam laws require one)
    #[arg(long, value_name = "TEXT")]
    pub postal_address: Option<String>,
    /// The website, e.g. https://katacontainers.io: serve's pages go under /newsletter/
    #[arg(long, value_name = "URL")]
    pub site: Option<String>,
    /// The projects whose news get sections of their own, comma-separated ("" for none)
    #[arg(long, value_name = "NAMES")]
    pub projects: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Check the configuration and secrets only: no relay login, no DNS
    #[arg(long)]
    pub offline: bool,
    /// The DNS server to ask [default: the system's, from /etc/resolv.conf]
    #[arg(long, value_name = "ADDR:PORT")]
    pub resolver: Option<String>,
    /// Output: text for people, json for scripts
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The issue: a name such as 2025-07 or a path
    pub issue: String,

    /// Skip the network: only the offline checks
    #[arg(long)]
    pub offline: bool,

    /// Ask every site again instead of reusing results younger than check.cache_for
    #[arg(long, conflicts_with = "offline")]
    pub no_cache: bool,

    /// The recipient list whose columns the issue's {{variables}} must name [default:
    /// `recipients` of the configuration, when it exists]
    #[arg(long, value_name = "FILE")]
    pub recipients: Option<std::path::PathBuf>,

    /// Output: text for people, json for scripts
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// One issue in detail: sent, failed, pending, suppressed, possibly duplicated, the rate
    /// achieved and the last errors
    pub issue: Option<String>,

    /// With ISSUE: list every recipient who did not get it, with the server's reply
    #[arg(long, requires = "issue")]
    pub failed: bool,

    /// List the bounces and complaints read from the bounce mailbox (of ISSUE, or of all)
    #[arg(long, conflicts_with = "failed")]
    pub bounces: bool,

    /// Output: text for people, json for scripts
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The issue, e.g. 2025-07; or a period with --year, or --since and --until
    #[arg(required_unless_present_any = ["year", "since"], conflicts_with_all = ["year", "since", "until"])]
    pub issue: Option<String>,

    /// A calendar year's figures, as an annual report quotes them
    #[arg(long, value_name = "YYYY", conflicts_with_all = ["since", "until"])]
    pub year: Option<i32>,

    /// A period's first day (UTC)
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub since: Option<chrono::NaiveDate>,

    /// The day after the period's last (UTC) [default: tomorrow]
    #[arg(long, value_name = "YYYY-MM-DD", requires = "since")]
    pub until: Option<chrono::NaiveDate>,

    /// How many of the most clicked links to list
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub links: usize,

    /// Output: text for people, json or csv (a period's issues) for scripts
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,

    /// Also write the report as one self-contained page (charts in inline SVG, no script)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Csv,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BouncesArgs {
    #[command(subcommand)]
    pub review: Option<BouncesCommand>,

    /// Classify and print, change nothing: not the ledger, not the mailbox
    #[arg(long)]
    pub dry_run: bool,

    /// Read this maildir (the folder holding new/ and cur/) instead of bounces.source
    #[arg(long, value_name = "DIR", conflicts_with = "mbox")]
    pub maildir: Option<PathBuf>,

    /// Read this mbox file instead of bounces.source
    #[arg(long, value_name = "FILE")]
    pub mbox: Option<PathBuf>,

    /// Output: a summary for people, or json: one object per report and recipient
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct DmarcArgs {
    /// Report files (.xml, .xml.gz, .zip, or a report email saved as a file), or folders of
    /// them, read instead of dmarc.mailbox; their reports are kept like the mailbox's
    #[arg(value_name = "FILE", conflicts_with_all = ["maildir", "mbox"])]
    pub files: Vec<PathBuf>,

    /// Read every message of this maildir (new/ and cur/, nothing moved) instead of dmarc.mailbox
    #[arg(long, value_name = "DIR", conflicts_with = "mbox")]
    pub maildir: Option<PathBuf>,

    /// Read every message of this mbox file instead of dmarc.mailbox
    #[arg(long, value_name = "FILE")]
    pub mbox: Option<PathBuf>,

    /// Sum up the reports whose days end on or after this day (UTC) [default: 30 days ago;
    /// with files, a maildir or an mbox: all they hold]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub since: Option<chrono::NaiveDate>,

    /// Output: text for people, json for scripts (per report: file, org, report_id, domain,
    /// begin, end, rows, messages, dkim_pass, spf_pass, sources; and unreadable)
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum BouncesCommand {
    /// The groups the mass guard held (more than bounces.mass_guard readers at one domain
    /// with one diagnostic in one run): without GROUP, list them; with it, list its readers,
    /// or decide
    Review {
        /// The group's number, as the list shows it
        group: Option<i64>,
        /// Suppress every reader of the group: the failure was theirs
        #[arg(long, requires = "group", conflicts_with = "reject")]
        accept: bool,
        /// Suppress none of them: the failure was not theirs (a blocklisting, a receiver's fault)
        #[arg(long, requires = "group")]
        reject: bool,
        /// Output: text for people, json for scripts
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Make ISSUE's archive page again from its file (an edit after the send shows only then)
    Publish {
        /// The issue: a name such as 2025-07 or a path
        issue: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LayoutCommand {
    /// Write the built-in layout's files into DIR [default: LAYOUTS/inside-openinfra, where
    /// LAYOUTS is `layouts` of the configuration]. A file kept there replaces the built-in
    /// one; delete the files you do not change, and the rest keep coming from the binary
    Export {
        /// The folder to write the layout into
        dir: Option<PathBuf>,
        /// Replace files that exist
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The issue: a name such as 2025-07 or a path. Without it, send every issue whose
    /// send_at has passed and whose delivery is not complete (the cron entry)
    pub issue: Option<String>,

    /// Do everything but talk to the server: print the plan and the estimated duration, and
    /// write the first messages as .eml files under out/ISSUE/dry-run/
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: write every message, not only the first ones
    #[arg(long, requires = "dry_run")]
    pub all: bool,

    /// Send to the test recipients of the configuration (or --to), with "[TEST] " before the
    /// subject and neutral values (archive.fields) in every field, never a reader's
    #[arg(long, conflicts_with = "dry_run")]
    pub test: bool,

    /// With --test: these addresses instead of test_recipients
    #[arg(long, value_delimiter = ',', value_name = "EMAIL,...", requires = "test")]
    pub to: Vec<String>,

    /// Send even though the offline checks found errors (see `newsletter check`); for one
    /// named issue only, never from cron
    #[arg(long, requires = "issue", conflicts_with_all = ["dry_run", "test"])]
    pub force: bool,

    /// Do not ask for confirmation (needed when not on a terminal)
    #[arg(long, short)]
    pub yes: bool,

    /// Send a named issue now although its send_at is still to come (without it, such a
    /// send is refused: cron sends the issue when it is due)
    #[arg(long, requires = "issue", conflicts_with_all = ["dry_run", "test"])]
    pub now: bool,

    /// The recipient list [default: `recipients` of the configuration]
    #[arg(long, value_name = "FILE")]
    pub recipients: Option<PathBuf>,

    /// Give recipients who failed permanently in an earlier run (and are not suppressed) one
    /// more attempt, e.g. after a relay rule that refused them was fixed
    #[arg(long, requires = "issue", conflicts_with = "test")]
    pub retry_failed: bool,

    /// Go on although the circuit breaker stopped the send (hard bounces or complaints over
    /// throttle.breaker's limits): for this run, after looking at why
    #[arg(long, requires = "issue", conflicts_with_all = ["test", "dry_run"])]
    pub resume_despite_rates: bool,

    /// Send to the first N recipients still to send, then stop; the next run goes on from
    /// there. The issue is complete only when a run without --limit finds no one left
    #[arg(long, value_name = "N", requires = "issue", conflicts_with = "test")]
    pub limit: Option<u64>,

    /// Only recipients whose COLUMN has VALUE (case-insensitive); repeat for more values of
    /// a column (any of them) or more columns (all of them). Narrows the issue's `segment:`.
    /// Those sent are recorded, so a later send without --where skips them
    #[arg(
        long = "where",
        value_name = "COLUMN=VALUE",
        requires = "issue",
        conflicts_with = "test"
    )]
    pub where_: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    /// The issue: a name such as 2025-07 (from the newsletters folder) or a path
    pub issue: String,

    /// Personalize for this recipient of the list [default: the list's first row, or a sample]
    #[arg(long = "as", value_name = "EMAIL")]
    pub as_recipient: Option<String>,

    /// Recipient list to take the recipient from [default: `recipients` of the configuration,
    /// else recipients.example.csv]
    #[arg(long, value_name = "FILE")]
    pub recipients: Option<PathBuf>,

    /// The edition of a reader who chose these projects (ids from the layout's
    /// projects.yaml, e.g. kata-containers,zuul), as the preference centre sets them
    #[arg(long, value_name = "IDS")]
    pub projects: Option<String>,

    /// Open the HTML in a browser ($BROWSER, else the desktop's default)
    #[arg(long)]
    pub open: bool,

    /// Output format of the summary
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Serve the preview on 127.0.0.1 and reload the browser when the issue, the layout or
    /// the project registry changes
    #[arg(long, conflicts_with = "format")]
    pub serve: bool,

    /// With --serve: the port [default: preview.port of the configuration, 8025]
    #[arg(long, requires = "serve")]
    pub port: Option<u16>,
}

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The month of the issue, YYYY-MM
    pub month: String,

    /// The author in the front matter [default: `git config user.name`]
    #[arg(long, value_name = "NAME")]
    pub author: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    /// Every argument and command says what it is in --help (a bare `<EMAIL>` or `<FILE>`
    /// leaves the reader guessing), and every help ends with the exit codes.
    #[test]
    fn every_argument_has_help_and_every_command_the_exit_codes() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd
                .get_after_help()
                .is_none_or(|h| !h.to_string().contains("Exit codes:"))
            {
                missing.push(format!("{path}: no exit codes"));
            }
            for arg in cmd.get_arguments() {
                let builtin = ["help", "version"].contains(&arg.get_id().as_str());
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}: no help", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {}: no description", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::command(), "newsletter", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
