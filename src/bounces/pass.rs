//! One pass over the bounce mailbox: read what is new, act on each report once, and let the
//! mailbox go only after the ledger holds what was done, so a crash reads it again to no effect.

use anyhow::{Result, bail};

use super::act::{self, Handler, Outcome};
use super::guard::HeldGroup;
use super::verp::Verp;
use crate::config::Config;
use crate::config::bounces::{PASSWORD_VAR, Source};
use crate::dmarc::Taken;
use crate::ledger::{self, Ledger};
use crate::unsubscribe::{SECRET_VAR, Secrets};

/// What one pass read and did.
pub struct Pass {
    /// The mailbox, as the summary names it.
    pub mailbox: String,
    pub messages: u64,
    /// Messages that were no report (left unread).
    pub not_reports: u64,
    pub outcomes: Vec<Outcome>,
    /// Groups the mass guard holds (or would hold, in a dry run).
    pub held: Vec<HeldGroup>,
    /// DMARC aggregate reports found among the messages (kept for `newsletter dmarc`).
    pub dmarc: Taken,
}

/// Reads `source` once. A dry run acts on nothing and creates nothing; `warn` hears what limits
/// the pass (a missing secret, an old ledger).
pub fn run(config: &Config, source: &Source, dry_run: bool, warn: &mut dyn FnMut(String)) -> Result<Pass> {
    // One reader at a time: two cron runs must not act on the same report twice.
    let lock_path = config.ledger.with_extension("bounces.lock");
    let _lock = if dry_run {
        None
    } else {
        match ledger::lock_file(&lock_path)? {
            Some(lock) => Some(lock),
            None => bail!(
                "another `newsletter bounces` is running (it holds {}); this run stops",
                lock_path.display()
            ),
        }
    };
    let mut ledger = open_ledger(config, dry_run, warn)?;
    let secrets = Secrets::from_env(config.unsubscribe.accept_release_0_tokens)?;
    let verp = match (&config.bounces.return_path, &secrets) {
        (Some(_), Some(secrets)) => Some(Verp::new(&secrets.current)),
        (Some(_), None) => {
            warn(format!(
                "{SECRET_VAR} is not set: VERP addresses (bounces.return_path) cannot be read, so reports are matched by their contents"
            ));
            None
        }
        (None, _) => None,
    };
    if secrets.is_none() {
        warn(format!(
            "{SECRET_VAR} is not set: mail to the unsubscribe address cannot be verified, so it changes nothing"
        ));
    }
    let mut mailbox = crate::mailbox::open(config, source, PASSWORD_VAR, ledger.as_ref(), dry_run)?;
    let handler = Handler {
        config,
        verp,
        secrets,
        dry_run,
        mailbox: mailbox.name(),
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    let (mut messages, mut not_reports) = (0u64, 0u64);
    let mut dmarc = Taken::default();
    loop {
        let items = mailbox.next_batch()?;
        if items.is_empty() {
            break;
        }
        let mut is_report = Vec::with_capacity(items.len());
        for item in &items {
            if let Some(found) = crate::dmarc::recognise(&item.raw) {
                let kept = if dry_run { None } else { ledger.as_mut() };
                let taken = crate::dmarc::take(found, &format!("{} {}", handler.mailbox, item.id), kept)?;
                is_report.push(taken.read > 0);
                dmarc.extend(taken.let_go());
                if let (Some(ledger), Some(cursor), false) = (ledger.as_mut(), &item.cursor, dry_run) {
                    ledger.set_cursor(&handler.mailbox, cursor)?;
                }
                continue;
            }
            let found = handler.handle(item, ledger.as_mut())?;
            is_report.push(!found.is_empty());
            outcomes.extend(found);
        }
        messages += items.len() as u64;
        not_reports += is_report.iter().filter(|r| !**r).count() as u64;
        if !dry_run {
            // Committed before the messages are let go: a crash in between reads them again,
            // and the ledger's record of them makes that change nothing.
            if let Some(ledger) = ledger.as_mut() {
                ledger.commit()?;
            }
            mailbox.done(&items, &is_report)?;
        }
    }
    let held = match ledger.as_mut() {
        Some(ledger) if !dry_run => act::settle(ledger, config.bounces.mass_guard, &mut outcomes)?,
        Some(ledger) => act::would_hold(ledger, config.bounces.mass_guard, &mut outcomes)?,
        None => Vec::new(),
    };
    Ok(Pass {
        mailbox: mailbox.name(),
        messages,
        not_reports,
        outcomes,
        held,
        dmarc,
    })
}

/// A dry run reads the ledger when there is one, to say what a real run would do, but never
/// upgrades it: that is a change.
fn open_ledger(config: &Config, dry_run: bool, warn: &mut dyn FnMut(String)) -> Result<Option<Ledger>> {
    if !dry_run {
        return Ok(Some(Ledger::open(&config.ledger)?));
    }
    if !config.ledger.is_file() {
        return Ok(None);
    }
    if ledger::schema::version_of(&config.ledger)? == ledger::schema::current_version() {
        return Ok(Some(Ledger::open(&config.ledger)?));
    }
    warn(format!(
        "{} was written by an earlier release: the dry run does not upgrade it, so it maps reports to no recipient (a real run upgrades it)",
        config.ledger.display()
    ));
    Ok(None)
}
