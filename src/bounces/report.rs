//! One message from the bounce mailbox read into what it reports: which recipients, why, and
//! which of our messages it returns. Never fails: a message nothing can be read from reports
//! nothing.

use std::sync::LazyLock;

use mail_parser::{Message, MessageParser, MimeHeaders};
use regex::Regex;

use super::classify::{Evidence, Reason, reason};
use super::fields::{self, Group};
use super::finding::{Finding, one_line};
use super::text;

/// The headers of the message a report returns (ours, if it is ours).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Returned {
    pub message_id: Option<String>,
    pub list_id: Option<String>,
    pub to: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// The report's own Message-ID.
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: String,
    /// Where it was delivered (Delivered-To, X-Original-To, To): the VERP address, if any.
    pub delivered_to: Vec<String>,
    pub findings: Vec<Finding>,
    pub returned: Returned,
}

/// The parts of a message that matter here, found in one walk.
#[derive(Default)]
struct Parts<'a> {
    delivery_status: Option<String>,
    feedback: Option<String>,
    prose: String,
    returned: Option<Returned>,
    /// A report attached whole to another (a bounce forwarded by a gateway).
    nested_report: Option<&'a [u8]>,
}

pub fn read(raw: &[u8]) -> Report {
    read_nested(raw, 0)
}

fn read_nested(raw: &[u8], depth: u8) -> Report {
    // A message saved from an mbox may still start with its "From " line.
    let raw = match raw.strip_prefix(b"From ") {
        Some(rest) => rest.iter().position(|&b| b == b'\n').map_or(raw, |i| &rest[i + 1..]),
        None => raw,
    };
    let Some(message) = MessageParser::default().parse(raw) else {
        return Report::default();
    };
    let mut report = Report {
        message_id: message.message_id().map(|id| format!("<{id}>")),
        from: message
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .and_then(fields::clean_address),
        subject: message.subject().unwrap_or_default().to_owned(),
        delivered_to: delivered_to(&message),
        ..Report::default()
    };
    let parts = parts(&message);
    // The recipients' fields; or fields of a report pasted into the text (a broken multipart,
    // an old Sendmail).
    let groups = match parts.delivery_status.as_deref() {
        Some(dsn) => recipient_groups(dsn),
        None if parts.prose.contains("inal-Recipient:") => recipient_groups(&parts.prose),
        None => Vec::new(),
    };
    let (prose, inline_copy) = text::split_returned(&parts.prose);
    report.returned = parts.returned.unwrap_or_else(|| returned_inline(inline_copy));
    report.findings = if let Some(feedback) = &parts.feedback {
        complaints(feedback, &report.returned)
    } else if is_complaint_without_report(&report) {
        complaint_findings(Reason::Complaint, "complaint".into(), report.returned.to.clone())
    } else if !groups.is_empty() {
        delivery_status(groups, prose)
    } else if let Some(nested) = parts.nested_report.filter(|_| depth < 2) {
        let inner = read_nested(nested, depth + 1);
        report.returned = inner.returned;
        inner.findings
    } else if let Some(findings) = super::ses::notification(prose) {
        findings
    } else if is_bounce(&message, &report) {
        let mut findings = prose_failures(&message, &report, prose);
        if findings.is_empty() {
            // A bounce that names no one (an empty report, prose in a language we do not
            // read): the returned message says whom it was for, and nothing says why.
            findings = report
                .returned
                .to
                .iter()
                .filter(|to| !report.delivered_to.contains(to))
                .map(|to| Finding {
                    recipient: Some(to.clone()),
                    original_recipient: None,
                    reason: Reason::Other,
                    status: None,
                    diagnostic: one_line(prose),
                })
                .collect();
        }
        findings
    } else if let Some(inner) = text::forwarded(prose).filter(|_| depth < 2) {
        // A bounce a person forwarded (to the bounce mailbox, say): the quoted report.
        let inner = read_nested(inner.as_bytes(), depth + 1);
        report.returned = inner.returned;
        inner.findings
    } else if is_auto_reply(&message) {
        vec![Finding {
            recipient: report.from.clone(),
            original_recipient: None,
            reason: Reason::AutoReply,
            status: None,
            diagnostic: String::new(),
        }]
    } else {
        Vec::new()
    };
    report
}

