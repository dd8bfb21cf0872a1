//! `newsletter send [ISSUE]`: the real send (resumable, recorded in the ledger), a dry run, a
//! test send; without an issue, the cron entry that sends whatever is due.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use newsletter::check;
use newsletter::compile::Rendered;
use newsletter::config::Config;
use newsletter::deliver::connect::Connector;
use newsletter::deliver::queue::{self, Composer, Plan, Selection};
use newsletter::deliver::recorder::Recorder;
use newsletter::deliver::run::{self, Settings};
use newsletter::deliver::smtp::SmtpConnection;
use newsletter::deliver::throttle::{Rate, Throttle};
use newsletter::diagnostic::Severity;
use newsletter::dkim::Signer;
use newsletter::issue::{self, Issue};
use newsletter::ledger::{self, Ledger};
use newsletter::personalize::Personalizer;
use newsletter::recipients::{self, Recipient};
use newsletter::report::{self, Progress, duration, thousands};
use newsletter::unsubscribe::{SECRET_VAR, Secret};

use crate::Outcome;
use crate::cli::SendArgs;

/// Messages personalized ahead of the senders: enough to keep them busy, few enough that a
/// long list never sits in memory.
const QUEUE_DEPTH: usize = 32;

pub fn run(config_path: Option<&Path>, quiet: bool, args: SendArgs) -> Result<Outcome> {
    let config = super::load_config(config_path, quiet)?;
    let Some(name) = &args.issue else {
        let flag = if args.test {
            "--test"
        } else if args.dry_run {
            "--dry-run"
        } else {
            "--recipients FILE"
        };
        if args.dry_run || args.test || args.recipients.is_some() {
            bail!("name the issue: `newsletter send ISSUE {flag}`; without an issue, send delivers what is due");
        }
        return cron(&config, quiet);
    };
    let path = issue::find(name, &config.newsletters)?;
    if args.dry_run || args.test {
        return send_issue(&config, &path, &args, quiet, None);
    }
    let _lock = ledger::lock(&config.ledger)?;
    let mut ledger = Ledger::open(&config.ledger)?;
    send_issue(&config, &path, &args, quiet, Some(&mut ledger))
}

/// Sends, oldest first, every issue whose `send_at` has passed and whose delivery is not
/// complete. With nothing due it prints nothing.
fn cron(config: &Config, quiet: bool) -> Result<Outcome> {
    let _lock = ledger::lock(&config.ledger)?;
    let now = chrono::Utc::now();
    let mut due = Vec::new();
    let mut ledger: Option<Ledger> = None;
    let mut broken = Vec::new();
    for (_, path) in issue::list(&config.newsletters) {
        let issue = match Issue::load(&path) {
            Ok(issue) => issue,
            Err(e) => {
                // Its send_at cannot be known: never skip it quietly.
                broken.push(format!("{e:#}"));
                continue;
            }
        };
        let Some(send_at) = issue.front.send_at.filter(|t| *t <= now) else {
            continue;
        };
        let ledger = match &mut ledger {
            Some(l) => l,
            None => ledger.insert(Ledger::open(&config.ledger)?),
        };
        if ledger.issue_state(&issue.slug)?.is_some_and(|s| s.complete) {
            continue;
        }
        due.push((send_at, path));
    }
    if !broken.is_empty() {
        bail!(
            "nothing sent: {} issue{} cannot be read, so cron cannot tell whether {} due: {}",
            broken.len(),
            if broken.len() == 1 { "" } else { "s" },
            if broken.len() == 1 { "it is" } else { "they are" },
            broken.join("; ")
        );
    }
    due.sort();
    let mut worst = Outcome::Success;
    let args = SendArgs {
        issue: None,
        dry_run: false,
        all: false,
        test: false,
        to: Vec::new(),
        force: false,
        yes: true,
        recipients: None,
        retry_failed: false,
        limit: None,
        where_: Vec::new(),
    };
    for (_, path) in due {
        let ledger = ledger.as_mut().expect("opened for every due issue");
        match send_issue(config, &path, &args, quiet, Some(ledger))? {
            Outcome::Interrupted => return Ok(Outcome::Interrupted),
            Outcome::Problems => worst = Outcome::Problems,
            Outcome::Success => {}
        }
    }
    Ok(worst)
}

