//! Cron's side of sending: which issues are due (their `send_at` passed, their delivery not
//! complete), sent oldest first, under the ledger's lock.

use anyhow::Result;

use crate::config::Config;
use crate::issue::{self, Issue};
use crate::ledger::{self, Ledger};
use crate::send::session::{Completion, Mode, Request, send};

/// Sends, oldest first, every issue whose `send_at` has passed and whose delivery is not
/// complete. With nothing due it prints nothing; nor while another send holds the lock: that
/// send is doing the work, and the next run takes up whatever it leaves (so cron mails no one
/// every few minutes of a long send), nor once the warm-up's cap for the day is reached.
pub fn cron(config: &Config, quiet: bool, say: &mut dyn crate::send::report::Say) -> Result<Completion> {
    let Some(_lock) = ledger::try_lock(&config.ledger)? else {
        return Ok(Completion::Success);
    };
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
    // An issue that cannot be read is said every run (its send_at cannot be known, so it is
    // never skipped quietly), and the run ends in failure; the issues that are due still go.
    let mut worst = Completion::Success;
    for why in &broken {
        say.note(&format!("error: {why}; cron cannot tell whether it is due: fix it"));
        worst = Completion::Problems;
    }
    due.sort();
    // Today's warm-up cap is reached, or every relay's daily limit: the issues wait for
    // tomorrow, silently.
    if let Some(l) = &ledger
        && (crate::send::reputation::today(config.throttle.warmup.as_ref(), Some(l), now)?
            .is_some_and(|t| t.left() == 0)
            || crate::send::pool::left_today(&crate::send::pool::daily_left(config, Some(l), now)?) == Some(0))
    {
        due.clear();
    }
    for (_, path) in due {
        let ledger = ledger.as_mut().expect("opened for every due issue");
        let request = Request {
            issue: path,
            mode: Mode::Real,
            recipients: None,
            force: false,
            retry_failed: false,
            limit: None,
            where_: Vec::new(),
            resume_despite_rates: false,
            now: false,
            quiet,
        };
        // Cron's schedule is the confirmation.
        match send(config, &request, Some(ledger), &|_, _, _| Ok(()), &mut *say)? {
            Completion::Interrupted => return Ok(Completion::Interrupted),
            Completion::Problems => worst = Completion::Problems,
            Completion::Success => {}
        }
    }
    // Retention, at most once a day, after what was due went out (still under the lock).
    if config.retention.deliveries.is_some() || config.retention.unconfirmed_signups.is_some() {
        let ledger = match &mut ledger {
            Some(l) => l,
            None => ledger.insert(Ledger::open(&config.ledger)?),
        };
        if let Some(pruning) = crate::retention::daily(config, ledger, now)?
            && !quiet
            && (!pruning.issues.is_empty() || pruning.unconfirmed_signups > 0)
        {
            say.note(&crate::retention::describe(&pruning, false));
        }
    }
    Ok(worst)
}
