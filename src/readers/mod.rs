//! A reader's standing: who may be mailed, and why. Every change is an event in the reader's
//! history (when, from where, with what evidence); the standing is derived from the whole
//! history by precedence, never by the last write. `suppress`, `serve`, `bounces` and `send`
//! record events here; nothing else writes the suppression list.
//!
//! Precedence (see [`lifts`]):
//!
//! | a suppression by         | is lifted by                                              |
//! |--------------------------|-----------------------------------------------------------|
//! | complaint, operator      | the operator (`suppress remove`) only                     |
//! | hard bounce, soft limit  | the operator, or the reader confirming a new subscription |
//! | the reader's unsubscribe | the above, or the reader's resubscribe answering it       |
//!
//! A resubscribe answers one unsubscribe (the latest made with the same link, within
//! `unsubscribe.resubscribe_within`) and lifts only that one and the reader's earlier ones:
//! never anything stronger, never anything later.

pub mod dossier;
mod join;
pub mod mailchimp;

pub use join::{Confirmed, Imported, Imports, Incoming, choose, confirm, import, import_all, may_be_asked};

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use serde_json::{Value, json};

use crate::ledger::{Ledger, ReaderEvent};

/// What happened to a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Joined the list (imported, signed up); suppresses no one, lifts nothing.
    Subscribed,
    /// Confirmed a subscription from the address itself (double opt-in).
    Confirmed,
    /// The reader's own request: one-click, or mail to the List-Unsubscribe address.
    Unsubscribed,
    Resubscribed,
    /// The operator's suppression (`suppress add`, `suppress import`).
    Suppressed,
    /// The operator's `suppress remove`.
    Removed,
    HardBounce,
    /// Soft bounces on `bounces.soft_limit` issues in a row.
    SoftLimit,
    Complaint,
    /// Chose which projects' news to get (the preference centre); suppresses no one.
    Chose,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Subscribed => "subscribed",
            Kind::Confirmed => "confirmed",
            Kind::Unsubscribed => "unsubscribed",
            Kind::Resubscribed => "resubscribed",
            Kind::Suppressed => "suppressed",
            Kind::Removed => "removed",
            Kind::HardBounce => "hard-bounce",
            Kind::SoftLimit => "soft-limit",
            Kind::Complaint => "complaint",
            Kind::Chose => "chose-projects",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Subscribed,
            Kind::Confirmed,
            Kind::Unsubscribed,
            Kind::Resubscribed,
            Kind::Suppressed,
            Kind::Removed,
            Kind::HardBounce,
            Kind::SoftLimit,
            Kind::Complaint,
            Kind::Chose,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// How firmly a suppression of this kind holds; `None`: this kind suppresses no one.
    fn strength(self) -> Option<u8> {
        match self {
            Kind::Unsubscribed => Some(1),
            Kind::SoftLimit => Some(2),
            Kind::HardBounce => Some(3),
            Kind::Suppressed => Some(4),
            Kind::Complaint => Some(5),
            Kind::Subscribed | Kind::Confirmed | Kind::Resubscribed | Kind::Removed | Kind::Chose => None,
        }
    }

    /// For people: "a complaint", "the reader's own unsubscribe".
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Subscribed => "subscribed",
            Kind::Confirmed => "confirmed a subscription",
            Kind::Unsubscribed => "the reader's own unsubscribe",
            Kind::Resubscribed => "resubscribed",
            Kind::Suppressed => "the operator's suppression",
            Kind::Removed => "the operator lifted the suppressions",
            Kind::HardBounce => "a hard bounce",
            Kind::SoftLimit => "soft bounces on too many issues in a row",
            Kind::Complaint => "a spam complaint",
            Kind::Chose => "chose projects",
        }
    }
}

fn kind_of(event: &ReaderEvent) -> Option<Kind> {
    Kind::parse(&event.kind)
}

/// Whether `by` lifts the earlier suppression `held`: the precedence table, in one place.
fn lifts(by: &ReaderEvent, held: &ReaderEvent) -> bool {
    let (Some(by_kind), Some(held_kind)) = (kind_of(by), kind_of(held)) else {
        return false;
    };
    match by_kind {
        Kind::Removed => true,
        Kind::Confirmed => matches!(held_kind, Kind::Unsubscribed | Kind::HardBounce | Kind::SoftLimit),
        Kind::Resubscribed => held_kind == Kind::Unsubscribed && by.answers.is_some_and(|answered| held.id <= answered),
        _ => false,
    }
}