fn send_issue(
    config: &Config,
    path: &Path,
    args: &SendArgs,
    quiet: bool,
    ledger: Option<&mut Ledger>,
) -> Result<Outcome> {
    let issue = Issue::load(path)?;
    let rendered = newsletter::compose(&issue, config)?;
    let header = super::check::csv_header(config, args.recipients.as_deref())?;
    let findings = check::offline(&issue, &rendered, header.as_deref());
    for f in findings.iter().filter(|f| !quiet || f.severity == Severity::Error) {
        eprintln!("{}: {}", f.severity.label(), f.warning);
    }
    let errors = check::errors(&findings);
    // A test send is how a writer sees the problem in a real inbox: it goes out regardless.
    if errors > 0 && !args.dry_run && !args.test && !args.force {
        bail!(
            "{}: not sent: the offline checks found {errors} error{} (above); fix {}, or send anyway with --force",
            path.display(),
            if errors == 1 { "" } else { "s" },
            if errors == 1 { "it" } else { "them" }
        );
    }
    let rate: Rate = config
        .throttle
        .rate
        .parse()
        .map_err(|e| anyhow::anyhow!("throttle.rate: {e}"))?;
    let secret = match (Secret::from_env(), args.dry_run) {
        (Some(secret), _) => secret,
        (None, true) => {
            eprintln!(
                "warning: {SECRET_VAR} is not set: unsubscribe links in the dry run are signed with a placeholder key"
            );
            Secret::placeholder()
        }
        (None, false) => bail!("{SECRET_VAR} is not set: unsubscribe links must be signed with the website's secret"),
    };
    let mut personalizer = Personalizer::new(&rendered, config, secret)?;
    if args.test {
        personalizer = personalizer.for_test_send();
    }
    let dkim = Signer::from_config(config, |var| std::env::var(var).ok())?;
    let return_path = config.return_path.as_deref().unwrap_or(&config.from.address);
    let composer = Composer {
        personalizer: &personalizer,
        dkim: dkim.as_ref(),
        return_path: return_path
            .parse()
            .with_context(|| format!("return_path `{return_path}` is not an address"))?,
    };
    if args.test {
        return test_send(config, args, &composer, rate, quiet);
    }

    let list = args.recipients.clone().unwrap_or_else(|| config.recipients.clone());
    // A dry run reads the ledger when there is one, to plan what a real run would do.
    let dry_ledger = match (&ledger, args.dry_run && config.ledger.is_file()) {
        (None, true) => Some(Ledger::open(&config.ledger)?),
        _ => None,
    };
    let mut ledger = ledger;
    if let Some(ledger) = ledger.as_deref_mut() {
        let max = config.throttle.max_attempts;
        let given_up = ledger.give_up(&rendered.slug, max)?;
        if given_up > 0 && !quiet {
            eprintln!(
                "gave up on {given_up} recipient(s) still failing temporarily after {max} attempts (throttle.max_attempts)"
            );
        }
    }
    let mut filter = issue.segment();
    filter.extend(queue::parse_where(&args.where_)?);
    let selection = Selection {
        issue: rendered.slug.clone(),
        retry_failed: args.retry_failed,
        filter,
        limit: args.limit,
    };
    // A run that leaves part of the issue's audience for later does not complete it.
    let partial = args.limit.is_some() || !args.where_.is_empty();
    let mut plan = queue::plan(&list, ledger.as_deref().or(dry_ledger.as_ref()), selection)?;
    if let Some(first) = &plan.first {
        // A template field the list lacks fails here, before anything is sent.
        composer.job(first, false)?;
    }
    if !quiet {
        report_skipped(&list, &plan);
    }
    if args.dry_run {
        return dry_run(config, args, &rendered, &composer, &list, &plan, rate);
    }
    let ledger = ledger.expect("a real send has the ledger");
    if plan.to_send == 0 {
        if plan.rows == 0 || plan.already_sent + plan.already_failed + plan.suppressed == 0 {
            bail!(
                "{} has no recipient to send to ({} rows read)",
                list.display(),
                plan.rows
            );
        }
        let run = ledger.start_issue(&rendered, plan.selection.describe().as_deref())?;
        ledger.finish_run(run, 0, 0, 0.0, "complete", !partial)?;
        if !quiet {
            println!("Nothing left to send for {}: {}", rendered.slug, resume_counts(&plan));
        }
        return Ok(Outcome::Success);
    }
    if let Some(started) = ledger.changed_since_sent(&rendered)?
        && plan.already_sent > 0
    {
        eprintln!(
            "warning: {}: the issue has changed since its send started ({started}): {} reader(s) got the earlier text, the {} left get this one; an issue is known by its file name, so a different issue needs a new file",
            rendered.slug,
            thousands(plan.already_sent),
            thousands(plan.to_send)
        );
    }
    confirm(&rendered, plan.to_send, rate, args.yes)?;
    let known = std::mem::take(&mut plan.known);
    let recipients = queue::selected(&list, known, Some(ledger.reopen()?), plan.selection.clone())?;
    let delivery = Delivery {
        config,
        composer: &composer,
        rate,
        quiet,
        total: plan.to_send,
        list: Some(&list),
        ledger: Some((ledger, &rendered)),
        selection: plan.selection.describe(),
        partial: partial || plan.held_back > 0,
    };
    let result = delivery.run(recipients)?;
    if !quiet && plan.already_sent + plan.resend > 0 {
        println!("Resumed: {}", resume_counts(&plan));
    }
    Ok(result)
}

