//! `newsletter bounces`: read the bounce mailbox, act on each report once, print a summary.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use newsletter::bounces::Reason;
use newsletter::bounces::act::{self, Handler, Outcome};
use newsletter::bounces::guard::{self, HeldGroup};
use newsletter::bounces::imap::Imap;
use newsletter::bounces::source::{Mailbox, Maildir, Mbox};
use newsletter::bounces::verp::Verp;
use newsletter::config::Config;
use newsletter::config::bounces::{PASSWORD_VAR, Source};
use newsletter::human::thousands;
use newsletter::ledger::{self, Ledger};
use newsletter::unsubscribe::{SECRET_VAR, Secrets};

use crate::Exit;
use crate::cli::{BouncesArgs, BouncesCommand, Format};

pub fn run(config_path: Option<&Path>, quiet: bool, args: BouncesArgs) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    if let Some(BouncesCommand::Review {
        group,
        accept,
        reject,
        format,
    }) = args.review
    {
        return review(&config, group, accept, reject, format);
    }
    let source = match (&args.maildir, &args.mbox, &config.bounces.source) {
        (Some(dir), _, _) => Source::Maildir(dir.clone()),
        (_, Some(file), _) => Source::Mbox(file.clone()),
        (None, None, Some(s)) => s.parse().map_err(|e| anyhow::anyhow!("bounces.source: {e}"))?,
        (None, None, None) => bail!(
            "no bounce mailbox: set bounces.source (maildir:PATH, mbox:PATH or imaps://USER@HOST/FOLDER) or give --maildir or --mbox"
        ),
    };
    // One reader at a time: two cron runs must not act on the same report twice. A dry run
    // acts on nothing and creates nothing.
    let lock_path = config.ledger.with_extension("bounces.lock");
    let _lock = if args.dry_run {
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
    // A dry run reads the ledger when there is one, to say what a real run would do, but never
    // upgrades it: that is a change.
    let mut ledger = if !args.dry_run {
        Some(Ledger::open(&config.ledger)?)
    } else if config.ledger.is_file() {
        if ledger::schema::version_of(&config.ledger)? == ledger::schema::current_version() {
            Some(Ledger::open(&config.ledger)?)
        } else {
            eprintln!(
                "warning: {} was written by an earlier release: the dry run does not upgrade it, so it maps reports to no recipient (a real run upgrades it)",
                config.ledger.display()
            );
            None
        }
    } else {
        None
    };
    let secrets = Secrets::from_env(config.unsubscribe.accept_release_0_tokens)?;
    let verp = match (&config.bounces.return_path, &secrets) {
        (Some(_), Some(secrets)) => Some(Verp::new(&secrets.current)),
        (Some(_), None) => {
            eprintln!(
                "warning: {SECRET_VAR} is not set: VERP addresses (bounces.return_path) cannot be read, so reports are matched by their contents"
            );
            None
        }
        (None, _) => None,
    };
    if secrets.is_none() {
        eprintln!(
            "warning: {SECRET_VAR} is not set: mail to the unsubscribe address cannot be verified, so it changes nothing"
        );
    }
    let mut mailbox: Box<dyn Mailbox> = match &source {
        Source::Maildir(dir) => Box::new(Maildir::open(dir)?),
        Source::Mbox(file) => {
            let name = format!("mbox:{}", file.display());
            let cursor = ledger.as_ref().map(|l| l.cursor(&name)).transpose()?.flatten();
            Box::new(Mbox::open(file, cursor.as_deref())?)
        }
        Source::Imap(imap) => {
            let password = std::env::var(PASSWORD_VAR).map_err(|_| {
                anyhow::anyhow!("{PASSWORD_VAR} is not set: the IMAP password comes only from the environment")
            })?;
            let name = Imap::name_of(imap);
            let cursor = ledger.as_ref().map(|l| l.cursor(&name)).transpose()?.flatten();
            let tls = newsletter::net::tls::client_config(config.smtp.first())?;
            Box::new(Imap::connect(imap, &password, tls, cursor.as_deref(), args.dry_run)?)
        }
    };
    let handler = Handler {
        config: &config,
        verp,
        secrets,
        dry_run: args.dry_run,
        mailbox: mailbox.name(),
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    let (mut messages, mut not_reports) = (0u64, 0u64);
    loop {
        let items = mailbox.next_batch()?;
        if items.is_empty() {
            break;
        }
        let mut is_report = Vec::with_capacity(items.len());
        for item in &items {
            let found = handler.handle(item, ledger.as_mut())?;
            is_report.push(!found.is_empty());
            outcomes.extend(found);
        }
        messages += items.len() as u64;
        not_reports += is_report.iter().filter(|r| !**r).count() as u64;
        if !args.dry_run {
            // Committed before the messages are let go: a crash in between reads them again,
            // and the ledger's record of them makes that change nothing.
            if let Some(ledger) = ledger.as_mut() {
                ledger.commit()?;
            }
            mailbox.done(&items, &is_report)?;
        }
    }
    let held = match ledger.as_mut() {
        Some(ledger) if !args.dry_run => act::settle(ledger, config.bounces.mass_guard, &mut outcomes)?,
        Some(ledger) => act::would_hold(ledger, config.bounces.mass_guard, &mut outcomes)?,
        None => Vec::new(),
    };
    newsletter::send::report::held(&mut super::say::Printer::default(), &held, config.bounces.mass_guard);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&outcomes)?),
        Format::Text => print_summary(&mailbox.name(), messages, not_reports, &outcomes, args.dry_run, quiet),
    }
    Ok(Exit::Success)
}

