//! What a set of aggregate reports says: totals per report, per reporter and per source (ours
//! or not), and the warnings a postmaster acts on, each with what to do.

use std::collections::BTreeMap;

use serde::Serialize;

use super::feedback::aligned;
use crate::config::Config;
use crate::human::thousands;
use crate::ledger::dmarc::{Feedback, Held, Row, Unreadable};

/// Our mail's senders: the configured sources, and DKIM by our domain with our selectors.
pub struct Ours {
    networks: Vec<ipnet::IpNet>,
    domain: String,
    selectors: Vec<String>,
}

impl Ours {
    pub fn of(config: &Config) -> anyhow::Result<Ours> {
        let networks = config
            .dmarc
            .networks()
            .map_err(|(key, why)| anyhow::anyhow!("{key}: {why}"))?;
        let from_domain = config.from.address.rsplit_once('@').map(|(_, d)| d);
        let domain = config.dkim.domain.as_deref().or(from_domain).unwrap_or_default();
        let selectors = [&config.dkim.selector, &config.dkim.ed25519_selector]
            .into_iter()
            .flatten()
            .chain(&config.dmarc.selectors)
            .map(|s| s.to_ascii_lowercase())
            .collect();
        Ok(Ours {
            networks,
            domain: domain.to_ascii_lowercase(),
            selectors,
        })
    }

    /// Nothing configured says what is ours: every source is a stranger.
    pub fn is_unknown(&self) -> bool {
        self.networks.is_empty() && self.selectors.is_empty()
    }

    pub fn holds(&self, row: &Row) -> bool {
        let listed = row
            .source_ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| self.networks.iter().any(|n| n.contains(&ip)));
        listed
            || (row.dkim_result == "pass"
                && aligned(&row.dkim_domain, &self.domain)
                && self.selectors.contains(&row.dkim_selector))
    }
}

/// One report's totals (as parsedmarc counts them).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReportTotals {
    pub file: String,
    pub org: String,
    pub report_id: String,
    pub domain: String,
    pub begin: String,
    pub end: String,
    pub rows: u64,
    pub messages: u64,
    /// Messages whose policy-evaluated DKIM (SPF) result is pass: aligned.
    pub dkim_pass: u64,
    pub spf_pass: u64,
    /// Distinct source addresses.
    pub sources: u64,
}

/// Messages and how many of them aligned.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub messages: u64,
    pub dkim_aligned: u64,
    pub spf_aligned: u64,
    /// DKIM or SPF aligned: DMARC passed.
    pub aligned: u64,
}

impl Tally {
    fn add(&mut self, row: &Row) {
        let (dkim, spf) = (row.dkim == "pass", row.spf == "pass");
        self.messages += row.messages;
        self.dkim_aligned += if dkim { row.messages } else { 0 };
        self.spf_aligned += if spf { row.messages } else { 0 };
        self.aligned += if dkim || spf { row.messages } else { 0 };
    }
}

#[derive(Debug, Serialize)]
pub struct ReporterTotals {
    pub org: String,
    pub reports: u64,
    #[serde(flatten)]
    pub tally: Tally,
}

#[derive(Debug, Serialize)]
pub struct SourceTotals {
    pub ip: String,
    pub ours: bool,
    #[serde(flatten)]
    pub tally: Tally,
    /// Messages by what the receivers did: none, quarantine, reject.
    pub dispositions: BTreeMap<String, u64>,
    pub reporters: Vec<String>,
}

/// Something to act on.
#[derive(Debug, Serialize)]
pub struct Warning {
    /// dkim_alignment, spf_alignment, not_ours or policy_none.
    pub kind: &'static str,
    pub says: String,
    pub todo: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub reports: Vec<ReportTotals>,
    pub reporters: Vec<ReporterTotals>,
    pub sources: Vec<SourceTotals>,
    /// Our sources' messages.
    pub ours: Tally,
    /// Everyone's, ours and not.
    pub all: Tally,
    pub warnings: Vec<Warning>,
    pub unreadable: Vec<Unreadable>,
}

/// A DKIM alignment failure rate at one receiver above this (1%) is a warning.
const DKIM_FAILURE_LIMIT: f64 = 0.01;
/// Sources not ours named one by one; the rest in one line.
const NAMED_STRANGERS: usize = 5;
const DAY: i64 = 86_400;

pub fn totals(feedback: &Feedback, rows: &[Row]) -> ReportTotals {
    let mut tally = Tally::default();
    rows.iter().for_each(|r| tally.add(r));
    let sources: std::collections::HashSet<&str> = rows.iter().map(|r| r.source_ip.as_str()).collect();
    ReportTotals {
        file: feedback.file.clone(),
        org: feedback.org.clone(),
        report_id: feedback.report_id.clone(),
        domain: feedback.domain.clone(),
        begin: utc(feedback.begin),
        end: utc(feedback.end),
        rows: rows.len() as u64,
        messages: tally.messages,
        dkim_pass: tally.dkim_aligned,
        spf_pass: tally.spf_aligned,
        sources: sources.len() as u64,
    }
}

pub fn utc(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| seconds.to_string())
}