fn resume_counts(plan: &Plan) -> String {
    format!(
        "{} already sent, {} failed before, {} suppressed, {} possibly duplicated (in flight when a run stopped)",
        thousands(plan.already_sent),
        thousands(plan.already_failed),
        thousands(plan.suppressed),
        thousands(plan.resend)
    )
}

fn test_send(config: &Config, args: &SendArgs, composer: &Composer<'_>, rate: Rate, quiet: bool) -> Result<Outcome> {
    let to = if args.to.is_empty() {
        config.test_recipients.clone()
    } else {
        args.to.clone()
    };
    if to.is_empty() {
        bail!("no test recipients: add test_recipients to newsletter.yaml or pass --to EMAIL,...");
    }
    // The staff see the issue as the list's first reader would.
    let template = match recipients::first(&config.recipients) {
        Ok(Some(r)) => r,
        _ => Recipient::sample(),
    };
    let mut list = Vec::new();
    for address in &to {
        let email = recipients::normalize_address(address).map_err(|why| anyhow::anyhow!("--to `{address}`: {why}"))?;
        list.push((
            Recipient {
                email,
                line: 0,
                fields: template.fields.clone(),
            },
            false,
        ));
    }
    let delivery = Delivery {
        config,
        composer,
        rate,
        quiet,
        total: list.len() as u64,
        list: None,
        ledger: None,
        selection: None,
        partial: false,
    };
    delivery.run(list.into_iter())
}

fn report_skipped(list: &Path, plan: &Plan) {
    const SHOWN: usize = 20;
    for s in plan.skipped_rows.iter().take(SHOWN) {
        eprintln!(
            "skipped: {}:{}: {}: {}",
            list.display(),
            s.line,
            s.reason.label(),
            s.detail
        );
    }
    let total = plan.skipped_total();
    if total > SHOWN as u64 {
        eprintln!("skipped: ... and {} more rows", thousands(total - SHOWN as u64));
    }
}

fn eta(count: u64, rate: Rate) -> String {
    match rate.per_second() {
        Some(r) => duration(Duration::from_secs_f64(count as f64 / r)),
        None => "as fast as the server accepts".into(),
    }
}

