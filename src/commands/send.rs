//! `newsletter send [ISSUE]`: the real send (resumable, recorded in the ledger), a dry run, a
//! test send; without an issue, the cron entry that sends whatever is due. Argument mapping
//! and the confirmation prompt; the work is `send::session` and `schedule`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Result, bail};
use newsletter::compile::Rendered;
use newsletter::send::report::eta;
use newsletter::send::session::{self, Completion, Mode, Request};

use super::say::Printer;
use newsletter::deliver::throttle::Rate;
use newsletter::human::thousands;
use newsletter::issue;
use newsletter::ledger::{self, Ledger};

use crate::Exit;
use crate::cli::SendArgs;

pub fn run(config_path: Option<&Path>, quiet: bool, args: SendArgs) -> Result<Exit> {
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
        return Ok(exit(newsletter::schedule::cron(
            &config,
            quiet,
            &mut Printer::default(),
        )?));
    };
    let mode = if args.dry_run {
        Mode::DryRun { all: args.all }
    } else if args.test {
        Mode::Test { to: args.to.clone() }
    } else {
        Mode::Real
    };
    let request = Request {
        issue: issue::find(name, &config.newsletters)?,
        mode,
        recipients: args.recipients.clone(),
        force: args.force,
        retry_failed: args.retry_failed,
        limit: args.limit,
        where_: args.where_.clone(),
        resume_despite_rates: args.resume_despite_rates,
        now: args.now,
        quiet,
    };
    let yes = args.yes;
    let confirm = move |rendered: &Rendered, count: u64, rate: Rate| ask(rendered, count, rate, yes);
    if !matches!(request.mode, Mode::Real) {
        return Ok(exit(session::send(
            &config,
            &request,
            None,
            &confirm,
            &mut Printer::default(),
        )?));
    }
    let _lock = ledger::lock(&config.ledger)?;
    let mut ledger = Ledger::open(&config.ledger)?;
    Ok(exit(session::send(
        &config,
        &request,
        Some(&mut ledger),
        &confirm,
        &mut Printer::default(),
    )?))
}

fn exit(completion: Completion) -> Exit {
    match completion {
        Completion::Success => Exit::Success,
        Completion::Problems => Exit::Problems,
        Completion::Interrupted => Exit::Interrupted,
    }
}

/// The confirmation on a terminal; `--yes` elsewhere.
fn ask(rendered: &Rendered, count: u64, rate: Rate, yes: bool) -> Result<()> {
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
