//! What a report does: which of our recipients and issues it is about, and whether it
//! suppresses them. A report's events, its suppressions, the mailbox's cursor and the record
//! that it was handled go into the ledger's open transaction together; the caller commits a
//! batch before letting its messages go, so a crash loses the whole batch or none of it.

use anyhow::Result;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::classify::{Class, Reason};
use super::report::{Finding, Report, read};
use super::source::Item;
use super::verp::{self, Verp};
use crate::config::Config;
use crate::ledger::{BounceEvent, Ledger, now};
use crate::personalize::list_id_value;

/// One report's verdict on one recipient: a line of `bounces --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The file name in a maildir, `@OFFSET` in an mbox, the UID in IMAP.
    pub file: String,
    pub recipient: Option<String>,
    pub class: Class,
    pub reason: Reason,
    pub status: Option<String>,
    pub issue: Option<String>,
    /// What was done, or with --dry-run what would be.
    pub action: String,
}

/// What acting needs besides the ledger.
pub struct Handler<'a> {
    pub config: &'a Config,
    /// Reads VERP tokens (`bounces.return_path` with the unsubscribe secret).
    pub verp: Option<Verp>,
    pub dry_run: bool,
    /// The mailbox's name, which keys its cursor in the ledger.
    pub mailbox: String,
}

/// What a finding asks of the ledger, decided before anything is written.
enum Decision {
    /// Nothing to do, and why.
    Nothing(&'static str),
    AlreadySuppressed,
    Suppress {
        source: &'static str,
    },
    /// A soft bounce: counted; it suppresses once `soft_limit` issues in a row have one.
    Count,
}

impl Handler<'_> {
    /// Reads `item` and acts on it. With `dry_run` the ledger is only read.
    pub fn handle(&self, item: &Item, ledger: Option<&mut Ledger>) -> Result<Vec<Outcome>> {
        let mut report = read(&item.raw);
        if let Some(from) = self.unsubscribe_request(&report) {
            report.findings = vec![Finding {
                recipient: Some(from),
                original_recipient: None,
                reason: Reason::UnsubscribeRequest,
                status: None,
                diagnostic: format!("mail to the List-Unsubscribe address: {}", report.subject.trim()),
            }];
        }
        let id = report_id(&report, &item.raw);
        let already = match &ledger {
            Some(ledger) => ledger.is_report_handled(&id)?,
            None => false,
        };
        let (Some(ledger), false) = (ledger, already) else {
            let action = if already {
                "none: handled by an earlier run"
            } else {
                "none: no ledger"
            };
            return Ok(report
                .findings
                .iter()
                .map(|f| outcome(item, f, f.recipient.clone(), None, action.into()))
                .collect());
        };
        let mut outcomes = Vec::with_capacity(report.findings.len());
        for finding in &report.findings {
            outcomes.push(self.act(item, &report, finding, &id, ledger)?);
        }
        if !self.dry_run {
            ledger.record_report(&id)?;
            if let Some(cursor) = &item.cursor {
                ledger.set_cursor(&self.mailbox, cursor)?;
            }
        }
        Ok(outcomes)
    }

    fn act(&self, item: &Item, report: &Report, finding: &Finding, id: &str, ledger: &mut Ledger) -> Result<Outcome> {
        let mapped = self.recipient_of_ours(report, finding, ledger)?;
        let issue = mapped.as_ref().and_then(|(_, issue)| issue.clone());
        // An unsubscribe request counts whoever sent it, on our list or not.
        let email = match (&mapped, finding.reason) {
            (Some((email, _)), _) => Some(email.clone()),
            (None, Reason::UnsubscribeRequest) => finding.recipient.clone(),
            (None, _) => None,
        };
        let decision = match (&email, finding.reason.class()) {
            (None, _) => Decision::Nothing("none: not a recipient of ours"),
            (Some(_), Class::Ignore) if finding.reason != Reason::UnsubscribeRequest => {
                Decision::Nothing("none: nothing to act on")
            }
            (Some(_), Class::Soft) if finding.reason.is_sender_block() => {
                Decision::Nothing("none: a block of our sending, not of the reader (see status)")
            }
            (Some(_), _) if finding.reason == Reason::Delayed => {
                Decision::Nothing("none: a delay warning, the relay is still trying")
            }
            (Some(email), _) if ledger.is_suppressed(email)? => Decision::AlreadySuppressed,
            (Some(_), Class::Soft) => Decision::Count,
            (Some(_), Class::Hard) => Decision::Suppress { source: "bounce" },
            (Some(_), Class::Complaint) => Decision::Suppress { source: "complaint" },
            (Some(_), Class::Ignore) => Decision::Suppress { source: "mailto" },
        };
        let action = if self.dry_run {
            match &email {
                Some(email) => self.would(&decision, email, ledger)?,
                None => describe(&decision),
            }
        } else {
            // Every finding is an event, ours or not: the event is what came back.
            let event = BounceEvent {
                email: email.clone(),
                issue: issue.clone(),
                class: finding.reason.class().as_str().into(),
                reason: finding.reason.as_str().into(),
                status: finding.status.clone(),
                diagnostic: finding.diagnostic.clone(),
                action: String::new(),
                report: id.to_owned(),
                created_at: now(),
            };
            let cause = ledger.record_bounce(&event)?;
            let action = match &email {
                Some(email) => self.apply(&decision, email, &event, cause, ledger)?,
                None => describe(&decision),
            };
            ledger.update_bounce_action(cause, &action)?;
            action
        };
        let recipient = email.or_else(|| finding.recipient.clone());
        Ok(outcome(item, finding, recipient, issue, action))
    }

