//! How an issue did, for `newsletter report ISSUE`: what the ledger knows of its deliveries,
//! bounces, complaints and unsubscribes, and the counts of clicks and reads `serve` wrote,
//! machines taken out by reason; beside the issue sent before it. [`year`] adds a period's
//! issues up; [`html`] draws either as one page. Counts only: nothing here names a reader.

pub mod html;
pub mod year;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::clicks::{LinkTable, Reason};
use crate::config::Config;
use crate::ledger::{Ledger, ReadingCount};

#[derive(Debug, Serialize)]
pub struct IssueReport {
    pub issue: String,
    pub subject: String,
    pub delivered: u64,
    pub unsubscribes: u64,
    /// Sign-ups confirmed and readers imported from its send until the next issue's.
    pub new_subscribers: u64,
    pub complaints: u64,
    pub bounces: Bounces,
    pub clicks: Clicks,
    pub reads: Reads,
    /// The issue sent before this one, in brief.
    pub previous: Option<Brief>,
}

#[derive(Debug, Serialize)]
pub struct Bounces {
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Clicks {
    /// Browsers' GETs of the issue's links in the HTML part, machines taken out.
    pub counted: u64,
    /// Requests taken out, by reason (method, agent, too_soon, burst).
    pub machine: BTreeMap<&'static str, u64>,
    pub by_section: Vec<SectionClicks>,
    pub by_link: Vec<LinkClicks>,
    pub by_day: Vec<DayClicks>,
}

impl Clicks {
    /// Each section's clicks, most first, as a chart takes them.
    pub fn sections(&self) -> Vec<(String, u64)> {
        self.by_section.iter().map(|s| (s.section.clone(), s.clicks)).collect()
    }
}

#[derive(Debug, Serialize)]
pub struct SectionClicks {
    pub section: String,
    pub project: Option<String>,
    pub clicks: u64,
}

#[derive(Debug, Serialize)]
pub struct LinkClicks {
    /// As written in the issue.
    pub url: String,
    pub section: String,
    pub clicks: u64,
}

#[derive(Debug, Serialize)]
pub struct DayClicks {
    pub day: String,
    pub clicks: u64,
    pub archive_views: u64,
}

#[derive(Debug, Serialize)]
pub struct Reads {
    /// Views of the issue's page in the web archive by browsers, machines taken out.
    pub archive_views: u64,
    /// Fetches of the issue's image by browsers; null while `analytics.opens` is off.
    pub opens: Option<u64>,
    /// What the `total` adds up.
    pub sources: Vec<&'static str>,
    pub total: u64,
}

#[derive(Debug, Serialize)]
pub struct Brief {
    pub issue: String,
    pub delivered: u64,
    pub clicks: u64,
    pub reads: u64,
}

/// The counted figures of `counts`: clicks per link, views, opens, and machines by reason.
struct Tallied {
    per_link: BTreeMap<u32, u64>,
    machine: BTreeMap<&'static str, u64>,
    by_day: BTreeMap<String, (u64, u64)>,
    views: u64,
    opens: u64,
}

fn tally(counts: &[ReadingCount]) -> Tallied {
    let mut t = Tallied {
        per_link: BTreeMap::new(),
        machine: BTreeMap::new(),
        by_day: BTreeMap::new(),
        views: 0,
        opens: 0,
    };
    for c in counts {
        let n = c.count.max(0) as u64;
        let Some(reason) = Reason::parse(&c.reason) else {
            continue;
        };
        if reason != Reason::Counted {
            *t.machine.entry(reason.as_str()).or_default() += n;
            continue;
        }
        let day = t.by_day.entry(c.day.clone()).or_default();
        match c.kind.as_str() {
            "link" => {
                *t.per_link.entry(c.n).or_default() += n;
                day.0 += n;
            }
            "page" => {
                t.views += n;
                day.1 += n;
            }
            "open" => t.opens += n,
            _ => {}
        }
    }
    t
}

fn read(config: &Config, ledger: &Ledger, issue: &str) -> Result<(IssueReport, Tallied)> {
    let Some(state) = ledger.issue_state(issue)? else {
        bail!("{issue} has not been sent: `newsletter status` lists the issues and where they stand");
    };
    let counts = ledger.counts(issue)?;
    let bounces = ledger.bounce_counts(issue)?;
    let links = LinkTable::from_stored(ledger.links_of(issue)?);
    let t = tally(&ledger.counts_of(issue)?);
    let mut by_section: Vec<SectionClicks> = Vec::new();
    for link in &links.links {
        let clicks = t.per_link.get(&link.n).copied().unwrap_or(0);
        match by_section.iter_mut().find(|s| s.section == link.section) {
            Some(s) => s.clicks += clicks,
            None => by_section.push(SectionClicks {
                section: link.section.clone(),
                project: link.project.clone(),
                clicks,
            }),
        }
    }
    by_section.sort_by_key(|s| std::cmp::Reverse(s.clicks));
    let mut by_link: Vec<LinkClicks> = links
        .links
        .iter()
        .map(|l| LinkClicks {
            url: l.url.clone(),
            section: l.section.clone(),
            clicks: t.per_link.get(&l.n).copied().unwrap_or(0),
        })
        .collect();
    by_link.sort_by_key(|l| std::cmp::Reverse(l.clicks));
    let opens = config.analytics.opens.then_some(t.opens);
    let mut sources = vec!["archive_views"];
    if opens.is_some() {
        sources.push("opens");
    }
    let report = IssueReport {
        issue: issue.to_owned(),
        subject: state.subject,
        delivered: counts.sent,
        unsubscribes: ledger.unsubscribes_of(issue)?,
        new_subscribers: 0,
        complaints: bounces.complaints,
        bounces: Bounces {
            hard: bounces.hard,
            soft: bounces.soft,
        },
        clicks: Clicks {
            counted: t.per_link.values().sum(),
            machine: t.machine.clone(),
            by_section,
            by_link,
            by_day: t
                .by_day
                .iter()
                .map(|(day, (clicks, views))| DayClicks {
                    day: day.clone(),
                    clicks: *clicks,
                    archive_views: *views,
                })
                .collect(),
        },
        reads: Reads {
            archive_views: t.views,
            opens,
            sources,
            total: t.views + opens.unwrap_or(0),
        },
        previous: None,
    };
    Ok((report, t))
}

/// The ledger, which a report never creates.
fn open(config: &Config) -> Result<Ledger> {
    if !config.ledger.is_file() {
        bail!(
            "nothing has been sent yet: there is no ledger at {}",
            config.ledger.display()
        );
    }
    Ledger::open(&config.ledger)
}

/// The report of `issue`, with the issue sent before it.
pub fn issue(config: &Config, issue: &str) -> Result<IssueReport> {
    let ledger = open(config)?;
    let (mut report, _) = read(config, &ledger, issue)?;
    let started = ledger.started_issues()?;
    // Newest first: the issue before this one in the list came after it.
    let position = started.iter().position(|s| s.issue == issue);
    let (from, until) = match position {
        Some(i) => (
            started[i].started_at.clone(),
            i.checked_sub(1)
                .map_or_else(|| "9999".to_owned(), |next| started[next].started_at.clone()),
        ),
        None => (String::new(), String::new()),
    };
    report.new_subscribers = ledger.reader_events_between(&["confirmed", "subscribed"], &from, &until)?;
    let before = started
        .iter()
        .skip_while(|s| s.issue != issue)
        .nth(1)
        .map(|s| s.issue.clone());
    if let Some(previous) = before {
        let (p, _) = read(config, &ledger, &previous)?;
        report.previous = Some(Brief {
            issue: p.issue,
            delivered: p.delivered,
            clicks: p.clicks.counted,
            reads: p.reads.total,
        });
    }
    Ok(report)
}