/// `not_reports`: how many of the `messages` read were no report (left unread).
fn print_summary(name: &str, messages: u64, not_reports: u64, outcomes: &[Outcome], dry_run: bool, quiet: bool) {
    let mut by_class: BTreeMap<&str, u64> = BTreeMap::new();
    for o in outcomes {
        // A delay warning is soft to the reference, but no bounce yet.
        let kind = if o.reason == Reason::Delayed {
            "delayed"
        } else {
            o.class.as_str()
        };
        *by_class.entry(kind).or_default() += 1;
    }
    let suppressed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.action.starts_with("suppressed") || o.action.starts_with("would suppress"))
        .collect();
    let count = |c: &str| thousands(by_class.get(c).copied().unwrap_or(0));
    let delayed = match by_class.get("delayed") {
        Some(&n) => format!(", {} delay warning(s)", thousands(n)),
        None => String::new(),
    };
    let unread = match (not_reports, dry_run) {
        (0, _) => String::new(),
        (n, false) => format!("; {} message(s) that are no report left unread", thousands(n)),
        (n, true) => format!("; {} message(s) that are no report", thousands(n)),
    };
    println!(
        "{}{} message(s) read from {name}: {} hard, {} soft, {} complaint(s), {} ignored{delayed}; {} address(es) {}{unread}",
        if dry_run { "dry run: " } else { "" },
        thousands(messages),
        count("hard"),
        count("soft"),
        count("complaint"),
        count("ignore"),
        thousands(suppressed.len() as u64),
        if dry_run { "would be suppressed" } else { "suppressed" }
    );
    if quiet {
        return;
    }
    // Someone may be trying to unsubscribe others: say so, with the From they gave.
    for o in outcomes.iter().filter(|o| o.action.starts_with("none: unverified")) {
        println!("  {}", o.action.trim_start_matches("none: "));
    }
    for o in suppressed {
        println!(
            "  {} ({}{}): {}",
            o.recipient.as_deref().unwrap_or("?"),
            o.reason.as_str(),
            o.status.as_deref().map(|s| format!(" {s}")).unwrap_or_default(),
            o.action
        );
    }
}

/// `newsletter bounces review [GROUP] [--accept | --reject]`.
fn review(config: &Config, group: Option<i64>, accept: bool, reject: bool, format: Format) -> Result<Exit> {
    let mut ledger = Ledger::open(&config.ledger)?;
    let shown: Vec<HeldGroup> =
        match group {
            Some(id) if accept || reject => vec![guard::decide(&mut ledger, id, accept)?],
            Some(id) => vec![ledger.held_group(id)?.ok_or_else(|| {
                anyhow::anyhow!("there is no held group {id}: `newsletter bounces review` lists them")
            })?],
            None => ledger.held_groups(false)?,
        };
    let readers = match group {
        Some(id) => ledger.group_readers(id)?,
        None => Vec::new(),
    };
    match format {
        Format::Json => {
            let value = serde_json::json!({ "groups": shown, "readers": readers });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Format::Text => {
            if shown.is_empty() {
                println!(
                    "No group was held: no run would have suppressed more than {} readers at one domain with one diagnostic.",
                    config.bounces.mass_guard
                );
            }
            for g in &shown {
                println!(
                    "group {}: {}, {} readers at {} since {}: {}",
                    g.id, g.state, g.readers, g.domain, g.created_at, g.diagnostic
                );
            }
            for r in &readers {
                println!("  {r}");
            }
            if group.is_none() && shown.iter().any(|g| g.state == "held") {
                println!(
                    "They are still mailed. `newsletter bounces review GROUP` lists a group's readers; --accept suppresses them, --reject keeps them."
                );
            }
        }
    }
    Ok(Exit::Success)
}
