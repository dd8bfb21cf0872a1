//! The guard against mass suppression. A hard bounce (or a soft limit reached) does not
//! suppress its reader at once: it waits, recorded, until the end of the run that found it
//! (`bounces`, or a `send` refused synchronously). Then, where more than `bounces.mass_guard`
//! readers at one receiving domain failed with the same diagnostic (addresses and identifiers
//! taken out), none of them is suppressed: they are held as a group for the operator
//! (`newsletter bounces review`), and go on being mailed meanwhile. One blocklisting of our
//! IP, misread, must not unsubscribe every reader behind that receiver.
//!
//! Waiting rows are in the ledger with the report that made them, so a crash before the end
//! of the run leaves them for the next run to settle: nothing is lost or applied twice.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::{Result, bail};
use regex::Regex;
use serde_json::Value;

pub use crate::ledger::HeldGroup;
use crate::ledger::{DeferredRow, Ledger};
use crate::readers::{self, Kind};

/// A suppression waiting for the end of its run.
pub struct Deferred<'a> {
    pub email: &'a str,
    pub issue: Option<&'a str>,
    pub kind: Kind,
    /// The source recorded in the reader's history (`bounce`, `soft-limit`, `send`).
    pub source: &'a str,
    pub diagnostic: &'a str,
    pub evidence: Value,
}

/// Records `d` to be settled at the end of the run, in the caller's transaction.
pub fn defer(ledger: &mut Ledger, d: &Deferred<'_>) -> Result<()> {
    ledger.insert_deferred(
        d.email,
        d.issue,
        d.kind.as_str(),
        d.source,
        &domain_of(d.email),
        &signature(d.diagnostic),
        d.diagnostic,
        &d.evidence,
    )
}

/// What settling did.
#[derive(Debug, Default)]
pub struct Settled {
    /// By reader: what was done (suppressed, or held in a group).
    pub actions: BTreeMap<String, String>,
    /// Groups held back (new ones and ones that grew).
    pub held: Vec<HeldGroup>,
}

/// Settles every waiting suppression: a group over `limit` at one domain with one signature
/// (or joining a group already held) is held; the others are suppressed now.
pub fn settle(ledger: &mut Ledger, limit: u32) -> Result<Settled> {
    let mut by_group: BTreeMap<(String, String), Vec<DeferredRow>> = BTreeMap::new();
    for row in ledger.deferred_pending()? {
        by_group
            .entry((row.domain.clone(), row.signature.clone()))
            .or_default()
            .push(row);
    }
    let mut settled = Settled::default();
    for ((domain, signature), rows) in by_group {
        let open = ledger.open_group(&domain, &signature)?;
        if open.is_none() && rows.len() as u64 <= u64::from(limit) {
            for row in &rows {
                let action = apply(ledger, row)?.action(&label(row));
                finish(ledger, row, "applied", None, &action)?;
                settled.actions.insert(row.email.clone(), action);
            }
            continue;
        }
        let id = match open {
            Some(id) => id,
            None => ledger.create_group(&domain, &signature, &rows[0].diagnostic)?,
        };
        let readers = rows.len() + ledger.deferred_in_group(id)?.len();
        let action = format!(
            "held: group {id}, {readers} readers at {domain} with one diagnostic; suppressed only if `newsletter bounces review {id} --accept`"
        );
        for row in &rows {
            finish(ledger, row, "held", Some(id), &action)?;
            settled.actions.insert(row.email.clone(), action.clone());
        }
        if let Some(group) = ledger.held_group(id)? {
            settled.held.push(group);
        }
    }
    ledger.commit()?;
    Ok(settled)
}

/// Marks a waiting row done, and its bounce record with what was done.
fn finish(ledger: &mut Ledger, row: &DeferredRow, state: &str, group: Option<i64>, action: &str) -> Result<()> {
    ledger.set_deferred(row.id, state, group)?;
    if let Some(event) = row.evidence.get("bounce_event").and_then(Value::as_i64) {
        ledger.update_bounce_action(event, action)?;
    }
    Ok(())
}

/// The word for what made a waiting suppression, in its action.
fn label(row: &DeferredRow) -> String {
    match row.evidence.get("soft_run").and_then(Value::as_u64) {
        Some(run) => format!("soft bounces on {run} issues in a row"),
        None => "bounce".to_owned(),
    }
}

fn apply(ledger: &mut Ledger, row: &DeferredRow) -> Result<readers::Change> {
    let kind = Kind::parse(&row.kind).unwrap_or(Kind::HardBounce);
    readers::record(
        ledger,
        &row.email,
        kind,
        &row.source,
        row.issue.as_deref(),
        row.evidence.clone(),
    )
}

/// The operator's decision on a held group: `accept` suppresses every reader in it,
/// otherwise none is (their bounce records stay). Returns the group as decided.
pub fn decide(ledger: &mut Ledger, id: i64, accept: bool) -> Result<HeldGroup> {
    let Some(group) = ledger.held_group(id)? else {
        bail!("there is no held group {id}: `newsletter bounces review` lists them");
    };
    if group.state != "held" {
        bail!("group {id} was already {} on the operator's word", group.state);
    }
    for mut row in ledger.deferred_in_group(id)? {
        let action = if accept {
            row.evidence["held_group"] = Value::from(id);
            format!(
                "{} on the operator's word (group {id})",
                apply(ledger, &row)?.action(&label(&row))
            )
        } else {
            format!("none: the operator rejected group {id}")
        };
        finish(
            ledger,
            &row,
            if accept { "accepted" } else { "rejected" },
            Some(id),
            &action,
        )?;
    }
    ledger.decide_group(id, if accept { "accepted" } else { "rejected" })?;
    ledger.commit()?;
    Ok(ledger.held_group(id)?.unwrap_or(group))
}

fn domain_of(email: &str) -> String {
    email.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase()
}

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\S+@\S+").expect("the pattern is valid"));
/// A word that holds a digit and is no reply or status code: a host, an IP, a queue or
/// session id, a time.
static IDENTIFIER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[^\s;,()]*\d[^\s;,()]*").expect("the pattern is valid"));
static CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:[245]\d\d-?|[245]\.\d{1,3}\.\d{1,3})$").expect("the pattern is valid"));

/// What makes two diagnostics the same failure: lower case, addresses and identifiers out.
pub fn signature(diagnostic: &str) -> String {
    let lower = diagnostic.to_lowercase();
    let text = ADDRESS.replace_all(&lower, "<address>");
    let text = IDENTIFIER.replace_all(&text, |c: &regex::Captures<'_>| {
        let word = &c[0];
        if CODE.is_match(word) {
            word.to_owned()
        } else {
            "#".to_owned()
        }
    });
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_ignore_addresses_hosts_and_ids() {
        let a = signature(
            "host mx1.example.net[192.0.2.1] said: 550 5.7.1 <a@example.net>: blocked, see https://bl.example/q?ip=198.51.100.7 (id A1B2C3)",
        );
        let b = signature(
            "host mx2.example.net[192.0.2.2] said: 550 5.7.1 <b@example.net>: blocked, see https://bl.example/q?ip=198.51.100.7 (id Z9Y8X7)",
        );
        assert_eq!(a, b);
        assert!(a.contains("550 5.7.1"), "{a}");
        assert_ne!(a, signature("550 5.1.1 <a@example.net>: user unknown"));
    }
}