    /// What a dry run says a real run would do.
    fn would(&self, decision: &Decision, email: &str, ledger: &Ledger) -> Result<String> {
        Ok(match decision {
            Decision::Suppress { source } => format!("would suppress ({source})"),
            Decision::Count => {
                // This report's issue counts too, as it would once recorded.
                let run = ledger.soft_bounce_run(email)? + 1;
                let limit = self.config.bounces.soft_limit;
                if run >= limit {
                    format!("would suppress (soft bounces on {run} issues in a row)")
                } else {
                    format!("would count ({run} of {limit} soft bounces in a row)")
                }
            }
            other => describe(other),
        })
    }

    /// Does what `decision` asks, now that its event has an id the suppression can name.
    fn apply(
        &self,
        decision: &Decision,
        email: &str,
        event: &BounceEvent,
        cause: i64,
        ledger: &mut Ledger,
    ) -> Result<String> {
        let status = event.status.as_deref().unwrap_or("no code");
        let why = format!("{} {} ({status}): {}", event.class, event.reason, event.diagnostic);
        Ok(match decision {
            Decision::Suppress { source } => {
                ledger.suppress_for(email, &why, source, event.issue.as_deref(), cause)?;
                format!("suppressed ({source})")
            }
            Decision::Count => {
                let run = ledger.soft_bounce_run(email)?;
                let limit = self.config.bounces.soft_limit;
                if run >= limit {
                    let why = format!("{why}; soft bounces on {run} issues in a row");
                    ledger.suppress_for(email, &why, "soft-limit", event.issue.as_deref(), cause)?;
                    format!("suppressed (soft bounces on {run} issues in a row)")
                } else {
                    format!("counted ({run} of {limit} soft bounces in a row)")
                }
            }
            other => describe(other),
        })
    }

    /// The address we sent to and the issue, if the report is about a message of ours.
    fn recipient_of_ours(
        &self,
        report: &Report,
        finding: &Finding,
        ledger: &Ledger,
    ) -> Result<Option<(String, Option<String>)>> {
        // VERP: the address the report came back to names both, whatever the report says.
        if let (Some(verp), Some(template)) = (&self.verp, &self.config.bounces.return_path) {
            for to in &report.delivered_to {
                if let Some((issue, hash)) = verp::token_in(template, to).and_then(|t| verp.verify(t))
                    && let Some(email) = ledger.delivery_by_hash(&issue, &hash)?
                {
                    return Ok(Some((email, Some(issue))));
                }
            }
        }
        if let Some(list_id) = &report.returned.list_id
            && !list_id.contains(list_id_value(&self.config.list_id))
        {
            // Another list's message (a mailing list on the same host): not ours.
            return Ok(None);
        }
        // The returned message is one message: it names the recipient of a one-recipient report.
        if report.findings.len() == 1
            && let Some(message_id) = &report.returned.message_id
            && let Some((issue, email)) = ledger.delivery_by_message_id(message_id)?
        {
            return Ok(Some((email, Some(issue))));
        }
        for candidate in [&finding.original_recipient, &finding.recipient].into_iter().flatten() {
            if let Some(issue) = ledger.latest_issue_for(candidate)? {
                return Ok(Some((candidate.clone(), Some(issue))));
            }
        }
        Ok(None)
    }

    /// A reader's mail to the List-Unsubscribe mailto: address asking to leave: its sender.
    fn unsubscribe_request(&self, report: &Report) -> Option<String> {
        let mailto = self.config.unsubscribe.mailto.to_lowercase();
        let to_us = report.delivered_to.contains(&mailto);
        let asks = report.subject.trim().to_lowercase().starts_with("unsubscribe");
        (to_us && asks).then(|| report.from.clone()).flatten()
    }
}

/// A report is known by its Message-ID, or by its bytes when it has none.
fn report_id(report: &Report, raw: &[u8]) -> String {
    match &report.message_id {
        Some(id) => id.clone(),
        None => format!("sha256:{:x}", Sha256::digest(raw)),
    }
}

/// The action of a decision that writes nothing.
fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Nothing(why) => (*why).to_owned(),
        Decision::AlreadySuppressed => "none: already suppressed".to_owned(),
        Decision::Suppress { source } => format!("suppress ({source})"),
        Decision::Count => "count".to_owned(),
    }
}

fn outcome(
    item: &Item,
    finding: &Finding,
    recipient: Option<String>,
    issue: Option<String>,
    action: String,
) -> Outcome {
    Outcome {
        file: item.id.clone(),
        recipient,
        class: finding.reason.class(),
        reason: finding.reason,
        status: finding.status.clone(),
        issue,
        action,
    }
}
