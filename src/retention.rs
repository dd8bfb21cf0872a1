//! Retention: what `retention` in the configuration keeps, applied to the ledger by `newsletter
//! prune` and, at most once a day, by cron's `send`.

use anyhow::{Result, bail};

use crate::config::Config;
use crate::human::thousands;
use crate::ledger::retention::Pruning;
use crate::ledger::{self, Ledger};

const TASK: &str = "prune";

/// Prunes by `config.retention` as of `now`, holding the send lock (a prune never runs beside
/// a send); with nothing configured, says so.
pub fn prune(config: &Config, now: chrono::DateTime<chrono::Utc>, dry_run: bool) -> Result<Pruning> {
    let retention = &config.retention;
    if retention.deliveries.is_none() && retention.unconfirmed_signups.is_none() {
        bail!(
            "retention is off: set retention.deliveries (e.g. 24 months) or retention.unconfirmed_signups (e.g. 30 days) in the configuration"
        );
    }
    let Some(_lock) = ledger::try_lock(&config.ledger)? else {
        bail!("a send is running (it holds the ledger's lock): prune when it is done");
    };
    run(config, &mut Ledger::open(&config.ledger)?, now, dry_run)
}

fn run(config: &Config, ledger: &mut Ledger, now: chrono::DateTime<chrono::Utc>, dry_run: bool) -> Result<Pruning> {
    let cutoff = |age: Option<crate::config::retention::Age>| {
        age.map(|a| a.before(now).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    let pruning = ledger.prune(
        cutoff(config.retention.deliveries).as_deref(),
        cutoff(config.retention.unconfirmed_signups).as_deref(),
        dry_run,
    )?;
    if !dry_run {
        ledger.mark_run_of(TASK)?;
    }
    Ok(pruning)
}

/// Cron's prune: when retention is set and the last prune is a day old or more. The caller
/// holds the send lock.
pub fn daily(config: &Config, ledger: &mut Ledger, now: chrono::DateTime<chrono::Utc>) -> Result<Option<Pruning>> {
    let retention = &config.retention;
    if retention.deliveries.is_none() && retention.unconfirmed_signups.is_none() {
        return Ok(None);
    }
    let last = ledger
        .last_run_of(TASK)?
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
    if last.is_some_and(|t| now - t.to_utc() < chrono::TimeDelta::days(1)) {
        return Ok(None);
    }
    run(config, ledger, now, false).map(Some)
}

/// What a prune did (or would), in a line.
pub fn describe(p: &Pruning, dry_run: bool) -> String {
    let verb = if dry_run { "would prune" } else { "pruned" };
    let size = match p.bytes_after {
        Some(after) => format!(
            "; the ledger went from {:.1} MB to {:.1} MB",
            p.bytes_before as f64 / 1e6,
            after as f64 / 1e6
        ),
        None => format!("; the ledger is {:.1} MB", p.bytes_before as f64 / 1e6),
    };
    let issues = if p.issues.is_empty() {
        "no issue".to_owned()
    } else {
        format!("{} issue(s) ({})", p.issues.len(), p.issues.join(", "))
    };
    let (reduced, deleted) = if dry_run {
        ("would be reduced", "would be deleted")
    } else {
        ("reduced", "deleted")
    };
    format!(
        "{verb} {issues}: {} delivery record(s) and {} bounce record(s) {reduced} to the issues' counts; {} unconfirmed sign-up(s) {deleted}{size}",
        thousands(p.deliveries),
        thousands(p.bounce_records),
        thousands(p.unconfirmed_signups)
    )
}
