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
use crate::ledger::{BounceEvent, Ledger};
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

/// What to do about a recipient of ours.
enum Act {
    Suppress { source: &'static str },
    Count,
    Nothing(&'static str),
}

impl Handler<'_> {
    /// Reads `item` and acts on it. With `dry_run` the ledger is only read.
    pub fn handle(&self, item: &Item, ledger: Option<&mut Ledger>) -> Result<Vec<Outcome>> {
        let report = read(&item.raw);
        let id = report_id(&report, &item.raw);
        let Some(ledger) = ledger else {
            return Ok(self.unmapped(item, &report));
        };
        if ledger.is_report_handled(&id)? {
            let mut outcomes = self.unmapped(item, &report);
            for o in &mut outcomes {
                o.action = "none: handled by an earlier run".into();
            }
            return Ok(outcomes);
        }
        let mut outcomes = Vec::new();
        if let Some(from) = self.unsubscribe_request(&report) {
            let action = if self.dry_run {
                "would suppress (mailto unsubscribe)".to_owned()
            } else if ledger.suppress_from(&from, "unsubscribe request by mail", "mailto", None)? {
                "suppressed (mailto unsubscribe)".to_owned()
            } else {
                "none: already suppressed".to_owned()
            };
            outcomes.push(Outcome {
                file: item.id.clone(),
                recipient: Some(from),
                class: Class::Ignore,
                reason: Reason::AutoReply,
                status: None,
                issue: None,
                action,
            });
        } else {
            for finding in &report.findings {
                outcomes.push(self.act(item, &report, finding, &id, ledger)?);
            }
        }
        if !self.dry_run {
            ledger.record_report(&id)?;
            if let Some(cursor) = &item.cursor {
                ledger.set_cursor(&self.mailbox, cursor)?;
            }
        }
        Ok(outcomes)
    }

    /// Outcomes without a ledger to map them: what the report says, nothing done.
    fn unmapped(&self, item: &Item, report: &Report) -> Vec<Outcome> {
        report
            .findings
            .iter()
            .map(|f| Outcome {
                file: item.id.clone(),
                recipient: f.recipient.clone(),
                class: f.reason.class(),
                reason: f.reason,
                status: f.status.clone(),
                issue: None,
                action: "none: no ledger".into(),
            })
            .collect()
    }

    fn act(&self, item: &Item, report: &Report, finding: &Finding, id: &str, ledger: &mut Ledger) -> Result<Outcome> {
        let mapped = self.recipient_of_ours(report, finding, ledger)?;
        let class = finding.reason.class();
        let act = match (&mapped, class) {
            (None, _) => Act::Nothing("none: not a recipient of ours"),
            (Some(_), Class::Ignore) => Act::Nothing("none: nothing to act on"),
            (Some(_), Class::Soft) if finding.reason.is_sender_block() => {
                Act::Nothing("none: a block of our sending, not of the reader (see status)")
            }
            (Some(_), Class::Soft) => Act::Count,
            (Some(_), Class::Hard) => Act::Suppress { source: "bounce" },
            (Some(_), Class::Complaint) => Act::Suppress { source: "complaint" },
        };
        let (email, issue) = match &mapped {
            Some((email, issue)) => (Some(email.clone()), issue.clone()),
            None => (finding.recipient.clone(), None),
        };
        let mut event = BounceEvent {
            email: mapped.as_ref().map(|(e, _)| e.clone()),
            issue: issue.clone(),
            class: class.as_str().into(),
            reason: finding.reason.as_str().into(),
            status: finding.status.clone(),
            diagnostic: finding.diagnostic.clone(),
            action: String::new(),
            report: id.to_owned(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let action = match (act, &email) {
            (Act::Nothing(why), _) => why.to_owned(),
            (_, None) => "none: not a recipient of ours".to_owned(),
            (Act::Suppress { source }, Some(email)) => {
                if ledger.is_suppressed(email)? {
                    "none: already suppressed".to_owned()
                } else if self.dry_run {
                    format!("would suppress ({source})")
                } else {
                    format!("suppressed ({source})")
                }
            }
            (Act::Count, Some(email)) => {
                // The run counts this report's issue too (recorded below, or imagined in a dry run).
                let run = ledger.soft_bounce_run(email)? + u32::from(self.dry_run);
                let limit = self.config.bounces.soft_limit;
                match (run >= limit, self.dry_run, ledger.is_suppressed(email)?) {
                    (_, _, true) => "none: already suppressed".to_owned(),
                    (true, true, _) => format!("would suppress (soft bounces on {run} issues in a row)"),
                    (false, true, _) => format!("would count ({run} of {limit} soft bounces in a row)"),
                    // Decided after the event is recorded, below.
                    (_, false, _) => String::new(),
                }
            }
        };
        event.action = action;
        if !self.dry_run {
            let cause = ledger.record_bounce(&event)?;
            if let Some(email) = &email {
                event.action = self.settle(ledger, &event, email, cause)?;
            }
        }
        Ok(Outcome {
            file: item.id.clone(),
            recipient: email,
            class,
            reason: finding.reason,
            status: finding.status.clone(),
            issue,
            action: event.action,
        })
    }

    /// Makes the suppression an action names, now that its event has an id.
    fn settle(&self, ledger: &mut Ledger, event: &BounceEvent, email: &str, cause: i64) -> Result<String> {
        let status = event.status.as_deref().unwrap_or("no code");
        let why = format!(
            "{} {} ({status}): {}",
            event.class,
            event.reason,
            short(&event.diagnostic)
        );
        let action = if event.action.starts_with("suppressed (") {
            let source = if event.class == "complaint" {
                "complaint"
            } else {
                "bounce"
            };
            ledger.suppress_for(email, &why, source, event.issue.as_deref(), cause)?;
            event.action.clone()
        } else if event.action.is_empty() {
            let run = ledger.soft_bounce_run(email)?;
            let limit = self.config.bounces.soft_limit;
            if run >= limit {
                ledger.suppress_for(
                    email,
                    &format!("{why}; soft bounces on {run} issues in a row"),
                    "soft-limit",
                    event.issue.as_deref(),
                    cause,
                )?;
                format!("suppressed (soft bounces on {run} issues in a row)")
            } else {
                format!("counted ({run} of {limit} soft bounces in a row)")
            }
        } else {
            return Ok(event.action.clone());
        };
        ledger.update_bounce_action(cause, &action)?;
        Ok(action)
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
        if let Some(message_id) = &report.returned.message_id
            && let Some((issue, email)) = ledger.delivery_by_message_id(message_id)?
            && report.findings.len() == 1
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

fn short(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
