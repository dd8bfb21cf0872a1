//! `newsletter dmarc`: read new aggregate reports, sum up the reports held, print.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, anyhow};
use newsletter::dmarc::pass::{self, Origin};
use newsletter::dmarc::summary::{self, Ours, Summary, Tally, WINDOW_DAYS};
use newsletter::human::thousands;
use newsletter::ledger::Ledger;

use crate::Exit;
use crate::cli::{DmarcArgs, Format};

pub fn run(config_path: Option<&Path>, quiet: bool, args: DmarcArgs) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    let ours = Ours::of(&config)?;
    let mut ledger = Ledger::open(&config.ledger)?;
    let since = args
        .since
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp());
    let origin = if let Some(dir) = args.maildir {
        Some(Origin::Maildir(dir))
    } else if let Some(file) = args.mbox {
        Some(Origin::Mbox(file))
    } else if !args.files.is_empty() {
        Some(Origin::Files(args.files))
    } else {
        config
            .dmarc
            .source()
            .transpose()
            .map_err(|e| anyhow!("dmarc.mailbox: {e}"))?
            .map(Origin::Configured)
    };
    let explicit = matches!(origin, Some(Origin::Maildir(_) | Origin::Mbox(_) | Origin::Files(_)));
    let mut reading = origin.map(|o| pass::run(&config, &mut ledger, &o)).transpose()?;
    let summary = match &mut reading {
        // Given files or mailboxes: what they hold.
        Some(reading) if explicit => {
            let mut held = std::mem::take(&mut reading.taken.reports);
            held.retain(|h| since.is_none_or(|s| h.feedback.end >= s));
            summary::summarize(&held, reading.taken.unreadable.clone(), &ours)
        }
        _ => {
            let now = chrono::Utc::now().timestamp();
            summary::held_since(&ledger, &ours, since.unwrap_or(now - WINDOW_DAYS * 86_400))?
        }
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        Format::Text => {
            if let Some(reading) = &reading
                && !quiet
            {
                println!(
                    "Read {} message(s) or file(s) from {}: {} report(s), {} new; {} unreadable",
                    thousands(reading.messages),
                    reading.from,
                    thousands(reading.taken.read),
                    thousands(reading.taken.new),
                    thousands(reading.taken.unreadable.len() as u64)
                );
            }
            if reading.is_none() && summary.reports.is_empty() && !quiet {
                println!(
                    "No DMARC reports held{}. Publish rua=mailto:ADDRESS in _dmarc.YOUR-DOMAIN; reports arriving in the bounce mailbox are read by `newsletter bounces`, or set dmarc.mailbox.",
                    if args.since.is_some() {
                        " for that period"
                    } else {
                        " for the last 30 days"
                    }
                );
            }
            if ours.is_unknown() && !summary.reports.is_empty() {
                println!(
                    "note: nothing says which sources are ours, so every source counts as not ours: set dmarc.our_sources (the relays' addresses) or dkim.selector"
                );
            }
            print!("{}", text(&summary, quiet));
        }
    }
    Ok(Exit::Success)
}

fn rate(tally: &Tally) -> String {
    let pct = |n: u64| format!("{:.1}%", n as f64 * 100.0 / tally.messages.max(1) as f64);
    format!(
        "DKIM {:>6}  SPF {:>6}  DMARC {:>6}",
        pct(tally.dkim_aligned),
        pct(tally.spf_aligned),
        pct(tally.aligned)
    )
}

fn text(summary: &Summary, quiet: bool) -> String {
    let mut out = String::new();
    if !summary.reports.is_empty() && !quiet {
        let first = summary
            .reports
            .iter()
            .map(|r| r.begin.as_str())
            .min()
            .unwrap_or_default();
        let last = summary.reports.iter().map(|r| r.end.as_str()).max().unwrap_or_default();
        let _ = writeln!(
            out,
            "{} report(s) from {} reporter(s), {} to {}: {} message(s) as our domain, {} from our sources ({} aligned)\n",
            thousands(summary.reports.len() as u64),
            summary.reporters.len(),
            &first[..first.len().min(10)],
            &last[..last.len().min(10)],
            thousands(summary.all.messages),
            thousands(summary.ours.messages),
            thousands(summary.ours.aligned)
        );
        let _ = writeln!(out, "By reporter (aligned: the policy-evaluated result passed)");
        for r in &summary.reporters {
            let _ = writeln!(
                out,
                "  {:<28} {:>4} report(s) {:>10} messages  {}",
                r.org,
                r.reports,
                thousands(r.tally.messages),
                rate(&r.tally)
            );
        }
        let _ = writeln!(out, "\nBy source");
        for s in &summary.sources {
            let dispositions = s
                .dispositions
                .iter()
                .map(|(d, n)| format!("{d} {}", thousands(*n)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "  {:<39} {:<8} {:>10} messages  {}  ({dispositions})",
                s.ip,
                if s.ours { "ours" } else { "not ours" },
                thousands(s.tally.messages),
                rate(&s.tally)
            );
        }
        out.push('\n');
    }
    if !summary.warnings.is_empty() {
        let _ = writeln!(out, "Warnings");
        for w in &summary.warnings {
            let _ = writeln!(out, "  - {}\n    what to do: {}", w.says, w.todo);
        }
    }
    if !summary.unreadable.is_empty() {
        let _ = writeln!(out, "Unreadable reports");
        for u in &summary.unreadable {
            let _ = writeln!(out, "  - {}: {}", u.file, u.why);
        }
    }
    out
}
