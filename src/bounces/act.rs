//! What a report does: which of our recipients and issues it is about, and whether it
//! suppresses them. A report's events, its suppressions, the mailbox's cursor and the record
//! that it was handled go into the ledger's open transaction together; the caller commits a
//! batch before letting its messages go, so a crash loses the whole batch or none of it.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::classify::{Class, Reason};
use super::finding::Finding;
use super::guard::{self, HeldGroup};
use super::report::{Report, read};
use super::verp::{self, Verp};
use crate::config::Config;
use crate::ledger::{BounceEvent, Ledger, now};
use crate::mailbox::Item;
use crate::personalize::list_id_value;
use crate::readers::{self, Kind, Standing};
use crate::unsubscribe::{Claim, Secrets};

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
    /// The receiver's words.
    pub diagnostic: String,
    /// What was done, or with --dry-run what would be.
    pub action: String,
}

/// What acting needs besides the ledger.
pub struct Handler<'a> {
    pub config: &'a Config,
    /// Reads VERP tokens (`bounces.return_path` with the unsubscribe secret).
    pub verp: Option<Verp>,
    /// Check the token a mailto unsubscribe request must carry.
    pub secrets: Option<Secrets>,
    pub dry_run: bool,
    /// The mailbox's name, which keys its cursor in the ledger.
    pub mailbox: String,
}