fn dry_run(
    config: &Config,
    args: &SendArgs,
    rendered: &Rendered,
    composer: &Composer<'_>,
    list: &Path,
    plan: &Plan,
    rate: Rate,
) -> Result<Outcome> {
    let dir = config.out.join(&rendered.slug).join("dry-run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let limit = if args.all { usize::MAX } else { config.dry_run_samples };
    let ledger = config
        .ledger
        .is_file()
        .then(|| Ledger::open(&config.ledger))
        .transpose()?;
    let mut written = 0u64;
    let known = plan.known.clone();
    for (recipient, resend) in queue::selected(list, known, ledger, plan.selection.clone())?.take(limit) {
        let job = composer.job(&recipient, resend)?;
        written += 1;
        let file = dir.join(format!(
            "{written:06}-{}.eml",
            recipient.email.replace(['/', '\\'], "_")
        ));
        std::fs::write(&file, &job.bytes).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let skipped: Vec<String> = plan
        .skipped
        .iter()
        .map(|(reason, n)| format!("{} {}", thousands(*n), reason.label()))
        .collect();
    let t = &config.throttle;
    println!("Dry run of '{}': nothing was sent.", rendered.subject);
    println!("Recipients read: {} from {}", thousands(plan.rows), list.display());
    println!("To send:         {}", thousands(plan.to_send));
    println!(
        "Skipped:         {}{}",
        thousands(plan.skipped_total()),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join(", "))
        }
    );
    if plan.already_sent + plan.already_failed + plan.suppressed + plan.resend > 0 {
        println!("Ledger:          {}", resume_counts(plan));
    }
    if let Some(selection) = plan.selection.describe() {
        println!(
            "Selection:       {selection}: {} outside the segment, {} held back by --limit",
            thousands(plan.outside),
            thousands(plan.held_back)
        );
    }
    println!(
        "Throttle:        {rate}, {} connections{}",
        t.concurrency,
        t.batch_size
            .map(|b| format!(
                ", pause {} after every {b}",
                newsletter::config::duration::format(&t.batch_pause)
            ))
            .unwrap_or_default()
    );
    println!("Estimated time:  {}", eta(plan.to_send, rate));
    println!(
        "Wrote {} message{} to {}",
        thousands(written),
        if written == 1 { "" } else { "s" },
        dir.display()
    );
    Ok(Outcome::Success)
}

fn confirm(rendered: &Rendered, count: u64, rate: Rate, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "not on a terminal: pass --yes to send '{}' to {} recipients",
            rendered.subject,
            thousands(count)
        );
    }
    eprint!(
        "Send '{}' to {} recipients at {rate} (about {})? [y/N] ",
        rendered.subject,
        thousands(count),
        eta(count, rate)
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("not sent: the answer was not yes");
    }
    Ok(())
}

/// One delivery run: connections, throttle, progress and, for real sends, the ledger.
struct Delivery<'a> {
    config: &'a Config,
    composer: &'a Composer<'a>,
    rate: Rate,
    quiet: bool,
    total: u64,
    /// The recipient list, to name with the line of a failed recipient (none for test sends).
    list: Option<&'a Path>,
    ledger: Option<(&'a mut Ledger, &'a Rendered)>,
    /// How the run chose its recipients, for the ledger.
    selection: Option<String>,
    /// The run sends to part of the issue's audience (--where, --limit): it never completes it.
    partial: bool,
}

