//! Mailchimp's audience exports, read as Mailchimp writes them: the subscribed export (its
//! `Email Address`, names, tags and the consent it recorded: OPTIN_TIME, OPTIN_IP,
//! CONFIRM_TIME, CONFIRM_IP), and the unsubscribed and cleaned exports (UNSUB_TIME, CLEAN_TIME).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

/// Which export a file is, from its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// Members who are subscribed.
    Subscribed,
    /// Members who unsubscribed themselves (UNSUB_TIME).
    Unsubscribed,
    /// Members Mailchimp removed after hard bounces (CLEAN_TIME).
    Cleaned,
}

/// One member.
#[derive(Debug)]
pub struct Member {
    pub line: u64,
    pub email: String,
    pub name: Option<String>,
    pub tags: Vec<String>,
    /// The columns that record consent or its withdrawal, verbatim (empty ones left out).
    pub evidence: Map<String, Value>,
}

/// A row that names no address, and why.
#[derive(Debug)]
pub struct Unreadable {
    pub line: u64,
    pub why: String,
}

/// The columns kept as evidence, as Mailchimp names them.
const EVIDENCE: &[&str] = &[
    "OPTIN_TIME",
    "OPTIN_IP",
    "CONFIRM_TIME",
    "CONFIRM_IP",
    "LAST_CHANGED",
    "UNSUB_TIME",
    "UNSUB_CAMPAIGN_TITLE",
    "UNSUB_REASON",
    "UNSUB_REASON_OTHER",
    "CLEAN_TIME",
    "CLEAN_CAMPAIGN_TITLE",
];

/// Reads the export at `path`: what it is, its members, and the rows without an address.
pub fn read(path: &Path) -> Result<(Export, Vec<Member>, Vec<Unreadable>)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}:1: cannot read the header row", path.display()))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_owned())
        .collect();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(email_at) = column("Email Address") else {
        bail!(
            "{}:1: no `Email Address` column: this is not a Mailchimp audience export (Audience > All contacts > Export Audience gives a zip of subscribed, unsubscribed and cleaned CSVs)",
            path.display()
        );
    };
    let export = if column("UNSUB_TIME").is_some() {
        Export::Unsubscribed
    } else if column("CLEAN_TIME").is_some() {
        Export::Cleaned
    } else {
        Export::Subscribed
    };
    let (first, last, tags_at) = (column("First Name"), column("Last Name"), column("TAGS"));
    let evidence_at: Vec<(&str, usize)> = EVIDENCE.iter().filter_map(|n| column(n).map(|i| (*n, i))).collect();
    let (mut members, mut unreadable) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.with_context(|| format!("cannot read {}", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).map(str::trim).unwrap_or_default();
        let email = match crate::address::normalize_address(field(Some(email_at))) {
            Ok(email) => email,
            Err(why) => {
                unreadable.push(Unreadable {
                    line,
                    why: format!("`{}`: {why}", field(Some(email_at))),
                });
                continue;
            }
        };
        let name = [field(first), field(last)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let evidence = evidence_at
            .iter()
            .filter(|(_, i)| !field(Some(*i)).is_empty())
            .map(|(n, i)| (n.to_ascii_lowercase(), Value::from(field(Some(*i)))))
            .collect();
        members.push(Member {
            line,
            email,
            name: (!name.is_empty()).then_some(name),
            tags: tags(field(tags_at)),
            evidence,
        });
    }
    Ok((export, members, unreadable))
}

/// Mailchimp writes a member's tags as quoted names separated by commas (`"Zuul","Kata
/// Containers"`), inside the CSV field.
fn tags(value: &str) -> Vec<String> {
    value
        .split("\",\"")
        .map(|t| t.trim().trim_matches('"').trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_as_mailchimp_writes_them() {
        assert_eq!(tags(r#""Zuul","Kata Containers""#), ["Zuul", "Kata Containers"]);
        assert_eq!(tags(r#""VIP""#), ["VIP"]);
        assert!(tags("").is_empty());
    }
}
