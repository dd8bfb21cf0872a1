//! `newsletter status [ISSUE]`: where each issue stands, or one issue in detail.

use std::path::Path;

use anyhow::Result;
use newsletter::human::thousands;
use newsletter::ledger::{BounceEvent, HeldGroup};
use newsletter::send::reputation;
use newsletter::status::{self, Detail, Overview};

use crate::Exit;
use crate::cli::{Format, StatusArgs};

fn held_line(held: &[HeldGroup]) -> String {
    let readers: u64 = held.iter().map(|g| g.readers).sum();
    format!(
        "{} group(s) of bounces held by the mass guard ({} readers, still mailed: {}): decide with `newsletter bounces review`",
        held.len(),
        thousands(readers),
        held.iter().map(|g| g.domain.as_str()).collect::<Vec<_>>().join(", ")
    )
}

pub fn run(config_path: Option<&Path>, args: StatusArgs) -> Result<Exit> {
    let config = super::load_config(config_path, false)?;
    if args.bounces {
        print_bounces(&status::bounce_events(&config, args.issue.as_deref())?, args.format)?;
        return Ok(Exit::Success);
    }
    let Some(name) = &args.issue else {
        let overview = status::overview(&config)?;
        match args.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&overview.issues)?),
            Format::Text => print_overview(&overview),
        }
        return Ok(Exit::Success);
    };
    let detail = status::detail(&config, name, args.failed)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&detail)?),
        Format::Text if args.failed => {
            if let Some(at) = &detail.pruned {
                println!(
                    "{}'s per-reader records were pruned on {at} (retention.deliveries): {} failed, but who is no longer known.",
                    detail.issue,
                    thousands(detail.counts.failed)
                );
            } else if detail.undelivered.is_empty() {
                println!(
                    "Nobody failed: every recipient of {} in the ledger was sent it ({} sent).",
                    detail.issue,
                    thousands(detail.counts.sent)
                );
            }
            for d in &detail.undelivered {
                println!(
                    "{}\tline {}\t{:?}\t{} attempts\t{}",
                    d.email,
                    d.line,
                    d.status,
                    d.attempts,
                    d.last_reply.as_deref().unwrap_or("-")
                );
            }
        }
        Format::Text => print_detail(&detail),
    }
    Ok(Exit::Success)
}

fn print_overview(overview: &Overview) {
    for l in &overview.issues {
        if let Some(e) = &l.error {
            println!("{:<10} {:<10} {e}", l.issue, l.state);
            continue;
        }
        let when = l.send_at.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
        // Bounces and complaints only once `newsletter bounces` has seen some.
        let returned = if l.bounced + l.complaints > 0 {
            format!(
                "  bounced {:.1}%  complaints {:.2}%",
                reputation::percent(l.bounced, l.sent),
                reputation::percent(l.complaints, l.sent)
            )
        } else {
            String::new()
        };
        println!(
            "{:<10} {:<10}{:<27} sent {:>7}  failed {:>5}{returned}  {}",
            l.issue,
            l.state,
            when,
            thousands(l.sent),
            thousands(l.failed),
            l.subject
        );
    }
    if !overview.held_groups.is_empty() {
        println!("{}", held_line(&overview.held_groups));
    }
    if let Some(today) = &overview.warmup {
        println!("{}; {} left today", today.describe(), thousands(today.left()));
    }
    if let Some(u) = &overview.unsent_confirmations {
        println!(
            "confirmation emails not sent: {} to be tried again by serve, {} given up; last error: {}",
            u.waiting,
            u.given_up,
            u.last_error.as_deref().unwrap_or_default()
        );
    }
    if let Some(d) = &overview.dmarc {
        let rate = match d.ours.messages {
            0 => "no mail from our sources reported".to_owned(),
            n => format!(
                "{:.1}% of {} messages from our sources aligned",
                d.ours.aligned as f64 * 100.0 / n as f64,
                thousands(n)
            ),
        };
        println!(
            "DMARC, last 7 days: {rate}; {} warning(s){}",
            d.warnings,
            if d.warnings > 0 { " (newsletter dmarc)" } else { "" }
        );
    }
}

