//! From the recipient list to personalized messages: the plan (counts, skipped rows) and the
//! producer that feeds the delivery loop without holding the list in memory.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use lettre::Address;
use lettre::address::Envelope;
use lettre::message::dkim::DkimConfig;
use serde::Serialize;
use tokio::sync::mpsc;

use super::run::Job;
use crate::personalize::Personalizer;
use crate::recipients::{Recipient, Recipients, SkipReason, Skipped};

/// Rows of a list that are kept for the report; the rest are only counted.
const SKIPPED_KEPT: usize = 1000;

/// What a send would do with a recipient list.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub rows: u64,
    pub to_send: u64,
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The first skipped rows with their line and reason.
    pub skipped_rows: Vec<Skipped>,
    /// The first valid recipient, to check personalization before anything is sent.
    #[serde(skip)]
    pub first: Option<Recipient>,
}

impl Plan {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn count(&mut self, row: &Result<Recipient, Skipped>) {
        self.rows += 1;
        match row {
            Ok(r) => {
                self.to_send += 1;
                if self.first.is_none() {
                    self.first = Some(r.clone());
                }
            }
            Err(skipped) => {
                *self.skipped.entry(skipped.reason).or_default() += 1;
                if self.skipped_rows.len() < SKIPPED_KEPT {
                    self.skipped_rows.push(skipped.clone());
                }
            }
        }
    }
}

/// Reads the whole list once, counting what would be sent and skipped.
pub fn plan(path: &Path) -> Result<Plan> {
    let mut plan = Plan::default();
    for row in Recipients::open(path)? {
        plan.count(&row?);
    }
    Ok(plan)
}

/// Builds the message for one recipient: personalized, DKIM-signed when configured.
pub struct Composer<'a> {
    pub personalizer: &'a Personalizer<'a>,
    pub dkim: Option<&'a DkimConfig>,
    /// MAIL FROM: where bounces go.
    pub return_path: Address,
}

impl Composer<'_> {
    pub fn job(&self, recipient: &Recipient) -> Result<Job> {
        let mut message = self.personalizer.message(recipient)?;
        if let Some(dkim) = self.dkim {
            message.sign(dkim);
        }
        let to: Address = recipient.email.parse()?;
        Ok(Job {
            email: recipient.email.clone(),
            line: recipient.line,
            message_id: self.personalizer.message_id(&recipient.email),
            envelope: Envelope::new(Some(self.return_path.clone()), vec![to])?,
            bytes: message.formatted(),
            attempts: 0,
        })
    }

    /// Personalizes `recipients` in order into `jobs`. Runs on its own thread: the bounded
    /// channel keeps only a few messages in memory, however long the list. Returns the
    /// recipients that could not be personalized.
    pub fn produce(
        &self,
        recipients: impl Iterator<Item = Recipient>,
        jobs: mpsc::Sender<Job>,
    ) -> Vec<(Recipient, String)> {
        let mut failed = Vec::new();
        for recipient in recipients {
            match self.job(&recipient) {
                Ok(job) => {
                    if jobs.blocking_send(job).is_err() {
                        break; // the run stopped
                    }
                }
                Err(e) => failed.push((recipient, format!("{e:#}"))),
            }
        }
        failed
    }
}
