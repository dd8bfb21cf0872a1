//! `newsletter bounces`: read the bounce mailbox, act on each report once, print a summary.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use newsletter::bounces::Reason;
use newsletter::bounces::act::Outcome;
use newsletter::bounces::guard::{self, HeldGroup};
use newsletter::bounces::pass::{self, Pass};
use newsletter::config::Config;
use newsletter::config::bounces::Source;
use newsletter::human::thousands;
use newsletter::ledger::Ledger;

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
    let Pass {
        mailbox,
        messages,
        not_reports,
        outcomes,
        held,
        dmarc,
    } = pass::run(&config, &source, args.dry_run, &mut |w| eprintln!("warning: {w}"))?;
    for unreadable in &dmarc.unreadable {
        eprintln!("warning: DMARC report {}: {}", unreadable.file, unreadable.why);
    }
    newsletter::send::report::held(&mut super::say::Printer::default(), &held, config.bounces.mass_guard);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&outcomes)?),
        Format::Text => print_summary(&mailbox, messages, not_reports, &outcomes, args.dry_run, quiet),
    }
    if dmarc.read > 0 && !quiet && args.format == Format::Text {
        println!(
            "{} DMARC aggregate report(s) read ({} new): `newsletter dmarc` sums them up",
            thousands(dmarc.read),
            thousands(dmarc.new)
        );
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
