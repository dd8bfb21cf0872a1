//! A period's figures, for an annual report: `newsletter report --year 2025` (or `--since`,
//! `--until`): issues sent, messages delivered, reads, clicks, the list's size at the first and
//! the last send, new subscribers, unsubscribes, bounces, and clicks per project.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use chrono::NaiveDate;
use serde::Serialize;

use super::{IssueReport, read};
use crate::config::Config;

/// From `since` up to, not including, `until`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Period {
    pub since: NaiveDate,
    pub until: NaiveDate,
}

impl Period {
    pub fn year(year: i32) -> Option<Period> {
        Some(Period {
            since: NaiveDate::from_ymd_opt(year, 1, 1)?,
            until: NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
        })
    }

    fn holds(&self, timestamp: &str) -> bool {
        let day = timestamp.get(..10).unwrap_or_default();
        day >= self.since.to_string().as_str() && day < self.until.to_string().as_str()
    }
}

#[derive(Debug, Serialize)]
pub struct YearReport {
    pub period: Period,
    pub issues_sent: u64,
    pub delivered: u64,
    pub reads: u64,
    pub clicks: u64,
    /// The readers the first and the last issue of the period were sent to.
    pub subscribers_start: Option<u64>,
    pub subscribers_end: Option<u64>,
    /// Sign-ups confirmed and readers imported within the period.
    pub new_subscribers: u64,
    pub unsubscribes: u64,
    pub bounces: u64,
    pub complaints: u64,
    /// Clicks per project across the period's issues, most first.
    pub clicks_by_project: Vec<ProjectClicks>,
    /// Each issue, in the order they were sent.
    pub issues: Vec<IssueLine>,
}

#[derive(Debug, Serialize)]
pub struct ProjectClicks {
    pub project: String,
    pub clicks: u64,
}

#[derive(Debug, Serialize)]
pub struct IssueLine {
    pub issue: String,
    pub subject: String,
    /// When its first run started (UTC).
    pub sent_at: String,
    /// The readers it was sent to (delivered and failed).
    pub audience: u64,
    pub delivered: u64,
    pub reads: u64,
    pub clicks: u64,
    pub unsubscribes: u64,
    /// Sign-ups confirmed and readers imported from its send until the next issue's.
    pub new_subscribers: u64,
    pub bounces: u64,
    pub complaints: u64,
    /// Clicks per project section.
    pub clicks_by_project: BTreeMap<String, u64>,
}

fn line(report: &IssueReport, sent_at: &str, audience: u64, new_subscribers: u64) -> IssueLine {
    let mut by_project = BTreeMap::new();
    for s in &report.clicks.by_section {
        if let Some(p) = &s.project {
            *by_project.entry(p.clone()).or_default() += s.clicks;
        }
    }
    IssueLine {
        issue: report.issue.clone(),
        subject: report.subject.clone(),
        sent_at: sent_at.to_owned(),
        audience,
        delivered: report.delivered,
        reads: report.reads.total,
        clicks: report.clicks.counted,
        unsubscribes: report.unsubscribes,
        new_subscribers,
        bounces: report.bounces.hard + report.bounces.soft,
        complaints: report.complaints,
        clicks_by_project: by_project,
    }
}

pub fn period(config: &Config, period: Period) -> Result<YearReport> {
    if period.until <= period.since {
        bail!(
            "--until {} is not after --since {}: give a period that holds a day",
            period.until,
            period.since
        );
    }
    let ledger = super::open(config)?;
    let mut started = ledger.started_issues()?;
    started.reverse();
    let mut issues = Vec::new();
    let (since, until) = (period.since.to_string(), period.until.to_string());
    let sent: Vec<_> = started.iter().filter(|s| period.holds(&s.started_at)).collect();
    for (i, state) in sent.iter().enumerate() {
        let (report, _) = read(config, &ledger, &state.issue)?;
        let counts = ledger.counts(&state.issue)?;
        // A sign-up belongs to the issue that was the latest when it came.
        let next = sent.get(i + 1).map_or(until.as_str(), |n| n.started_at.as_str());
        let joined = ledger.reader_events_between(&["confirmed", "subscribed"], &state.started_at, next)?;
        issues.push(line(&report, &state.started_at, counts.sent + counts.failed, joined));
    }
    let mut by_project: BTreeMap<String, u64> = BTreeMap::new();
    for i in &issues {
        for (p, n) in &i.clicks_by_project {
            *by_project.entry(p.clone()).or_default() += n;
        }
    }
    let mut clicks_by_project: Vec<ProjectClicks> = by_project
        .into_iter()
        .map(|(project, clicks)| ProjectClicks { project, clicks })
        .collect();
    clicks_by_project.sort_by_key(|p| std::cmp::Reverse(p.clicks));
    let sum = |f: fn(&IssueLine) -> u64| issues.iter().map(f).sum::<u64>();
    Ok(YearReport {
        period,
        issues_sent: issues.len() as u64,
        delivered: sum(|i| i.delivered),
        reads: sum(|i| i.reads),
        clicks: sum(|i| i.clicks),
        subscribers_start: issues.first().map(|i| i.audience),
        subscribers_end: issues.last().map(|i| i.audience),
        new_subscribers: ledger.reader_events_between(&["confirmed", "subscribed"], &since, &until)?,
        unsubscribes: ledger.reader_events_between(&["unsubscribed"], &since, &until)?,
        bounces: sum(|i| i.bounces),
        complaints: sum(|i| i.complaints),
        clicks_by_project,
        issues,
    })
}

/// One row per issue, then the period's totals.
pub fn csv(report: &YearReport) -> Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "issue",
        "subject",
        "sent_at",
        "audience",
        "delivered",
        "reads",
        "clicks",
        "unsubscribes",
        "new_subscribers",
        "bounces",
        "complaints",
    ])?;
    for i in &report.issues {
        out.write_record([
            i.issue.clone(),
            i.subject.clone(),
            i.sent_at.clone(),
            i.audience.to_string(),
            i.delivered.to_string(),
            i.reads.to_string(),
            i.clicks.to_string(),
            i.unsubscribes.to_string(),
            i.new_subscribers.to_string(),
            i.bounces.to_string(),
            i.complaints.to_string(),
        ])?;
    }
    out.write_record([
        "total".to_owned(),
        format!("{} issues", report.issues_sent),
        String::new(),
        String::new(),
        report.delivered.to_string(),
        report.reads.to_string(),
        report.clicks.to_string(),
        report.unsubscribes.to_string(),
        report.new_subscribers.to_string(),
        report.bounces.to_string(),
        report.complaints.to_string(),
    ])?;
    Ok(String::from_utf8(out.into_inner()?)?)
}
