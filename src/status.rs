//! Where each issue stands, read from the issues, the list and the ledger: the read model behind
//! `newsletter status`. It reads only; the command prints.

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::issue::{self, Issue};
use crate::ledger::{self, BounceCounts, BounceEvent, Counts, DeliveryRecord, HeldGroup, Ledger};
use crate::send::pool::{self, RelayStanding};
use crate::send::{queue, reputation};

/// One issue in the overview.
#[derive(Serialize)]
pub struct IssueLine {
    pub issue: String,
    /// draft, scheduled, due, running (a send holds the lock now), interrupted (its last run
    /// was killed), partial (its runs ended with readers left), complete, or
    /// error (the file cannot be read: `error` says why)
    pub state: &'static str,
    pub send_at: Option<String>,
    pub subject: String,
    pub sent: u64,
    pub failed: u64,
    /// Recipients with a hard or soft bounce, and complaints (from `newsletter bounces`).
    pub bounced: u64,
    pub complaints: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Confirmation emails of sign-ups that have not gone out yet.
pub struct UnsentConfirmations {
    /// To be tried again by `serve`.
    pub waiting: u64,
    /// Given up (the link expired first).
    pub given_up: u64,
    pub last_error: Option<String>,
}

/// Every issue, and what concerns them all.
pub struct Overview {
    pub issues: Vec<IssueLine>,
    pub held_groups: Vec<HeldGroup>,
    pub warmup: Option<reputation::Today>,
    pub unsent_confirmations: Option<UnsentConfirmations>,
    /// DMARC aggregate reports held: the last 7 days' aligned rate of our mail, and the
    /// warnings `newsletter dmarc` gives.
    pub dmarc: Option<crate::dmarc::summary::Recent>,
}

/// One issue in detail.
#[derive(Serialize)]
pub struct Detail {
    pub issue: String,
    pub state: &'static str,
    pub subject: String,
    pub send_at: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    /// What cron will do with the issue, and the command that finishes it when cron will not.
    pub next: String,
    /// Recipients of the list the issue is being sent to that no run has sent to yet (none
    /// once it is complete).
    pub pending: u64,
    /// Recipients of the current list on the suppression list.
    pub suppressed: u64,
    pub achieved_rate: Option<f64>,
    pub undelivered: Vec<DeliveryRecord>,
    /// Recipients with a hard or soft bounce or a complaint (from `newsletter bounces`), and
    /// blocks of our sending.
    pub bounces: BounceCounts,
    /// Per cent of the recipients sent to, and what a relay or mailbox provider would act on.
    #[serde(flatten)]
    pub health: reputation::Health,
    /// Groups of bounces the mass guard holds for the operator (any issue's): their readers
    /// are still mailed.
    pub held_groups: Vec<HeldGroup>,
    /// Today on the warm-up's ramp (over every issue), while there is one.
    pub warmup: Option<WarmupToday>,
    /// Each relay's part in the issue's messages, and its day.
    pub relays: Vec<RelayStanding>,
    /// Clicks and reads counted by `serve` (`newsletter report` has the detail).
    pub reading: Reading,
    /// When the issue's per-reader records were pruned (retention): its counts stay, who
    /// got it and who did not is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<String>,
}

/// Clicks and reads of an issue, in brief.
#[derive(Debug, Default, Serialize)]
pub struct Reading {
    /// Browsers' clicks of the issue's links.
    pub clicks: u64,
    /// Requests taken out as machines' (any reason).
    pub machine: u64,
    /// Browsers' views of the issue's page in the web archive.
    pub archive_views: u64,
    /// Browsers' fetches of the issue's image (`analytics.opens`).
    pub opens: u64,
}

fn reading(ledger: &Ledger, issue: &str) -> Result<Reading> {
    let mut r = Reading::default();
    for c in ledger.counts_of(issue)? {
        let n = c.count.max(0) as u64;
        match (c.reason.as_str(), c.kind.as_str()) {
            ("counted", "link") => r.clicks += n,
            ("counted", "page") => r.archive_views += n,
            ("counted", _) => r.opens += n,
            _ => r.machine += n,
        }
    }
    Ok(r)
}

#[derive(Serialize)]
pub struct WarmupToday {
    pub day: i64,
    pub days: u32,
    pub cap: u64,
    pub sent_today: u64,
    pub left_today: u64,
}

/// The ledger as it is, or none before the first send: status never creates one.
fn open_ledger(config: &Config) -> Result<Option<Ledger>> {
    config
        .ledger
        .is_file()
        .then(|| Ledger::open(&config.ledger))
        .transpose()
}

fn warmup_today(config: &Config, ledger: Option<&Ledger>) -> Result<Option<reputation::Today>> {
    reputation::today(config.throttle.warmup.as_ref(), ledger, chrono::Utc::now())
}

fn held_groups(ledger: Option<&Ledger>) -> Result<Vec<HeldGroup>> {
    ledger.map_or(Ok(Vec::new()), |l| l.held_groups(true))
}

/// Every issue in the newsletters directory, and what concerns them all.
pub fn overview(config: &Config) -> Result<Overview> {
    let ledger = open_ledger(config)?;
    let running = ledger::is_running(&config.ledger);
    let issues = issue::list(&config.newsletters)
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
    let unsent_confirmations = match &ledger {
        Some(l) => {
            let (waiting, given_up, last_error) = l.unsent_confirmations()?;
            (waiting + given_up > 0).then_some(UnsentConfirmations {
                waiting,
                given_up,
                last_error,
            })
        }
        None => None,
    };
    Ok(Overview {
        issues,
        held_groups: held_groups(ledger.as_ref())?,
        warmup: warmup_today(config, ledger.as_ref())?,
        unsent_confirmations,
        dmarc: match &ledger {
            Some(l) => {
                let ours = crate::dmarc::summary::Ours::of(config)?;
                crate::dmarc::summary::recent(l, &ours, chrono::Utc::now().timestamp())?
            }
            None => None,
        },
    })
}

/// The bounces and complaints recorded, of one issue or all.
pub fn bounce_events(config: &Config, issue: Option<&str>) -> Result<Vec<BounceEvent>> {
    match open_ledger(config)? {
        Some(l) => l.bounce_events(issue),
        None => Ok(Vec::new()),
    }
}

/// One issue in detail; `all_undelivered` lists every recipient not sent to, not the last five.
pub fn detail(config: &Config, name: &str, all_undelivered: bool) -> Result<Detail> {
    let ledger = open_ledger(config)?;
    let running = ledger::is_running(&config.ledger);
    let issue = Issue::load(&issue::find(name, &config.newsletters)?)?;
    let summary = line(&issue, ledger.as_ref(), running)?;
    let counts = ledger
        .as_ref()
        .map(|l| l.counts(&issue.slug))
        .transpose()?
        .unwrap_or_default();
    // Pending is counted against the list the issue was being sent to (`--recipients`).
    let state = ledger
        .as_ref()
        .map(|l| l.issue_state(&issue.slug))
        .transpose()?
        .flatten();
    let list = state
        .as_ref()
        .and_then(|s| s.last_list.as_ref())
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| config.recipients.clone());
    let plan = if list.is_file() {
        Some(queue::plan(
            &list,
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
    let pruned = ledger.as_ref().map(|l| l.pruned(&issue.slug)).transpose()?.flatten();
    // A complete issue is done: readers who joined the list since are not its readers (they
    // get the next issue), and who got a pruned one is no longer known.
    let pending = match (&pruned, summary.state) {
        (Some(_), _) | (None, "complete") => 0,
        (None, _) => plan.as_ref().map_or(0, |p| p.to_send),
    };
    let next = next_step(&issue, summary.state, &list, &config.recipients);
    let bounces = ledger
        .as_ref()
        .map(|l| l.bounce_counts(&issue.slug))
        .transpose()?
        .unwrap_or_default();
    let health = reputation::health(&bounces, counts.sent, &config.throttle.breaker);
    Ok(Detail {
        issue: issue.slug.clone(),
        state: summary.state,
        next,
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
            Some(l) => l.undelivered(&issue.slug, if all_undelivered { None } else { Some(5) })?,
            None => Vec::new(),
        },
        held_groups: held_groups(ledger.as_ref())?,
        warmup: warmup_today(config, ledger.as_ref())?.map(|t| WarmupToday {
            day: t.day,
            days: t.days,
            cap: t.cap,
            sent_today: t.used,
            left_today: t.left(),
        }),
        relays: match &ledger {
            Some(l) => pool::standing(config, l, &issue.slug)?,
            None => Vec::new(),
        },
        reading: match &ledger {
            Some(l) => reading(l, &issue.slug)?,
            None => Reading::default(),
        },
        pruned: pruned.map(|p| p.pruned_at),
        bounces,
        health,
        counts,
    })
}

/// What cron will do with the issue in `state`, read from `list` (the configured list is
/// `configured`), and the command that finishes it when cron will not.
fn next_step(issue: &Issue, state: &str, list: &std::path::Path, configured: &std::path::Path) -> String {
    let slug = &issue.slug;
    let now = chrono::Utc::now();
    let other_list = (list != configured).then(|| format!(" --recipients {}", list.display()));
    let finish = format!(
        "`newsletter send {slug}{} --yes` finishes it",
        other_list.as_deref().unwrap_or_default()
    );
    match (state, issue.front.send_at) {
        ("complete", _) => "nothing: it is complete; readers who joined since get the next issue".into(),
        ("running", _) => "a send is running now".into(),
        ("scheduled", Some(t)) => format!("cron's `newsletter send` sends it at {}", t.to_rfc3339()),
        ("due", _) => "cron's next `newsletter send` sends it".into(),
        ("draft", _) => format!("cron will not send it (no send_at): set send_at, or `newsletter send {slug}`"),
        // Interrupted or partial.
        (_, Some(t)) if t <= now => match other_list {
            None => format!("cron's next `newsletter send` resumes it ({finish} now)"),
            Some(_) => format!(
                "cron's next `newsletter send` resumes it to {}, not to {}, the list its last run read; {finish}",
                configured.display(),
                list.display()
            ),
        },
        (_, Some(t)) => format!("cron resumes it at its send_at, {}; {finish} now", t.to_rfc3339()),
        (_, None) => format!("cron will not resume it (it has no send_at): {finish}"),
    }
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
        // Its last run never finished: it was killed.
        (Some(s), _) if s.running => "interrupted",
        // Its runs ended with readers left: --limit, --where, the warm-up's cap, a stop.
        (Some(_), _) => "partial",
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