/// What a finding asks of the ledger, decided before anything is written.
enum Decision {
    /// Nothing to do, and why.
    Nothing(&'static str),
    /// A hard bounce or a complaint: recorded in the reader's history, which decides.
    Suppress(Kind),
    /// A mailto request to leave that carries the reader's token.
    Unsubscribe,
    /// A request to leave without a valid token: it changes nothing; its From is reported.
    Unverified(String),
    /// A soft bounce: counted; it suppresses once `soft_limit` issues in a row have one.
    Count,
}

/// Where the token of a mailto request is looked for: the subject, then the start of the
/// message (a client that drops the subject's query may quote it in the body).
const TOKEN_SEARCH_BYTES: usize = 64 * 1024;

impl Handler<'_> {
    /// Reads `item` and acts on it. With `dry_run` the ledger is only read.
    pub fn handle(&self, item: &Item, ledger: Option<&mut Ledger>) -> Result<Vec<Outcome>> {
        let mut report = read(&item.raw);
        // A request to leave names its reader, and the issue whose link it used, by its token.
        let mut token_issue = None;
        if self.is_unsubscribe_request(&report) {
            let from = report.from.clone().unwrap_or_else(|| "no From".into());
            let (recipient, diagnostic) = match self.token_in(&report, &item.raw) {
                Some(claim) => {
                    token_issue = claim.issue;
                    (
                        Some(claim.email),
                        format!("mail to the List-Unsubscribe address with a valid token, from {from}"),
                    )
                }
                None => (
                    None,
                    format!("unverified: mail to the List-Unsubscribe address without a valid token, from {from}"),
                ),
            };
            report.findings = vec![Finding {
                recipient,
                original_recipient: None,
                reason: Reason::UnsubscribeRequest,
                status: None,
                diagnostic,
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
            outcomes.push(self.act(item, &report, finding, token_issue.as_deref(), &id, ledger)?);
        }
        if !self.dry_run {
            ledger.record_report(&id)?;
            if let Some(cursor) = &item.cursor {
                ledger.set_cursor(&self.mailbox, cursor)?;
            }
        }
        Ok(outcomes)
    }

    fn act(
        &self,
        item: &Item,
        report: &Report,
        finding: &Finding,
        token_issue: Option<&str>,
        id: &str,
        ledger: &mut Ledger,
    ) -> Result<Outcome> {
        let unsubscribe = finding.reason == Reason::UnsubscribeRequest;
        // A request to leave names its reader by its token, on our list or not.
        let mapped = match (unsubscribe, &finding.recipient) {
            (true, Some(email)) => Some((email.clone(), token_issue.map(str::to_owned))),
            (true, None) => None,
            (false, _) => self.recipient_of_ours(report, finding, ledger)?,
        };
        let issue = mapped.as_ref().and_then(|(_, issue)| issue.clone());
        let email = mapped.map(|(email, _)| email);
        let decision = match (&email, finding.reason.class()) {
            (None, _) if unsubscribe => Decision::Unverified(report.from.clone().unwrap_or_else(|| "no From".into())),
            (None, _) => Decision::Nothing("none: not a recipient of ours"),
            (Some(_), _) if unsubscribe => Decision::Unsubscribe,
            (Some(_), Class::Ignore) => Decision::Nothing("none: nothing to act on"),
            (Some(_), Class::Soft) if finding.reason.is_sender_block() => {
                Decision::Nothing("none: a block of our sending, not of the reader (see status)")
            }
            (Some(_), _) if finding.reason == Reason::Delayed => {
                Decision::Nothing("none: a delay warning, the relay is still trying")
            }
            (Some(_), Class::Soft) => Decision::Count,
            (Some(_), Class::Hard) => Decision::Suppress(Kind::HardBounce),
            (Some(_), Class::Complaint) => Decision::Suppress(Kind::Complaint),
        };
        let action = if self.dry_run {
            match &email {
                Some(email) => self.would(&decision, email, ledger)?,
                None => label_nothing(&decision),
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
                None => label_nothing(&decision),
            };
            ledger.update_bounce_action(cause, &action)?;
            action
        };
        let recipient = email.or_else(|| finding.recipient.clone());
        Ok(outcome(item, finding, recipient, issue, action))
    }

    /// What a dry run says a real run would do.
    fn would(&self, decision: &Decision, email: &str, ledger: &Ledger) -> Result<String> {
        let already = match readers::standing(ledger, email)? {
            Standing::Mailable => None,
            Standing::Suppressed { kind, .. } => Some(kind.as_str()),
            Standing::Forgotten { .. } => Some("forgotten"),
        };
        Ok(match (decision, already) {
            (Decision::Nothing(_) | Decision::Unverified(_), _) => label_nothing(decision),
            (Decision::Count, _) => {
                // This report's issue counts too, as it would once recorded.
                let run = ledger.soft_bounce_run(email)? + 1;
                let limit = self.config.bounces.soft_limit;
                match (run >= limit, already) {
                    (true, None) => format!("would suppress (soft bounces on {run} issues in a row)"),
                    (true, Some(kind)) => format!("would record; already suppressed ({kind})"),
                    (false, _) => format!("would count ({run} of {limit} soft bounces in a row)"),
                }
            }
            (other, None) => format!("would suppress ({})", label(other)),
            (_, Some(kind)) => format!("would record; already suppressed ({kind})"),
        })
    }

    /// Does what `decision` asks, now that its event has an id the reader's history can name.
    fn apply(
        &self,
        decision: &Decision,
        email: &str,
        event: &BounceEvent,
        cause: i64,
        ledger: &mut Ledger,
    ) -> Result<String> {
        let evidence = json!({
            "report": event.report,
            "bounce_event": cause,
            "status": event.status,
            "diagnostic": event.diagnostic,
        });
        let issue = event.issue.as_deref();
        let defer = |ledger: &mut Ledger, kind: Kind, source: &str, evidence: serde_json::Value| {
            guard::defer(
                ledger,
                &guard::Deferred {
                    email,
                    issue,
                    kind,
                    source,
                    diagnostic: &event.diagnostic,
                    evidence,
                },
            )
            .map(|()| PENDING.to_owned())
        };
        let change = match decision {
            Decision::Nothing(_) | Decision::Unverified(_) => return Ok(label_nothing(decision)),
            // A suppression for good waits for the end of the run and the mass guard.
            Decision::Suppress(Kind::HardBounce) => return defer(ledger, Kind::HardBounce, "bounce", evidence),
            Decision::Suppress(kind) => readers::record(ledger, email, *kind, label(decision), issue, evidence)?,
            Decision::Unsubscribe => readers::unsubscribe(ledger, email, label(decision), issue, evidence)?,
            Decision::Count => {
                let run = ledger.soft_bounce_run(email)?;
                let limit = self.config.bounces.soft_limit;
                if run < limit {
                    return Ok(format!("counted ({run} of {limit} soft bounces in a row)"));
                }
                let mut evidence = evidence;
                evidence["soft_run"] = json!(run);
                return defer(ledger, Kind::SoftLimit, "soft-limit", evidence);
            }
        };
        Ok(change.action(label(decision)))
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

    /// Mail to the List-Unsubscribe mailto: address asking to leave.
    fn is_unsubscribe_request(&self, report: &Report) -> bool {
        let mailto = self.config.unsubscribe.mailto.to_lowercase();
        report.delivered_to.contains(&mailto) && report.subject.trim().to_lowercase().starts_with("unsubscribe")
    }

    /// The reader a request's token names: every token-shaped word of the subject, then of the
    /// message's start, is tried; a From proves nothing, anyone can write it.
    fn token_in(&self, report: &Report, raw: &[u8]) -> Option<Claim> {
        let secrets = self.secrets.as_ref()?;
        let start = String::from_utf8_lossy(&raw[..raw.len().min(TOKEN_SEARCH_BYTES)]);
        [report.subject.as_str(), &start]
            .into_iter()
            .flat_map(|text| text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')))
            .filter(|word| word.len() >= MIN_TOKEN_LEN)
            .find_map(|word| secrets.verify(word))
    }
}

/// The action of a suppression that waits for the end of the run; `bounces` replaces it with
/// what settling did.
pub const PENDING: &str = "pending: decided at the end of the run";

/// The shortest token: a one-letter address and issue still make 50 base64 characters.
const MIN_TOKEN_LEN: usize = 40;

/// The source recorded for a decision, and the word of its action.
fn label(decision: &Decision) -> &'static str {
    match decision {
        Decision::Suppress(Kind::Complaint) => "complaint",
        Decision::Suppress(_) => "bounce",
        Decision::Unsubscribe => "mailto",
        Decision::Count => "soft-limit",
        Decision::Nothing(_) | Decision::Unverified(_) => "none",
    }
}

/// Settles the run's waiting suppressions through the mass guard; each pending action becomes
/// what was done. Returns the groups held.
pub fn settle(ledger: &mut Ledger, limit: u32, outcomes: &mut [Outcome]) -> Result<Vec<HeldGroup>> {
    let settled = guard::settle(ledger, limit)?;
    for o in outcomes.iter_mut().filter(|o| o.action == PENDING) {
        if let Some(action) = o.recipient.as_ref().and_then(|r| settled.actions.get(r)) {
            o.action.clone_from(action);
        }
    }
    Ok(settled.held)
}

/// What the guard would do with a dry run's suppressions: the groups it would hold (their
/// id is 0 when no such group is held yet).
pub fn would_hold(ledger: &Ledger, limit: u32, outcomes: &mut [Outcome]) -> Result<Vec<HeldGroup>> {
    let key = |o: &Outcome| {
        let domain = o
            .recipient
            .as_deref()
            .and_then(|r| r.rsplit_once('@'))
            .map_or("", |(_, d)| d);
        (domain.to_owned(), guard::signature(&o.diagnostic))
    };
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, o) in outcomes.iter().enumerate() {
        if o.action.starts_with("would suppress (bounce") || o.action.starts_with("would suppress (soft") {
            groups.entry(key(o)).or_default().push(i);
        }
    }
    let mut held = Vec::new();
    for ((domain, signature), members) in groups {
        let open = ledger.open_group(&domain, &signature)?;
        if open.is_none() && members.len() as u64 <= u64::from(limit) {
            continue;
        }
        for &i in &members {
            outcomes[i].action = match open {
                Some(id) => format!("would hold (joins group {id})"),
                None => format!("would hold ({} readers at {domain} with one diagnostic)", members.len()),
            };
        }
        held.push(HeldGroup {
            id: open.unwrap_or(0),
            domain,
            diagnostic: outcomes[members[0]].diagnostic.clone(),
            readers: members.len() as u64,
            state: "held".into(),
            created_at: String::new(),
            decided_at: None,
        });
    }
    Ok(held)
}

/// A report is known by its Message-ID, or by its bytes when it has none.
fn report_id(report: &Report, raw: &[u8]) -> String {
    match &report.message_id {
        Some(id) => id.clone(),
        None => format!("sha256:{:x}", Sha256::digest(raw)),
    }
}

/// The action of a finding that names no reader of ours.
fn label_nothing(decision: &Decision) -> String {
    match decision {
        Decision::Nothing(why) => (*why).to_owned(),
        Decision::Unverified(from) => {
            format!("none: unverified unsubscribe request from {from} (no valid token in it)")
        }
        _ => "none".to_owned(),
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
        diagnostic: finding.diagnostic.clone(),
        action,
    }
}