fn parts<'a>(message: &'a Message) -> Parts<'a> {
    let mut parts = Parts::default();
    for part in &message.parts {
        let (ctype, subtype) = part
            .content_type()
            .map(|c| {
                (
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or_default().to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        let contents = || String::from_utf8_lossy(part.contents()).into_owned();
        match (ctype.as_str(), subtype.as_str()) {
            // A report may hold several (a digest of reports): their groups are read together.
            ("message", "delivery-status" | "global-delivery-status") => {
                let all = parts.delivery_status.get_or_insert_with(String::new);
                all.push_str(&contents());
                all.push_str("\n\n");
            }
            ("message", "feedback-report") => {
                parts.feedback.get_or_insert_with(contents);
            }
            ("message", "rfc822" | "global") => {
                if let (Some(nested), None) = (part.message(), &parts.returned) {
                    let is_report = nested
                        .content_type()
                        .is_some_and(|c| c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report")));
                    if is_report {
                        parts.nested_report = Some(nested.raw_message());
                    } else {
                        parts.returned = Some(returned(nested));
                    }
                }
            }
            ("text", "rfc822-headers") => {
                if parts.returned.is_none()
                    && let Some(headers) = MessageParser::default().parse_headers(part.contents())
                {
                    parts.returned = Some(returned(&headers));
                }
            }
            // A multipart whose boundary is not in its body (its `boundary=` on a line of its
            // own): the whole body is the prose, without the parts' separators and headers (a
            // real multipart has no contents of its own).
            ("multipart", _) if !part.contents().is_empty() => {
                let body = String::from_utf8_lossy(part.contents()).replace("\r\n", "\n");
                parts.prose.push_str(&UNSPLIT_PART_HEADERS.replace_all(&body, ""));
                parts.prose.push('\n');
            }
            ("text", "plain") if !part.contents().is_empty() => {
                parts
                    .prose
                    .push_str(&String::from_utf8_lossy(part.contents()).replace("\r\n", "\n"));
                parts.prose.push('\n');
            }
            _ => {}
        }
    }
    parts
}

/// The separator lines and MIME headers of parts mail-parser could not split.
static UNSPLIT_PART_HEADERS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?mi)^(?:--\S+|content-[a-z-]+:.*(?:\n[ \t].*)*)\n").expect("the pattern is valid"));

fn returned(message: &Message) -> Returned {
    Returned {
        message_id: message.message_id().map(|id| format!("<{id}>")),
        list_id: message.header_raw("List-Id").map(|v| v.trim().to_owned()),
        to: message
            .to()
            .map(|a| {
                a.iter()
                    .filter_map(|a| a.address())
                    .filter_map(fields::clean_address)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

static INLINE_HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?mi)^(message-id|list-id|to):[ \t]*(.+)$").expect("the pattern is valid"));

/// The returned message's headers when the bounce quotes them in its text.
fn returned_inline(copy: &str) -> Returned {
    let mut returned = Returned::default();
    for caps in INLINE_HEADER.captures_iter(copy) {
        let value = caps[2].trim();
        match caps[1].to_ascii_lowercase().as_str() {
            "message-id" => {
                returned.message_id.get_or_insert_with(|| value.to_owned());
            }
            "list-id" => {
                returned.list_id.get_or_insert_with(|| value.to_owned());
            }
            _ => returned.to.extend(value.split(',').filter_map(fields::clean_address)),
        }
    }
    returned
}

fn delivered_to(message: &Message) -> Vec<String> {
    let mut to = Vec::new();
    for (name, value) in message.headers_raw() {
        if ["delivered-to", "x-original-to", "envelope-to", "to"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            to.extend(value.split(',').filter_map(fields::clean_address));
        }
    }
    to.dedup();
    to
}

/// An ARF report: each reported recipient complained (abuse, fraud); other feedback types
/// (not-spam, virus, auth-failure) ask nothing of us.
fn complaints(feedback: &str, returned: &Returned) -> Vec<Finding> {
    let groups = fields::groups(feedback);
    let Some(group) = groups.first() else {
        return Vec::new();
    };
    let kind = group.get("feedback-type").unwrap_or_default().to_ascii_lowercase();
    // opt-out (RFC 6650): the reader asked their provider to take them off the list.
    let reason = if matches!(kind.as_str(), "abuse" | "fraud" | "opt-out") {
        Reason::Complaint
    } else {
        Reason::AutoReply
    };
    // Original-Rcpt-To is RFC 5965's; the drafts' Removal-Recipient is not trusted to name
    // the reader (it is the reporting user's own idea of their address).
    let mut recipients: Vec<String> = group.all("original-rcpt-to").filter_map(fields::address).collect();
    if recipients.is_empty() {
        recipients = returned.to.clone();
    }
    complaint_findings(reason, format!("feedback-type: {kind}"), recipients)
}

fn complaint_findings(reason: Reason, diagnostic: String, mut recipients: Vec<String>) -> Vec<Finding> {
    recipients.dedup();
    let finding = |recipient| Finding {
        recipient,
        original_recipient: None,
        reason,
        status: None,
        diagnostic: diagnostic.clone(),
    };
    if recipients.is_empty() {
        return vec![finding(None)];
    }
    recipients.into_iter().map(|r| finding(Some(r))).collect()
}

/// Feedback loops that predate ARF (Microsoft's JMRP) send the message back under a
/// subject that says what it is, with no machine-readable part.
fn is_complaint_without_report(report: &Report) -> bool {
    let subject = report.subject.to_ascii_lowercase();
    (subject.contains("complaint") || subject.contains("abuse report")) && report.returned != Returned::default()
}

fn recipient_groups(dsn: &str) -> Vec<Group> {
    fields::groups(dsn).into_iter().filter(recipient_of).collect()
}
fn recipient_of(group: &Group) -> bool {
    group
        .get("final-recipient")
        .or(group.get("original-recipient"))
        .and_then(fields::address)
        .is_some()
}

/// An RFC 3464 report: one finding per recipient group.
fn delivery_status(groups: Vec<Group>, prose: &str) -> Vec<Finding> {
    let recipients: Vec<String> = groups
        .iter()
        .filter_map(|g| {
            g.get("final-recipient")
                .or(g.get("original-recipient"))
                .and_then(fields::address)
        })
        .collect();
    let about_one = recipients.len() == 1;
    // The prose's paragraph per recipient, read once and only if a field says too little.
    let mut paragraphs: Option<Vec<text::Failure>> = None;
    let mut findings = Vec::new();
    for group in &groups {
        let final_recipient = group.get("final-recipient").and_then(fields::address);
        let original = group.get("original-recipient").and_then(fields::address);
        let recipient = final_recipient.clone().or(original.clone());
        let action = group.get("action").unwrap_or_default().to_ascii_lowercase();
        let status = group
            .get("status")
            .map(|s| s.split_whitespace().next().unwrap_or_default().to_owned());
        let code = group.get("diagnostic-code").unwrap_or_default();
        let mut diagnostic = fields::diagnostic(code).to_owned();
        if diagnostic.len() < 8 {
            // The prose about this recipient says more than an empty or bare-code field.
            let paragraphs = paragraphs.get_or_insert_with(|| text::failures(prose, &recipients, &[]));
            if let Some(f) = recipient
                .as_ref()
                .and_then(|r| paragraphs.iter().find(|f| f.recipient == *r))
            {
                diagnostic = f.text.clone();
            }
        }
        let reason = match action.as_str() {
            "delivered" | "deliverable" | "relayed" | "expanded" => Reason::Delivered,
            // A local program's failure (procmail, a full disk) says nothing of the address.
            _ if code.to_ascii_lowercase().starts_with("x-unix") => Reason::Other,
            _ => reason(Evidence {
                status: status.as_deref(),
                diagnostic: &diagnostic,
                context: if about_one { prose } else { "" },
                delayed: action.starts_with("delay"),
            }),
        };
        let reason = about_someone_else(reason, recipient.as_deref(), original.as_deref(), &diagnostic, prose);
        findings.push(Finding {
            original_recipient: original.filter(|o| Some(o) != final_recipient.as_ref()),
            recipient,
            reason,
            status: status.filter(|s| !s.is_empty()),
            diagnostic: one_line(&diagnostic),
        });
    }
    findings
}

/// Whether a hard failure is really the recipient's. A server that names another address
/// (a forwarding target) failed for that one, unless the report says the recipient is an
/// alias that expanded to it; and KDDI's au phones (ezweb.ne.jp, au.com)
/// answer "550 : User unknown", naming no address, when the reader's own filter refuses the
/// sender ("550 <address>: User unknown" is their missing mailbox).
fn about_someone_else(
    reason: Reason,
    recipient: Option<&str>,
    original: Option<&str>,
    diagnostic: &str,
    prose: &str,
) -> Reason {
    if reason.class() != super::Class::Hard {
        return reason;
    }
    let named: Vec<String> = text::addresses(diagnostic);
    let expanded = recipient.is_some_and(|r| {
        prose
            .to_lowercase()
            .lines()
            .any(|l| l.contains("expanded from") && l.contains(r))
    });
    let names_recipient = named
        .iter()
        .any(|a| Some(a.as_str()) == recipient || Some(a.as_str()) == original);
    if !named.is_empty() && !expanded && !names_recipient {
        return Reason::Other;
    }
    let domain = recipient
        .and_then(|r| r.rsplit_once('@'))
        .map(|(_, d)| d)
        .unwrap_or_default();
    let kddi = ["ezweb.ne.jp", "au.com"]
        .iter()
        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")));
    if kddi && reason == Reason::UserUnknown && named.is_empty() {
        return Reason::Filtered;
    }
    reason
}

static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)undeliver|undelivered|delivery (status|fail|failure|notification|problem|report)|failure notice|returned mail|mail delivery|could not (be )?deliver|non.?deliver|not delivered|delivery has failed|nondeliverable|rejected|bounce|mail system error|warning: message|message delayed|delayed mail|postmaster notify|error|配信|不達|エラー|Unzustellbar|Non remis|No se puede entregar").expect("the pattern is valid")
});

/// The local parts mail systems send bounces from.
static SYSTEM_SENDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)mailer.?daemon|mail.?daemon|post.?master|mail.?delivery|delivery.?(system|subsystem)|^mdaemon")
        .expect("the pattern is valid")
});