/// Sums `held` up and finds what to warn about.
pub fn summarize(held: &[Held], unreadable: Vec<Unreadable>, ours: &Ours) -> Summary {
    let mut reporters: BTreeMap<&str, ReporterTotals> = BTreeMap::new();
    let mut sources: BTreeMap<&str, SourceTotals> = BTreeMap::new();
    let (mut ours_tally, mut all) = (Tally::default(), Tally::default());
    for report in held {
        let reporter = reporters.entry(&report.feedback.org).or_insert_with(|| ReporterTotals {
            org: report.feedback.org.clone(),
            reports: 0,
            tally: Tally::default(),
        });
        reporter.reports += 1;
        for row in &report.rows {
            let mine = ours.holds(row);
            reporter.tally.add(row);
            all.add(row);
            if mine {
                ours_tally.add(row);
            }
            let source = sources.entry(&row.source_ip).or_insert_with(|| SourceTotals {
                ip: row.source_ip.clone(),
                ours: mine,
                tally: Tally::default(),
                dispositions: BTreeMap::new(),
                reporters: Vec::new(),
            });
            // A source is ours when any of its rows says so (DKIM passed with our selector).
            source.ours |= mine;
            source.tally.add(row);
            let disposition = if row.disposition.is_empty() {
                "none"
            } else {
                &row.disposition
            };
            *source.dispositions.entry(disposition.to_owned()).or_default() += row.messages;
            if !source.reporters.contains(&report.feedback.org) {
                source.reporters.push(report.feedback.org.clone());
            }
        }
    }
    let mut sources: Vec<SourceTotals> = sources.into_values().collect();
    sources.sort_by(|a, b| b.ours.cmp(&a.ours).then(b.tally.messages.cmp(&a.tally.messages)));
    let mut warnings = dkim_alignment(held, ours);
    warnings.extend(spf_alignment(held, ours));
    warnings.extend(strangers(&sources));
    warnings.extend(policy_none(held, ours));
    Summary {
        reports: held.iter().map(|h| totals(&h.feedback, &h.rows)).collect(),
        reporters: reporters.into_values().collect(),
        sources,
        ours: ours_tally,
        all,
        warnings,
        unreadable,
    }
}

fn percent(part: u64, whole: u64) -> String {
    format!("{:.1}%", part as f64 * 100.0 / whole.max(1) as f64)
}

/// Our mail failing DKIM alignment at one receiver above 1%.
fn dkim_alignment(held: &[Held], ours: &Ours) -> Vec<Warning> {
    // Per receiver: our messages, those failing, and the failing rows' sources and signatures.
    #[derive(Default)]
    struct AtReceiver<'a> {
        all: u64,
        failed: u64,
        how: BTreeMap<(&'a str, &'a str, &'a str, &'a str), u64>,
    }
    let mut by_org: BTreeMap<&str, AtReceiver> = BTreeMap::new();
    for report in held {
        for row in report.rows.iter().filter(|r| ours.holds(r)) {
            let entry = by_org.entry(&report.feedback.org).or_default();
            entry.all += row.messages;
            if row.dkim != "pass" {
                entry.failed += row.messages;
                let key = (
                    row.source_ip.as_str(),
                    row.dkim_domain.as_str(),
                    row.dkim_selector.as_str(),
                    row.dkim_result.as_str(),
                );
                *entry.how.entry(key).or_default() += row.messages;
            }
        }
    }
    by_org
        .into_iter()
        .filter(|(_, r)| r.failed as f64 > r.all as f64 * DKIM_FAILURE_LIMIT)
        .map(|(org, AtReceiver { all, failed, how })| {
            let ((ip, domain, selector, result), _) = how
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .unwrap_or_default();
            let signature = if domain.is_empty() {
                "no DKIM signature reported".to_owned()
            } else {
                format!(
                    "DKIM d={domain} s={} {}",
                    if selector.is_empty() { "(no selector)" } else { selector },
                    if result.is_empty() { "(no result)" } else { result }
                )
            };
            Warning {
                kind: "dkim_alignment",
                says: format!(
                    "{org}: {} of {} messages from our sources ({}) failed DKIM alignment; most from {ip}, {signature}",
                    thousands(failed),
                    thousands(all),
                    percent(failed, all)
                ),
                todo: format!(
                    "check that the selector is published with the key we sign with (`newsletter dkim`), that it signs for {} (dkim.domain), and that nothing between us and {org} changes signed mail (a relay adding a footer or rewriting links)",
                    ours.domain
                ),
            }
        })
        .collect()
}