fn print_detail(d: &Detail) {
    println!("{}: {} ({})", d.issue, d.subject, d.state);
    if let Some(t) = &d.send_at {
        println!("  scheduled for        {t}");
    }
    println!("  next                 {}", d.next);
    println!("  sent                 {}", thousands(d.counts.sent));
    println!("  failed               {}", thousands(d.counts.failed));
    println!("  pending              {}", thousands(d.pending));
    println!(
        "  deferred             {} (temporary failures, retried by the next run)",
        thousands(d.counts.deferred)
    );
    println!("  suppressed           {}", thousands(d.suppressed));
    println!(
        "  possibly duplicated  {} (in flight when a run stopped, sent again)",
        thousands(d.counts.possibly_duplicated)
    );
    if let Some(rate) = d.achieved_rate {
        println!("  achieved rate        {rate:.1}/s");
    }
    println!(
        "  hard bounces         {} ({:.2}%)",
        thousands(d.bounces.hard),
        d.health.hard_bounce_rate
    );
    println!(
        "  soft bounces         {} ({:.2}%)",
        thousands(d.bounces.soft),
        d.health.soft_bounce_rate
    );
    println!(
        "  complaints           {} ({:.3}%)",
        thousands(d.bounces.complaints),
        d.health.complaint_rate
    );
    if d.bounces.blocked > 0 {
        println!("  blocked as from us   {}", thousands(d.bounces.blocked));
    }
    if d.bounces.delayed > 0 {
        println!("  delay warnings       {} (not bounces)", thousands(d.bounces.delayed));
    }
    if let Some(w) = &d.warmup {
        println!(
            "  warm-up              day {} of {}: {} of today's {} sent, {} left",
            w.day,
            w.days,
            thousands(w.sent_today),
            thousands(w.cap),
            thousands(w.left_today)
        );
    }
    // One relay is the common case: its counts are the issue's.
    if d.relays.len() > 1 {
        for r in &d.relays {
            println!(
                "  relay {:<14} {} sent, {} failed, {} deferred; today {}{}",
                r.relay,
                thousands(r.sent),
                thousands(r.failed),
                thousands(r.deferred),
                thousands(r.today),
                r.daily_limit
                    .map(|l| format!(" of {}", thousands(l)))
                    .unwrap_or_default()
            );
        }
    }
    let r = &d.reading;
    if r.clicks + r.machine + r.archive_views + r.opens > 0 {
        println!(
            "  clicks               {} ({} taken out as machines'); archive views {}{}: `newsletter report {}`",
            thousands(r.clicks),
            thousands(r.machine),
            thousands(r.archive_views),
            if r.opens > 0 {
                format!(", opens {}", thousands(r.opens))
            } else {
                String::new()
            },
            d.issue
        );
    }
    if !d.held_groups.is_empty() {
        println!("  {}", held_line(&d.held_groups));
    }
    for w in &d.health.warnings {
        println!("  warning: {w}");
    }
    if let Some(at) = &d.pruned {
        println!("  per-reader records   pruned on {at} (retention.deliveries): the counts above stay");
    }
    if !d.undelivered.is_empty() {
        println!("  last errors:");
        for u in &d.undelivered {
            println!(
                "    {} (line {}): {}",
                u.email,
                u.line,
                u.last_reply.as_deref().unwrap_or("in flight when a run stopped")
            );
        }
    }
}

fn print_bounces(events: &[BounceEvent], format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(events)?),
        Format::Text if events.is_empty() => println!("No bounces or complaints recorded."),
        Format::Text => {
            for e in events {
                println!(
                    "{}\t{}\t{}\t{} {}\t{}\t{}\t{}",
                    e.created_at,
                    e.issue.as_deref().unwrap_or("-"),
                    e.email.as_deref().unwrap_or("(not ours)"),
                    e.class,
                    e.reason,
                    e.status.as_deref().unwrap_or("-"),
                    e.action,
                    e.diagnostic
                );
            }
        }
    }
    Ok(())
}
