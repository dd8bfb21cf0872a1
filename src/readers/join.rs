//! Joining and choosing: a confirmed sign-up, an imported list, a change of projects. Each is
//! an event in the reader's history; the subscriber and choice tables follow from them.

use anyhow::Result;
use serde_json::{Value, json};

use super::{Kind, Standing, record, standing};
use crate::ledger::{Ledger, Signup};

/// Whether a confirmation email may go to `email`: not to an address that complained, that
/// the operator suppressed, or that was forgotten. (Its own unsubscribe and bounces do not
/// stop it: a new subscription is how a reader comes back.)
pub fn may_be_asked(ledger: &Ledger, email: &str) -> Result<bool> {
    Ok(match standing(ledger, email)? {
        Standing::Mailable => true,
        Standing::Suppressed { kind, .. } => matches!(kind, Kind::Unsubscribed | Kind::HardBounce | Kind::SoftLimit),
        Standing::Forgotten { .. } => false,
    })
}

/// What pressing the confirmation button did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    Welcome,
    /// This link was confirmed before: nothing more recorded.
    Already,
    /// This link was confirmed before, and the reader has left since (unsubscribed, bounced,
    /// suppressed): nothing recorded, and the page says so rather than "subscribed".
    LeftSince,
    /// The address may not be mailed (complaint, operator, forgotten since): nothing recorded.
    Refused,
}

/// Confirms `signup` (its link's button was pressed), keeping the consent record with the
/// event: the form, its wording verbatim, when it was posted and confirmed, from where.
pub fn confirm(ledger: &mut Ledger, signup: &Signup, client: Value) -> Result<Confirmed> {
    // Decisions read inside the write transaction (see `record`).
    ledger.begin()?;
    if signup.confirmed_at.is_some() {
        return Ok(match standing(ledger, &signup.email)? {
            Standing::Mailable => Confirmed::Already,
            _ => Confirmed::LeftSince,
        });
    }
    if !may_be_asked(ledger, &signup.email)? {
        return Ok(Confirmed::Refused);
    }
    let confirmed_at = crate::ledger::now();
    let consent = json!({
        "signup": signup.id,
        "form": signup.form,
        "wording": signup.wording,
        "layout_version": signup.layout_version,
        "projects": signup.projects,
        "posted_at": signup.posted_at,
        "posted_from": signup.client,
        "confirmed_at": confirmed_at,
        "confirmed_from": client,
        "confirmation_message_id": signup.message_id,
    });
    let change = record(ledger, &signup.email, Kind::Confirmed, "double-opt-in", None, consent)?;
    let Some(event) = change.event else {
        return Ok(Confirmed::Refused);
    };
    ledger.store_subscriber(&signup.email, signup.name.as_deref(), event)?;
    ledger.store_choice(&signup.email, &signup.projects, event)?;
    ledger.signup_confirmed(signup.id, &confirmed_at)?;
    Ok(Confirmed::Welcome)
}

/// The reader chose `projects` (as the list column; empty for everything) through `source`.
pub fn choose(ledger: &mut Ledger, email: &str, projects: &str, source: &str, evidence: Value) -> Result<bool> {
    ledger.begin()?;
    if ledger.choice_of(email)?.as_deref() == Some(projects) {
        return Ok(false);
    }
    let mut evidence = evidence;
    evidence["projects"] = json!(projects);
    let change = record(ledger, email, Kind::Chose, source, None, evidence)?;
    match change.event {
        Some(event) => {
            ledger.store_choice(email, projects, event)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// What importing one address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    Added,
    /// Already a subscriber: nothing recorded.
    Known,
    /// Forgotten, or its standing forbids mail: not added.
    Refused,
}

/// A reader brought from another list, with the consent wording that covered it there.
pub fn import(
    ledger: &mut Ledger,
    email: &str,
    name: Option<&str>,
    projects: Option<&str>,
    evidence: Value,
) -> Result<Imported> {
    ledger.begin()?;
    if ledger.is_subscriber(email)? {
        return Ok(Imported::Known);
    }
    if !matches!(standing(ledger, email)?, Standing::Mailable) {
        return Ok(Imported::Refused);
    }
    let change = record(ledger, email, Kind::Subscribed, "import", None, evidence)?;
    let Some(event) = change.event else {
        return Ok(Imported::Refused);
    };
    ledger.store_subscriber(email, name, event)?;
    if let Some(projects) = projects {
        ledger.store_choice(email, projects, event)?;
    }
    Ok(Imported::Added)
}

/// One reader of a list brought from elsewhere: the address, a name, the projects chosen
/// there (ids, `;`-separated), and the evidence of their consent.
pub struct Incoming {
    pub email: String,
    pub name: Option<String>,
    pub projects: Option<String>,
    pub evidence: Value,
}

/// What importing a list did, by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imports {
    pub added: u64,
    /// Already subscribers.
    pub known: u64,
    /// Forgotten, or their standing forbids mail.
    pub refused: u64,
    /// Of those added or known, the ones that came with projects.
    pub with_projects: u64,
}

/// Records each reader as a subscriber (see [`import`]), one commit at the end.
pub fn import_all(ledger: &mut Ledger, readers: impl IntoIterator<Item = Incoming>) -> Result<Imports> {
    let mut imports = Imports::default();
    for reader in readers {
        imports.with_projects += u64::from(reader.projects.is_some());
        let outcome = import(
            ledger,
            &reader.email,
            reader.name.as_deref(),
            reader.projects.as_deref(),
            reader.evidence,
        )?;
        match outcome {
            Imported::Added => imports.added += 1,
            Imported::Known => imports.known += 1,
            Imported::Refused => imports.refused += 1,
        }
    }
    ledger.commit()?;
    Ok(imports)
}