/// A bounce that is not an RFC 3464 report: sent by a mail system about a failure, or sent
/// with the null envelope sender notifications use (RFC 5321 4.5.5) and returning a message
/// (a vacation reply quoting ours is sent like that too, and is not one).
fn is_bounce(message: &Message, report: &Report) -> bool {
    let from_system = report
        .from
        .as_deref()
        .is_none_or(|f| SYSTEM_SENDER.is_match(f.split('@').next().unwrap_or_default()));
    let null_sender = message.header_raw("Return-Path").is_some_and(|v| v.trim() == "<>");
    message.header_raw("X-Failed-Recipients").is_some()
        || (from_system && (report.from.is_some() || BOUNCE_SUBJECT.is_match(&report.subject)))
        || (null_sender && report.returned != Returned::default() && !is_auto_reply(message))
}

fn prose_failures(message: &Message, report: &Report, prose: &str) -> Vec<Finding> {
    let listed: Vec<String> = message
        .header_values("X-Failed-Recipients")
        .filter_map(|v| v.as_text())
        .flat_map(|v| v.split(','))
        .filter_map(fields::clean_address)
        .collect();
    let mut not_recipients = report.delivered_to.clone();
    not_recipients.extend(report.from.clone());
    let delayed = is_delay(&report.subject, prose);
    text::failures(prose, &listed, &not_recipients)
        .into_iter()
        .map(|f| Finding {
            reason: reason(Evidence {
                status: f.status.as_deref(),
                diagnostic: &f.text,
                context: "",
                delayed,
            }),
            recipient: Some(f.recipient),
            original_recipient: None,
            status: f.status,
            diagnostic: one_line(&f.text),
        })
        .collect()
}

fn is_delay(subject: &str, prose: &str) -> bool {
    let s = subject.to_ascii_lowercase();
    s.contains("delay")
        || s.contains("warning")
        || prose.contains("will continue trying")
        || prose.contains("not yet been delivered")
}

static AUTO_REPLY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|vacation|away from|abwesenheit|absence|r[ée]ponse automatique|自動応答)").expect("the pattern is valid")
});

/// RFC 3834's Auto-Submitted, the headers vacation programs add, or their subjects.
fn is_auto_reply(message: &Message) -> bool {
    let header = |name: &str| message.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    header("Auto-Submitted").is_some_and(|v| v.starts_with("auto-replied") || v.starts_with("auto-generated"))
        || header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
        || header("Precedence").is_some_and(|v| v == "auto_reply")
        || AUTO_REPLY_SUBJECT.is_match(message.subject().unwrap_or_default())
}