/// The suppressions still in force after `events` (oldest first), in order.
fn in_force(events: &[ReaderEvent]) -> Vec<&ReaderEvent> {
    let mut held: Vec<&ReaderEvent> = Vec::new();
    for event in events {
        match kind_of(event).and_then(Kind::strength) {
            Some(_) => held.push(event),
            None => held.retain(|h| !lifts(event, h)),
        }
    }
    held
}

/// The event that decides the standing: the firmest suppression in force (the first of
/// equals), or none when the reader may be mailed.
pub fn deciding(events: &[ReaderEvent]) -> Option<&ReaderEvent> {
    in_force(events)
        .into_iter()
        .rev()
        .max_by_key(|e| kind_of(e).and_then(Kind::strength))
}

/// Where a reader stands.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "standing", rename_all = "kebab-case")]
pub enum Standing {
    Mailable,
    Suppressed {
        kind: Kind,
        event: ReaderEvent,
    },
    /// Erased at the person's request: only a keyed hash is left, and it is never mailed.
    Forgotten {
        at: String,
    },
}

impl Standing {
    fn kind(&self) -> Option<Kind> {
        match self {
            Standing::Suppressed { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub fn is_mailable(&self) -> bool {
        matches!(self, Standing::Mailable)
    }
}

pub fn standing(ledger: &Ledger, email: &str) -> Result<Standing> {
    if let Some(at) = ledger.forgotten_at(email)? {
        return Ok(Standing::Forgotten { at });
    }
    Ok(standing_of(&ledger.reader_events(email)?))
}

fn standing_of(events: &[ReaderEvent]) -> Standing {
    match deciding(events) {
        Some(event) => Standing::Suppressed {
            kind: kind_of(event).unwrap_or(Kind::Suppressed),
            event: event.clone(),
        },
        None => Standing::Mailable,
    }
}

/// What recording an event did.
#[derive(Debug, Clone)]
pub struct Change {
    /// The new event; `None` when nothing was stored (the address is forgotten, or the same
    /// request is already in force).
    pub event: Option<i64>,
    pub before: Option<Kind>,
    pub after: Option<Kind>,
    /// The address was forgotten: nothing about it is stored, and it is never mailed.
    pub forgotten: bool,
}

impl Change {
    /// Nothing stored: the standing stays `kind`.
    fn nothing(kind: Option<Kind>, forgotten: bool) -> Change {
        Change {
            event: None,
            before: kind,
            after: kind,
            forgotten,
        }
    }

    /// What it did, for the actions `bounces` and `send` report: `label` says what made it
    /// (`bounce`, `complaint`, `mailto`).
    pub fn action(&self, label: &str) -> String {
        match (self.forgotten, self.before, self.after) {
            (true, ..) => "none: the address was forgotten".into(),
            (_, None, _) => format!("suppressed ({label})"),
            (_, Some(before), Some(after)) if before != after => {
                format!("suppressed ({label}; was {})", before.as_str())
            }
            (_, Some(before), _) => format!("recorded; already suppressed ({})", before.as_str()),
        }
    }

    /// The address went from mailable to suppressed.
    pub fn newly_suppressed(&self) -> bool {
        self.before.is_none() && self.after.is_some()
    }
}

/// Records that `kind` happened to `email` and stores the standing that follows.
pub fn record(
    ledger: &mut Ledger,
    email: &str,
    kind: Kind,
    source: &str,
    issue: Option<&str>,
    evidence: Value,
) -> Result<Change> {
    record_answering(ledger, email, kind, source, issue, evidence, None)
}

fn record_answering(
    ledger: &mut Ledger,
    email: &str,
    kind: Kind,
    source: &str,
    issue: Option<&str>,
    evidence: Value,
    answers: Option<i64>,
) -> Result<Change> {
    // The decision reads inside the write transaction: a `forget` committing in between
    // would otherwise be undone by this write.
    ledger.begin()?;
    // Without the key file nobody can be told apart from the forgotten: an event that only
    // stops mail (a reader's unsubscribe, a bounce) is still recorded, as RFC 8058 and the
    // reader expect; anything else fails closed.
    let forgotten = match ledger.is_forgotten(email) {
        Err(_) if kind.strength().is_some() && ledger.missing_forget_key()?.is_some() => false,
        known => known?,
    };
    if forgotten {
        return Ok(Change::nothing(None, true));
    }
    let before = standing_of(&ledger.reader_events(email)?).kind();
    let id = ledger.insert_reader_event(email, kind.as_str(), source, issue, &evidence, answers)?;
    let events = ledger.reader_events(email)?;
    let decided = deciding(&events);
    let reason = decided.map(reason_of);
    ledger.store_standing(email, decided.zip(reason.as_deref()))?;
    Ok(Change {
        event: Some(id),
        before,
        after: decided.and_then(kind_of),
        forgotten: false,
    })
}

/// The reader's own request to leave, through `source` (one-click, mailto) with the link of
/// `issue`. Asking again while the same request is in force records nothing more.
pub fn unsubscribe(
    ledger: &mut Ledger,
    email: &str,
    source: &str,
    issue: Option<&str>,
    evidence: Value,
) -> Result<Change> {
    ledger.begin()?;
    let events = ledger.reader_events(email)?;
    let repeated = in_force(&events)
        .iter()
        .any(|e| kind_of(e) == Some(Kind::Unsubscribed) && e.source == source && e.issue.as_deref() == issue);
    if repeated {
        return Ok(Change::nothing(standing_of(&events).kind(), false));
    }
    record(ledger, email, Kind::Unsubscribed, source, issue, evidence)
}

/// What a resubscribe did, for the page that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resubscribed {
    /// The reader's own unsubscribe was lifted: mailed again.
    Welcome,
    /// The address was not unsubscribed: nothing changed.
    AlreadySubscribed,
    /// The address stays suppressed: by something stronger or later than the unsubscribe this
    /// link made, or the link's unsubscribe is too old to be undone from it.
    Kept,
}

/// The reader pressing "subscribe me again" with the link of `issue`.
pub fn resubscribe(
    ledger: &mut Ledger,
    email: &str,
    issue: Option<&str>,
    within: Duration,
    evidence: Value,
) -> Result<Resubscribed> {
    ledger.begin()?;
    if ledger.is_forgotten(email)? {
        return Ok(Resubscribed::Kept);
    }
    let events = ledger.reader_events(email)?;
    let before = standing_of(&events);
    let oldest = chrono::Utc::now() - chrono::Duration::from_std(within).unwrap_or(chrono::TimeDelta::MAX);
    let answered = in_force(&events)
        .into_iter()
        .filter(|e| kind_of(e) == Some(Kind::Unsubscribed) && e.issue.as_deref() == issue)
        .filter(|e| chrono::DateTime::parse_from_rfc3339(&e.created_at).is_ok_and(|at| at >= oldest))
        .map(|e| e.id)
        .max();
    if before.is_mailable() && answered.is_none() {
        return Ok(Resubscribed::AlreadySubscribed);
    }
    // Recorded even when it lifts nothing: an attempt with an old link is evidence too.
    let change = record_answering(
        ledger,
        email,
        Kind::Resubscribed,
        "one-click",
        issue,
        evidence,
        answered,
    )?;
    Ok(match (answered, change.after) {
        (Some(_), None) => Resubscribed::Welcome,
        _ => Resubscribed::Kept,
    })
}

/// The source of the operator's changes (`suppress add`, `suppress remove`).
pub const OPERATOR: &str = "manual";

/// Everything the operator's `suppress remove` lifts: every suppression before it.
pub fn remove(ledger: &mut Ledger, email: &str, note: &str) -> Result<Change> {
    record(ledger, email, Kind::Removed, OPERATOR, None, json!({ "note": note }))
}

/// Erases the person's data from the ledger and keeps a keyed hash of the address, so that it
/// is never mailed again, whatever list still holds it.
pub fn forget(ledger: &mut Ledger, email: &str) -> Result<crate::ledger::Erased> {
    ledger.erase(email)
}

/// The line kept with a suppression: what decided it, in a few words.
fn reason_of(event: &ReaderEvent) -> String {
    let text = |key: &str| event.evidence.get(key).and_then(Value::as_str).map(str::to_owned);
    let kind = kind_of(event).unwrap_or(Kind::Suppressed);
    let detail = text("note")
        .or_else(|| text("diagnostic"))
        .or_else(|| event.issue.as_ref().map(|i| format!("from {i}")));
    match detail {
        Some(detail) => format!("{} ({}): {detail}", kind.describe(), event.source),
        None => format!("{} ({})", kind.describe(), event.source),
    }
}

#[cfg(test)]
mod tests;
