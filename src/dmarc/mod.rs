//! DMARC aggregate reports: what receivers saw of the mail sent as our domain, per source,
//! with DKIM's and SPF's verdicts. [`unpack`] finds the XML in a message or file, [`xml`]
//! reads it however broken, [`feedback`] turns it into what the ledger keeps, [`pass`] reads a
//! mailbox or files once, [`summary`] adds up and warns.

pub mod feedback;
pub mod pass;
pub mod summary;
pub mod unpack;
mod xml;

use anyhow::Result;

use crate::ledger::Ledger;
use crate::ledger::dmarc::{Held, Unreadable};
use unpack::Unreadable as Why;

/// What one file or message gave.
#[derive(Default)]
pub struct Taken {
    /// How many reports were read (those the ledger held already too).
    pub read: u64,
    /// The reports read, unless let go with [`Taken::let_go`].
    pub reports: Vec<Held>,
    /// How many of them the ledger did not hold before.
    pub new: u64,
    /// Rows of the reports that could not be read (no source address or no count).
    pub skipped_rows: u64,
    pub unreadable: Vec<Unreadable>,
}

impl Taken {
    /// Lets the reports' rows go when the ledger has them and only counts matter (a mailbox's
    /// many reports are not held in memory).
    pub fn let_go(mut self) -> Taken {
        self.reports = Vec::new();
        self
    }

    pub fn extend(&mut self, other: Taken) {
        self.read += other.read;
        self.reports.extend(other.reports);
        self.new += other.new;
        self.skipped_rows += other.skipped_rows;
        self.unreadable.extend(other.unreadable);
    }
}

/// Whether a message from the bounce mailbox is an aggregate report: its documents, or why
/// none could be read from what says it is one. `None`: other mail.
pub fn recognise(raw: &[u8]) -> Option<Result<Vec<Vec<u8>>, Why>> {
    match unpack::documents(raw) {
        Ok(documents) => Some(Ok(documents)),
        Err(why) if unpack::has_report_subject(raw) => Some(Err(why)),
        Err(_) => None,
    }
}

/// Reads the reports in `found` (from [`unpack::documents`]) and keeps them in `ledger` (a
/// report the ledger holds already changes nothing; without a ledger, a dry run, nothing is
/// kept); `file` names where they came from.
pub fn take(found: Result<Vec<Vec<u8>>, Why>, file: &str, mut ledger: Option<&mut Ledger>) -> Result<Taken> {
    let mut taken = Taken::default();
    let documents: Vec<Result<Vec<u8>, Why>> = match found {
        Ok(documents) => documents.into_iter().map(Ok).collect(),
        Err(why) => vec![Err(why)],
    };
    // One document at a time, each let go once read: a large report's XML and its rows are
    // not held together with the next one's.
    for document in documents {
        match document.and_then(|d| feedback::read(&d, file)) {
            Ok(report) => {
                let kept = match ledger.as_deref_mut() {
                    Some(ledger) => ledger.store_dmarc(&report.feedback, &report.rows)?,
                    None => false,
                };
                taken.new += u64::from(kept);
                taken.read += 1;
                taken.skipped_rows += report.skipped;
                taken.reports.push(Held {
                    feedback: report.feedback,
                    rows: report.rows,
                });
            }
            Err(why) => {
                let unreadable = Unreadable {
                    file: file.to_owned(),
                    why: why.to_string(),
                };
                if let Some(ledger) = ledger.as_deref_mut() {
                    ledger.store_dmarc_unreadable(&unreadable)?;
                }
                taken.unreadable.push(unreadable);
            }
        }
    }
    Ok(taken)
}