/// Our sources passing DKIM but failing SPF alignment: the relay's MAIL FROM is not ours.
fn spf_alignment(held: &[Held], ours: &Ours) -> Vec<Warning> {
    let mut by_source: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for row in held.iter().flat_map(|h| &h.rows) {
        if ours.holds(row) && row.dkim == "pass" && row.spf != "pass" {
            *by_source.entry((&row.source_ip, &row.spf_domain)).or_default() += row.messages;
        }
    }
    by_source
        .into_iter()
        .map(|((ip, spf_domain), n)| {
            let mail_from = if spf_domain.is_empty() {
                "an unreported domain".to_owned()
            } else {
                spf_domain.to_owned()
            };
            Warning {
                kind: "spf_alignment",
                says: format!(
                    "{ip} (ours): {} messages passed DKIM but not SPF alignment; their MAIL FROM was {mail_from}, not {}",
                    thousands(n),
                    ours.domain
                ),
                todo: format!(
                    "give the relay a MAIL FROM on our domain (`return_path` or `bounces.return_path` under {}, or a custom MAIL FROM domain in SES) and cover it in SPF: until then DMARC rests on DKIM alone",
                    ours.domain
                ),
            }
        })
        .collect()
}

/// Sources that are not ours sending as our domain.
fn strangers(sources: &[SourceTotals]) -> Vec<Warning> {
    let strangers: Vec<&SourceTotals> = sources.iter().filter(|s| !s.ours).collect();
    let todo = "if it is a service of ours, add it to dmarc.our_sources and have it sign with our DKIM key; if not, someone else sends as us: p=quarantine (then p=reject) keeps that mail from inboxes";
    let mut warnings: Vec<Warning> = strangers
        .iter()
        .take(NAMED_STRANGERS)
        .map(|s| Warning {
            kind: "not_ours",
            says: format!(
                "{} is not one of our sources and sent {} messages as our domain ({} aligned; reported by {})",
                s.ip,
                thousands(s.tally.messages),
                percent(s.tally.aligned, s.tally.messages),
                s.reporters.join(", ")
            ),
            todo: todo.to_owned(),
        })
        .collect();
    let rest = &strangers[strangers.len().min(NAMED_STRANGERS)..];
    if !rest.is_empty() {
        warnings.push(Warning {
            kind: "not_ours",
            says: format!(
                "{} more sources that are not ours sent {} messages as our domain (`--format json` lists them)",
                rest.len(),
                thousands(rest.iter().map(|s| s.tally.messages).sum())
            ),
            todo: todo.to_owned(),
        });
    }
    warnings
}

/// `p=none` while all our mail has aligned for 30 days of reports: quarantine is safe.
fn policy_none(held: &[Held], ours: &Ours) -> Option<Warning> {
    let latest = held.iter().max_by_key(|h| h.feedback.end)?;
    if latest.feedback.policy != "none" {
        return None;
    }
    let from = latest.feedback.end - 30 * DAY;
    let recent: Vec<&Held> = held.iter().filter(|h| h.feedback.end > from).collect();
    let first = recent.iter().map(|h| h.feedback.begin).min()?;
    // Daily reports: thirty of them span 30 days less a second.
    if latest.feedback.end - first < 30 * DAY - DAY / 2 {
        return None;
    }
    let mut tally = Tally::default();
    recent
        .iter()
        .flat_map(|h| &h.rows)
        .filter(|r| ours.holds(r))
        .for_each(|r| tally.add(r));
    if tally.messages == 0 || tally.aligned < tally.messages {
        return None;
    }
    Some(Warning {
        kind: "policy_none",
        says: format!(
            "{} publishes p=none, and all {} messages from our sources aligned over the last 30 days",
            latest.feedback.domain,
            thousands(tally.messages)
        ),
        todo: format!(
            "p=quarantine is safe: publish _dmarc.{} TXT \"v=DMARC1; p=quarantine; rua=...\" (keep your rua=), and p=reject after another month like this",
            latest.feedback.domain
        ),
    })
}

/// The reports the ledger holds whose days end at or after `since` (Unix seconds), and the
/// reports that could not be read since then, summed up.
pub fn held_since(ledger: &crate::ledger::Ledger, ours: &Ours, since: i64) -> anyhow::Result<Summary> {
    let held = ledger.dmarc_reports_since(since)?;
    let unreadable = ledger.dmarc_unreadable_since(&utc(since))?;
    Ok(summarize(&held, unreadable, ours))
}

/// The default window of `newsletter dmarc`, in days: long enough to say whether p=none can go.
pub const WINDOW_DAYS: i64 = 30;

/// For `status`: the last 7 days' aligned rate of our mail and the warnings of the default
/// window; `None` when no report is held.
pub struct Recent {
    pub ours: Tally,
    pub warnings: usize,
}

pub fn recent(ledger: &crate::ledger::Ledger, ours: &Ours, now: i64) -> anyhow::Result<Option<Recent>> {
    // One reading of the window; the week is part of it.
    let since = now - WINDOW_DAYS * DAY;
    let held = ledger.dmarc_reports_since(since)?;
    if held.is_empty() {
        return Ok(None);
    }
    let mut tally = Tally::default();
    held.iter()
        .filter(|h| h.feedback.end >= now - 7 * DAY)
        .flat_map(|h| &h.rows)
        .filter(|r| ours.holds(r))
        .for_each(|r| tally.add(r));
    let window = summarize(&held, ledger.dmarc_unreadable_since(&utc(since))?, ours);
    Ok(Some(Recent {
        ours: tally,
        warnings: window.warnings.len() + window.unreadable.len(),
    }))
}
