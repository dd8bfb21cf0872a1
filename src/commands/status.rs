//! `newsletter status [ISSUE]`: where each issue stands, or one issue in detail.

use std::path::Path;

use anyhow::Result;
use newsletter::human::thousands;
use newsletter::issue::{self, Issue};
use newsletter::ledger::{self, BounceCounts, BounceEvent, Counts, DeliveryRecord, HeldGroup, Ledger};
use newsletter::send::pool::{self, RelayStanding};
use newsletter::send::{queue, reputation};
use serde::Serialize;

use crate::Exit;
use crate::cli::{Format, StatusArgs};

#[derive(Serialize)]
struct IssueLine {
    issue: String,
    /// draft, scheduled, due, sending, running (a send holds the lock now), complete, or
    /// error (the file cannot be read: `error` says why)
    state: &'static str,
    send_at: Option<String>,
    subject: String,
    sent: u64,
    failed: u64,
    /// Recipients with a hard or soft bounce, and complaints (from `newsletter bounces`).
    bounced: u64,
    complaints: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Detail {
    issue: String,
    state: &'static str,
    subject: String,
    send_at: Option<String>,
    #[serde(flatten)]
    counts: Counts,
    /// Recipients of the current list that no run has sent to yet.
    pending: u64,
    /// Recipients of the current list on the suppression list.
    suppressed: u64,
    achieved_rate: Option<f64>,
    undelivered: Vec<DeliveryRecord>,
    /// Recipients with a hard or soft bounce or a complaint (from `newsletter bounces`), and
    /// blocks of our sending.
    bounces: BounceCounts,
    /// Per cent of the recipients sent to, and what a relay or mailbox provider would act on.
    #[serde(flatten)]
    health: reputation::Health,
    /// Groups of bounces the mass guard holds for the operator (any issue's): their readers
    /// are still mailed.
    held_groups: Vec<HeldGroup>,
    /// Today on the warm-up's ramp (over every issue), while there is one.
    warmup: Option<WarmupToday>,
    /// Each relay's part in the issue's messages, and its day.
    relays: Vec<RelayStanding>,
}

#[derive(Serialize)]
struct WarmupToday {
    day: i64,
    days: u32,
    cap: u64,
    sent_today: u64,
    left_today: u64,
}

fn warmup_today(config: &newsletter::config::Config, ledger: Option<&Ledger>) -> Result<Option<reputation::Today>> {
    reputation::today(config.throttle.warmup.as_ref(), ledger, chrono::Utc::now())
}

fn held_groups(ledger: Option<&Ledger>) -> Result<Vec<HeldGroup>> {
    ledger.map_or(Ok(Vec::new()), |l| l.held_groups(true))
}

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
    let ledger = config
        .ledger
        .is_file()
        .then(|| Ledger::open(&config.ledger))
        .transpose()?;
    let running = ledger::is_running(&config.ledger);
    let Some(name) = &args.issue else {
        if args.bounces {
            let events = match &ledger {
                Some(l) => l.bounce_events(None)?,
                None => Vec::new(),
            };
            print_bounces(&events, args.format)?;
            return Ok(Exit::Success);
        }
        let lines = issue::list(&config.newsletters)
            .into_iter()
            .map(|(name, path)| match Issue::load(&path) {
                Ok(issue) => line(&issue, ledger.as_ref(), running),
                // An issue that cannot be read is shown, never dropped: cron will not send it.
                Err(e) => Ok(IssueLine {
                    issue: name,
                    state: "error",
                    send_at: None,
                    subject: String::new(),
                    sent: 0,
                    failed: 0,
                    bounced: 0,
                    complaints: 0,
                    error: Some(format!("{e:#}")),
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        match args.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&lines)?),
            Format::Text => {
                for l in &lines {
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
                let held = held_groups(ledger.as_ref())?;
                if !held.is_empty() {
                    println!("{}", held_line(&held));
                }
                if let Some(today) = warmup_today(&config, ledger.as_ref())? {
                    println!("{}; {} left today", today.describe(), thousands(today.left()));
                }
                if let Some((waiting, given_up, error)) =
                    ledger.as_ref().map(Ledger::unsent_confirmations).transpose()?
                    && waiting + given_up > 0
                {
                    println!(
                        "confirmation emails not sent: {waiting} to be tried again by serve, {given_up} given up; last error: {}",
                        error.unwrap_or_default()
                    );
                }
            }
        }
        return Ok(Exit::Success);
    };
    if args.bounces {
        let events = match &ledger {
            Some(l) => l.bounce_events(Some(name.as_str()))?,
            None => Vec::new(),
        };
        print_bounces(&events, args.format)?;
        return Ok(Exit::Success);
    }
    let issue = Issue::load(&issue::find(name, &config.newsletters)?)?;
    let summary = line(&issue, ledger.as_ref(), running)?;
    let counts = ledger
        .as_ref()
        .map(|l| l.counts(&issue.slug))
        .transpose()?
        .unwrap_or_default();
    let plan = if config.recipients.is_file() {
        Some(queue::plan(
            &config.recipients,
            ledger.as_ref(),
            queue::Selection {
                issue: issue.slug.clone(),
                filter: issue.segment(),
                ..queue::Selection::default()
            },
        )?)
    } else {
        None
    };
    let pending = plan.as_ref().map_or(0, |p| p.to_send);
    let bounces = ledger
        .as_ref()
        .map(|l| l.bounce_counts(&issue.slug))
        .transpose()?
        .unwrap_or_default();
    let health = reputation::health(&bounces, counts.sent, &config.throttle.breaker);
    let detail = Detail {
        issue: issue.slug.clone(),
        // Complete for the lists sent so far, but the list has readers who never got it (rows
        // added since, or a send with --recipients).
        state: if summary.state == "complete" && pending > 0 {
            "partial"
        } else {
            summary.state
        },
        subject: summary.subject,
        send_at: summary.send_at,
        pending,
        suppressed: plan.as_ref().map_or(0, |p| p.suppressed),
        achieved_rate: ledger
            .as_ref()
            .map(|l| l.achieved_rate(&issue.slug))
            .transpose()?
            .flatten(),
        undelivered: match &ledger {
            Some(l) => l.undelivered(&issue.slug, if args.failed { None } else { Some(5) })?,
            None => Vec::new(),
        },
        held_groups: held_groups(ledger.as_ref())?,
        warmup: warmup_today(&config, ledger.as_ref())?.map(|t| WarmupToday {
            day: t.day,
            days: t.days,
            cap: t.cap,
            sent_today: t.used,
            left_today: t.left(),
        }),
        relays: match &ledger {
            Some(l) => pool::standing(&config, l, &issue.slug)?,
            None => Vec::new(),
        },
        bounces,
        health,
        counts,
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&detail)?),
        Format::Text if args.failed => {
            if detail.undelivered.is_empty() {
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
        Format::Text => print_detail(&detail, &config.recipients),
    }
    Ok(Exit::Success)
}

fn line(issue: &Issue, ledger: Option<&Ledger>, running: bool) -> Result<IssueLine> {
    let state = ledger.map(|l| l.issue_state(&issue.slug)).transpose()?.flatten();
    let counts = ledger.map(|l| l.counts(&issue.slug)).transpose()?.unwrap_or_default();
    let bounces = ledger
        .map(|l| l.bounce_counts(&issue.slug))
        .transpose()?
        .unwrap_or_default();
    let now = chrono::Utc::now();
    let label = match (&state, issue.front.send_at) {
        (Some(s), _) if running && s.running => "running",
        (Some(s), _) if s.complete => "complete",
        (Some(_), _) => "sending",
        (None, Some(t)) if t > now => "scheduled",
        (None, Some(_)) => "due",
        (None, None) => "draft",
    };
    Ok(IssueLine {
        issue: issue.slug.clone(),
        state: label,
        send_at: issue.front.send_at.map(|t| t.to_rfc3339()),
        subject: issue.subject().unwrap_or("(no subject)").to_owned(),
        sent: counts.sent,
        failed: counts.failed,
        bounced: bounces.hard + bounces.soft,
        complaints: bounces.complaints,
        error: None,
    })
}

fn print_detail(d: &Detail, list: &Path) {
    println!("{}: {} ({})", d.issue, d.subject, d.state);
    if d.state == "partial" {
        println!(
            "  note: {} reader(s) of {} never got it (rows added since, or the send used --recipients): `newsletter send {}` sends to them",
            thousands(d.pending),
            list.display(),
            d.issue
        );
    }
    if let Some(t) = &d.send_at {
        println!("  scheduled for        {t}");
    }
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
    if !d.held_groups.is_empty() {
        println!("  {}", held_line(&d.held_groups));
    }
    for w in &d.health.warnings {
        println!("  warning: {w}");
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