impl Delivery<'_> {
    fn run(self, recipients: impl Iterator<Item = (Recipient, bool)> + Send) -> Result<Outcome> {
        let config = self.config;
        let connector = Arc::new(Connector::new(&config.smtp, |var| std::env::var(var).ok())?);
        // One thread drives every connection; the producer personalizes on another.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // Refused, TLS and login failures stop the run here, before any message.
        let first = runtime.block_on(connector.connect())?;
        let concurrency = config.throttle.concurrency.max(1);
        let mut transports = vec![SmtpConnection::new(Arc::clone(&connector), Some(first))];
        transports.extend((1..concurrency).map(|_| SmtpConnection::new(Arc::clone(&connector), None)));
        let t = &config.throttle;
        let settings = Settings {
            retries: t.retries,
            retry_delay: t.retry_delay,
            batch_size: t.batch_size.filter(|b| *b > 0),
            batch_pause: t.batch_pause,
            max_consecutive_failures: t.max_consecutive_failures.max(1),
        };
        let throttle = Throttle::new(self.rate, t.burst);
        let mut ledger_run = match self.ledger {
            Some((ledger, rendered)) => {
                let run = ledger.start_issue(rendered, self.selection.as_deref())?;
                Some((ledger, rendered.slug.as_str(), run))
            }
            None => None,
        };
        let recorder = ledger_run.as_mut().map(|(ledger, issue, _)| Recorder {
            ledger,
            issue,
            error: None,
            suppressed: 0,
        });
        let mut observers = (Progress::new(self.total, self.quiet), recorder);
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_DEPTH);
        let composer = self.composer;
        let (outcome, unpersonalized) = std::thread::scope(|scope| {
            let producer = scope.spawn(move || composer.produce(recipients, tx));
            let outcome = runtime.block_on(run::deliver(
                rx,
                transports,
                throttle,
                &settings,
                &mut observers,
                interrupted(),
            ));
            (outcome, producer.join().unwrap_or_default())
        });
        let (progress, recorder) = observers;
        progress.finish();
        let (suppressed, ledger_error) = recorder.map_or((0, None), |r| (r.suppressed, r.error));

        let failed = outcome.failed + unpersonalized.len() as u64;
        let issue = &self.composer.personalizer.rendered().slug;
        let at = |line: u64| match self.list {
            Some(list) => format!("{}:{line} ", list.display()),
            None => String::new(),
        };
        for f in &progress.failures {
            eprintln!("failed: {issue}: {}{}: {}", at(f.line), f.email, f.reply);
        }
        for (r, why) in &unpersonalized {
            eprintln!("failed: {issue}: {}{}: {why}", at(r.line), r.email);
        }
        if let Some((ledger, _, run)) = ledger_run {
            let complete = !self.partial
                && !outcome.interrupted
                && outcome.stopped.is_none()
                && outcome.deferred == 0
                && unpersonalized.is_empty()
                && ledger_error.is_none();
            let ended = match (&outcome.stopped, complete, &self.selection) {
                (Some(why), _, _) => why.clone(),
                (None, true, _) => "complete".to_owned(),
                (None, false, Some(selection)) if self.partial => format!("part of the list: {selection}"),
                (None, false, _) => "incomplete: temporary failures left for the next run".to_owned(),
            };
            ledger.finish_run(
                run,
                outcome.sent,
                failed,
                outcome.elapsed.as_secs_f64(),
                &ended,
                complete,
            )?;
        }
        if !self.quiet || failed > 0 {
            let secs = outcome.elapsed.as_secs_f64().max(0.001);
            println!(
                "{issue}: Sent {} of {} in {} ({:.1}/s); {} failed{}.",
                thousands(outcome.sent),
                thousands(self.total),
                report::duration(outcome.elapsed),
                outcome.sent as f64 / secs,
                thousands(failed),
                if suppressed > 0 {
                    format!(", {suppressed} of them suppressed from now on (mailbox does not exist)")
                } else {
                    String::new()
                }
            );
        }
        if let Some(e) = ledger_error {
            bail!("{e}");
        }
        if outcome.interrupted {
            eprintln!(
                "Interrupted: in-flight messages finished and were recorded; run the same command again to resume."
            );
            return Ok(Outcome::Interrupted);
        }
        if let Some(why) = outcome.stopped {
            bail!("{issue}: {why}");
        }
        Ok(if failed > 0 {
            Outcome::Problems
        } else {
            Outcome::Success
        })
    }
}

/// Resolves on Ctrl-C or SIGTERM: the run then stops taking recipients and lets the messages
/// in flight finish.
async fn interrupted() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            },
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
