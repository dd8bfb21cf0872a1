//! Everything held about one person, for `subscribers show` and `subscribers export` (a data
//! subject's access request): their standing, their history, what was sent to them, what came
//! back, and the rows of the recipient lists that name them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{Kind, Standing, standing};
use crate::ledger::{BounceEvent, Ledger, Mention, ReaderDelivery, ReaderEvent, Signup};
use crate::recipients::Recipients;

#[derive(Debug, Serialize)]
pub struct Dossier {
    pub email: String,
    pub exported_at: String,
    pub standing: Standing,
    /// Rows of the recipient lists with this address, as the files hold them now.
    pub recipient_rows: Vec<ListRow>,
    /// Whether the configuration lists it among the staff inboxes of test sends.
    pub test_recipient: bool,
    /// The reader's history, oldest first: every change of their standing and its evidence.
    pub events: Vec<ReaderEvent>,
    /// Of `events`: the confirmations and imports, each with its record of consent (the
    /// form, its wording as shown, when it was posted and confirmed, from where).
    pub consents: Vec<ReaderEvent>,
    /// Sign-ups posted with the address, confirmed or not.
    pub signups: Vec<Signup>,
    /// The projects they chose (empty: everything); none if they never chose.
    pub projects: Option<String>,
    /// Every message recorded for them.
    pub deliveries: Vec<ReaderDelivery>,
    /// Issues whose per-reader records were pruned (retention), and when: whether these
    /// issues reached them is no longer held by anyone.
    pub pruned: Vec<PrunedNote>,
    /// What bounce reports and complaints said about them, newest first.
    pub bounce_records: Vec<BounceEvent>,
    /// Other rows that name them (another reader's bounce, mail to the unsubscribe address,
    /// a run's selection): what `forget` scrubs besides their own rows.
    pub mentions: Vec<Mention>,
}

#[derive(Debug, Serialize)]
pub struct PrunedNote {
    pub issue: String,
    pub pruned_at: String,
}

#[derive(Debug, Serialize)]
pub struct ListRow {
    pub file: String,
    pub line: u64,
    pub fields: BTreeMap<String, String>,
}

/// Gathers what the ledger and the `lists` (that exist) hold about `email`.
pub fn gather(ledger: &Ledger, lists: &[&Path], test_recipients: &[String], email: &str) -> Result<Dossier> {
    let email = crate::address::key(email);
    let events = ledger.reader_events(&email)?;
    let consents = events
        .iter()
        .filter(|e| matches!(Kind::parse(&e.kind), Some(Kind::Subscribed | Kind::Confirmed)))
        .cloned()
        .collect();
    Ok(Dossier {
        standing: standing(ledger, &email)?,
        recipient_rows: rows_naming(lists, &email)?,
        test_recipient: test_recipients.iter().any(|t| crate::address::key(t) == email),
        deliveries: ledger.deliveries_of(&email)?,
        pruned: ledger
            .pruned_issues()?
            .into_iter()
            .map(|(issue, pruned_at)| PrunedNote { issue, pruned_at })
            .collect(),
        bounce_records: ledger.bounce_events_of(&email)?,
        signups: ledger.signups_of(&email)?,
        projects: ledger.choice_of(&email)?,
        mentions: ledger.mentions(&email)?,
        events,
        consents,
        exported_at: crate::ledger::now(),
        email,
    })
}

/// The rows of `lists` whose address is `email`; a bad row is no match.
pub fn rows_naming(lists: &[&Path], email: &str) -> Result<Vec<ListRow>> {
    let mut rows = Vec::new();
    for list in lists.iter().filter(|l| l.is_file()) {
        for row in Recipients::open(list)? {
            if let Ok(r) = row?
                && crate::address::key(&r.email) == crate::address::key(email)
            {
                rows.push(ListRow {
                    file: list.display().to_string(),
                    line: r.line,
                    fields: r.fields,
                });
            }
        }
    }
    Ok(rows)
}
