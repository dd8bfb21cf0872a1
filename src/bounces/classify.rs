//! What a failure means for the recipient: from the enhanced status code (RFC 3463) and the
//! wording of the diagnostic, which many servers fill with a generic 5.0.0 or no code at all.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde::Serialize;

/// What to do about a recipient named in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// The mailbox or domain does not exist or takes no mail: suppress now.
    Hard,
    /// Temporary or policy trouble: count it.
    Soft,
    /// The reader reported the message as spam: suppress now.
    Complaint,
    /// An auto-reply, a delivery confirmation, or not a report at all.
    Ignore,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Hard => "hard",
            Class::Soft => "soft",
            Class::Complaint => "complaint",
            Class::Ignore => "ignore",
        }
    }
}

/// The finer reason, shown by `status --bounces`; it decides whether a soft bounce counts
/// towards `soft_limit` or is a block aimed at us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    UserUnknown,
    HostUnknown,
    HasMoved,
    NotAccept,
    /// RFC 3463's 5.2.1: the mailbox exists and takes no mail (Gmail's "account ... is
    /// disabled").
    Disabled,
    MailboxFull,
    /// Suspended or inactive in words only: often for a while (an unpaid bill).
    Suspended,
    Expired,
    /// A delay warning (RFC 3464's Action: delayed): the relay is still trying, nothing has
    /// bounced yet.
    Delayed,
    TooBig,
    /// Refused for its content by the recipient's filter.
    Filtered,
    /// Spam, policy, reputation, authentication (5.7.x): about our sending, not the reader.
    Blocked,
    Network,
    Other,
    Complaint,
    Delivered,
    AutoReply,
    /// Mail to the List-Unsubscribe mailto: address asking to leave.
    UnsubscribeRequest,
}

impl Reason {
    pub fn class(self) -> Class {
        match self {
            Reason::UserUnknown | Reason::HostUnknown | Reason::HasMoved | Reason::NotAccept | Reason::Disabled => {
                Class::Hard
            }
            Reason::Complaint => Class::Complaint,
            Reason::Delivered | Reason::AutoReply | Reason::UnsubscribeRequest => Class::Ignore,
            _ => Class::Soft,
        }
    }

    /// A refusal of us rather than of the reader: it suppresses no one.
    pub fn is_sender_block(self) -> bool {
        self == Reason::Blocked
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UserUnknown => "user-unknown",
            Reason::HostUnknown => "host-unknown",
            Reason::HasMoved => "has-moved",
            Reason::NotAccept => "not-accept",
            Reason::Disabled => "disabled",
            Reason::MailboxFull => "mailbox-full",
            Reason::Suspended => "suspended",
            Reason::Expired => "expired",
            Reason::Delayed => "delayed",
            Reason::TooBig => "too-big",
            Reason::Filtered => "filtered",
            Reason::Blocked => "blocked",
            Reason::Network => "network",
            Reason::Other => "other",
            Reason::Complaint => "complaint",
            Reason::Delivered => "delivered",
            Reason::AutoReply => "auto-reply",
            Reason::UnsubscribeRequest => "unsubscribe-request",
        }
    }
}

/// Wordings, tried in order: the first that matches decides. Word boundaries are ASCII
/// (`(?-u:\b)`): a Unicode one keeps the regex crate off its fast automaton for any text
/// with a non-ASCII character, which made classifying three times slower. Reasons whose wording is
/// specific (a full mailbox answered with 5.1.1) come before the status code is asked.
const WORDINGS: &[(Reason, &str)] = &[
    (
        Reason::MailboxFull,
        r"mailbox (is )?full|mailbox.{0,20}(over|exceed).{0,10}quota|over.?quota|quota (exceeded|exceed)|exceeded storage|insufficient (disk )?space|mailbox size limit|storage (space|limit)|not enough (disk )?(storage|space)|user has exceeded|account is full|mail ?box has exceeded|disk quota|mailfolder is full|quota limit",
    ),
    (
        Reason::TooBig,
        r"message (is )?too (big|large)|message size exceeds|size limit|exceeds the (maximum|size)|message length exceeds|too large for",
    ),
    (
        Reason::HasMoved,
        r"has moved|no forwarding address|address has changed|mailbox has moved",
    ),
    (
        Reason::UserUnknown,
        r"recipient address rejected: access denied|invalid.{0,20}user ?id",
    ),
    (
        Reason::NotAccept,
        r"does not accept (e-?)?mail|null mx|accepts no mail|not accept mail|domain does not receive|no smtp service",
    ),
    (
        Reason::Blocked,
        r"(?-u:\b)block(ed|list|listed)(?-u:\b)|blacklist|(?-u:\b)spam(?-u:\b)|spamhaus|(?-u:\b)(dnsbl|rbl|sbl|dnsrbl)s?(?-u:\b)|reputation|poor sender|(?-u:\b)polic(y|ies)(?-u:\b)|spoof|rejected (for|due to|by) content|content (rejected|filter)|(?-u:\b)dmarc(?-u:\b)|(?-u:\b)spf(?-u:\b)|(?-u:\b)dkim(?-u:\b)|reverse dns|(?-u:\b)ptr(?-u:\b)|unauthenticated|authentication (required|failed)|relay (access )?denied|relaying denied|not permitted to relay|unable to relay|virus|malware|security policy|suspicious|junk mail|access denied|not authorized|delivery not authorized|(?-u:\b)sender(?-u:\b).{0,30}(not allowed|not permitted|refused|rejected|denied|blocked|invalid|not accepted|verif)|refused by the recipient's system|rejected by (recipient|the)|client host rejected|sender is on|ip (address )?(is )?(listed|banned|blocked)|has been (temporarily )?rate limited|rate limit|too many (messages|connections|recipients|emails|mails)|connection (rate|limit)|receiving mail (at|too) |rate that prevents|temporarily deferred|greylist|try again later|message rejected|spam filter|sender domain|domain of (the )?sender|mail ?from domain|envelope sender|sender verif|return.?path|(?-u:\b)helo(?-u:\b)|(?-u:\b)ehlo(?-u:\b)",
    ),
    // The conversation broke down (an unexpected reply): nothing is known of the address.
    (Reason::Network, r"protocol error"),
    (
        Reason::Suspended,
        r"disabled|suspended|deactivated|inactive|not active|account (is )?(locked|expired|closed)|mailbox (is )?(locked|closed|disabled)|is not accepting (messages|mail)|no longer (active|in use|valid|available)|has been closed|expired account|account has been|terminated",
    ),
    (
        Reason::HostUnknown,
        r"host (or domain name )?not found|host unknown|unknown host|domain (name )?not found|no such domain|unknown domain|domain (does not|doesn't) exist|name or service not known|nxdomain|no mx|mx (record )?not found|(can ?not|could ?not|unable to) find (any )?mx|no (mx|a) or (a|mx) records?|unrouteable mail domain|bad destination system|no route to host|domain is not (valid|configured|reachable)|host not found|invalid domain|illegal host",
    ),
    (
        Reason::UserUnknown,
        r"user (is )?unknown|unknown user|no such (user|mailbox|recipient|address|account|local user|person)|user not found|mailbox not found|mailbox (does not|doesn't) exist|recipient not found|recipient unknown|unknown recipient|address unknown|unknown (mailbox|address|local part|or illegal alias)|does not exist|doesn't exist|not exist|invalid (recipient|mailbox|address|user)|recipient (address )?(is )?invalid|address rejected|user doesn't have|mailbox unavailable|no mailbox|not a valid (mailbox|recipient|user)|not our customer|is not a known user|account (does not|doesn't) exist|no account|unrouteable address|unroutable address|recipient rejected|bad destination mailbox|not listed in|undeliverable address|cannot be found|couldn't be found|could not be found|no valid recipients|addressee unknown|user doesn't exist|not found in|invalid address|unknown address|was not found|mailbox name not allowed|not registered|non-existent|nonexistent|no such",
    ),
    (
        Reason::Expired,
        r"expired|timed? ?out|time limit|too long|retry time|giving up|could not be delivered for|delivery time|been delayed|delayed|(?-u:\b)in (the )?queue|queue (life)?time",
    ),
    (
        Reason::Network,
        r"connection (refused|reset|closed|lost|timed out|dropped)|could not find a gateway|network|dns|lost connection|unreachable|no route|could not connect|couldn't connect|unable to connect",
    ),
];

/// The first wording alone, for a report's prose (long) where only it matters.
static MAILBOX_FULL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("(?i){}", WORDINGS[0].1)).expect("the wordings are valid patterns"));

static WORDING_SET: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(WORDINGS.iter().map(|(_, p)| format!("(?i){p}"))).expect("the wordings are valid patterns")
});

/// An enhanced status code anywhere in a text: `5.1.1`, `4.4.7`, `5.7.509`.
pub static STATUS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u:\b)([245])\.(\d{1,3})\.(\d{1,3})(?-u:\b)").expect("the pattern is valid"));

/// What a report says about one recipient.
#[derive(Debug, Default, Clone, Copy)]
pub struct Evidence<'a> {
    /// The enhanced status code as the report gives it.
    pub status: Option<&'a str>,
    /// The server's words about this recipient.
    pub diagnostic: &'a str,
    /// The rest of the report's prose when it is about this recipient alone.
    pub context: &'a str,
    /// A delay warning: the relay is still trying.
    pub delayed: bool,
}

static ADDRESSES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\S+@\S+").expect("the pattern is valid"));

/// An SMTP reply of permanent failure (`550`, `550-`, `#5.1.1`) in a diagnostic, or the
/// report saying in words that the failure is permanent.
static PERMANENT_REPLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|[^\d.])5[0-5]\d(?:[ -]|$)|#5\.|permanent (?:error|failure|fatal)")
        .expect("the pattern is valid")
});

/// A notice for people saying the message was not delivered (Domino's "was not delivered to",
/// Exchange's "could not be reached", qmail's "wasn't able to deliver"): final, where a delay
/// says it goes on trying. It makes words permanent only where no server reply is quoted:
/// a reply, when there is one, says for itself.
static FINAL_NOTICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)was not delivered to|(?:could|can) ?not be delivered to|wasn't able to deliver|(?:could|can) ?not be reached")
        .expect("the pattern is valid")
});
static REPLY_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|\s)[245]\d\d(?:[\s-]|$)").expect("the pattern is valid"));

/// Whether `text` says the failure is final: a permanent reply, or a notice's words where it
/// quotes no reply.
fn permanent(text: &str) -> bool {
    PERMANENT_REPLY.is_match(text) || (FINAL_NOTICE.is_match(text) && !REPLY_CODE.is_match(text))
}

/// The SMTP stage a refusal came at, as MTAs write it: Postfix's "(in reply to RCPT TO
/// command)", Exim's "after MAIL FROM:<...>", qmail's "sender was rejected", a Sendmail
/// transcript's last command before the failing reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The connection, its greeting, HELO or EHLO: our server was refused.
    Connect,
    /// MAIL FROM: our sender was refused.
    MailFrom,
    Rcpt,
    Data,
}

/// Stages named in words, tried in order.
static STAGES: LazyLock<[(Stage, Regex); 4]> = LazyLock::new(|| {
    // Reports wrap long lines anywhere ("(in reply to MAIL\n    FROM command)"): a space in
    // a pattern is any run of white space.
    let re = |p: &str| Regex::new(&format!("(?i){}", p.replace(' ', r"\s+"))).expect("the stage patterns are valid");
    [
        (
            Stage::Connect,
            re(
                r"in reply to (the )?(helo|ehlo|initial|greeting|banner)|after (helo|ehlo|initial connection|the greeting)|refused to talk to me|greeting failed|(helo|ehlo) command rejected|while (connecting|greeting)",
            ),
        ),
        (
            Stage::MailFrom,
            re(
                r"in reply to mail from|after mail from|sender was rejected|sender address rejected|sender verif(y|ication) failed|mail from command (failed|rejected)|rejected (the )?sender|smtp command\W{0,12}mail(?-u:\b)",
            ),
        ),
        (
            Stage::Rcpt,
            re(r"in reply to rcpt to|after rcpt to|rcpt to command|smtp command\W{0,12}rcpt"),
        ),
        (
            Stage::Data,
            re(
                r"in reply to (end of )?data|after (end of )?data|end of data|in reply to the data|smtp command\W{0,12}data",
            ),
        ),
    ]
});

/// The stage of the decisive failing reply in a transcript (the last permanent one, else the
/// last temporary one), or the stage the words name. A transcript may hold several servers,
/// each after "... while talking to HOST:"; a failing reply before anything was said to its
/// server refused the greeting.
pub fn stage(text: &str) -> Option<Stage> {
    let (mut last, mut said) = (None, false);
    let (mut permanent, mut temporary) = (None, None);
    for line in text.lines() {
        let line = line.trim_start();
        if line.contains("while talking to") {
            (last, said) = (None, false);
        } else if let Some(command) = line.strip_prefix(">>>") {
            said = true;
            let mut words = command.split_whitespace().map(str::to_ascii_lowercase);
            let (first, second) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
            last = match first.as_str() {
                "mail" if second.starts_with("from") => Some(Stage::MailFrom),
                "rcpt" if second.starts_with("to") => Some(Stage::Rcpt),
                "data" | "." => Some(Stage::Data),
                "helo" | "ehlo" => Some(Stage::Connect),
                _ => last,
            };
        } else if let Some(reply) = line.strip_prefix("<<<") {
            let stage = if said { last } else { Some(Stage::Connect) };
            match reply.trim_start().as_bytes().first() {
                Some(b'5') if stage.is_some() => permanent = stage,
                Some(b'4') if stage.is_some() => temporary = stage,
                _ => {}
            }
        }
    }
    permanent
        .or(temporary)
        .or_else(|| STAGES.iter().find(|(_, re)| re.is_match(text)).map(|(stage, _)| *stage))
}

/// A fault of the name service (a failed or malformed answer), not an answer that the domain
/// does not exist: nothing is known of the address.
static DNS_FAULT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)name ?server|servfail|server failure|temporary failure in name resolution|dns (error|failure|timeout|timed out|lookup|problem|server|query)|(lookup|query) (error|fail|timed? ?out)|unable to (resolve|look ?up)|no answer from|resolver (error|failure)")
        .expect("the pattern is valid")
});

/// The reader's own delivery program failed (a filter, a vacation script, procmail): the
/// address exists.
static LOCAL_PROGRAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)command died|command output|pipe to \||child process|transport returned|delivery to (a )?(pipe|program|command)|mailer error|procmail|maildrop|autorespon|auto-respon|vacation (program|script)|(?-u:\b)script(?-u:\b)|exit (code|status) \d|returned (a )?non-?zero|x-unix")
        .expect("the pattern is valid")
});

/// Whether any status code in `text` is about policy or security (X.7.X) or our sender's
/// address (X.1.7, X.1.8): a reply about us, whatever the report's own Status says.
fn names_a_code_about_us(text: &str) -> bool {
    STATUS
        .find_iter(text)
        .filter_map(|m| parse_status(m.as_str()))
        .any(|(_, subject, detail)| subject == 7 || (subject == 1 && matches!(detail, 7 | 8)))
}

/// A reply of several lines that a report cut to its first (`554-Transaction failed`), with
/// the lines of the same reply that the report's transcript keeps (`<<< 554-Reject due to
/// policy restrictions.`).
fn whole_reply<'a>(diagnostic: &'a str, context: &str) -> std::borrow::Cow<'a, str> {
    let code = diagnostic
        .trim_start()
        .get(..4)
        .filter(|c| c.ends_with('-') && c[..3].bytes().all(|b| b.is_ascii_digit()) && diagnostic.lines().count() == 1);
    let Some(code) = code else {
        return diagnostic.into();
    };
    let code = &code[..3];
    let rest: Vec<&str> = context
        .lines()
        .map(|l| l.trim_start().trim_start_matches("<<<").trim_start())
        .filter(|l| l.len() > 3 && l.starts_with(code) && matches!(l.as_bytes()[3], b'-' | b' '))
        .collect();
    if rest.len() < 2 {
        return diagnostic.into();
    }
    rest.join(" ").into()
}

/// Why a recipient's delivery failed.
pub fn reason(evidence: Evidence) -> Reason {
    let diagnostic = whole_reply(evidence.diagnostic, evidence.context);
    let evidence = Evidence {
        diagnostic: &diagnostic,
        ..evidence
    };
    // Addresses are not words: `filtered@example.com` says nothing about a filter.
    let text = ADDRESSES.replace_all(evidence.diagnostic, " ");
    let context = ADDRESSES.replace_all(evidence.context, " ");
    let code = specific_status(evidence.status, &text);
    if let Some((2, _, _)) = code {
        return Reason::Delivered;
    }
    if evidence.delayed {
        return Reason::Delayed;
    }
    let by_wording = wording(&text);
    // A specific wording beats a vague or misleading code (5.1.1 "mailbox full"), and so does
    // a report that contradicts itself.
    if let Some(r @ (Reason::MailboxFull | Reason::TooBig | Reason::HasMoved)) = by_wording {
        return r;
    }
    if !context.is_empty() && MAILBOX_FULL.is_match(&context) {
        return Reason::MailboxFull;
    }
    // Whose fault it is, before what it is: a refusal of our connection or our sender is
    // never the reader's, and words about blocklists, rate limits, policy or our domain
    // outrank any code (a blocklisting reported with Status 5.1.1 is still a blocklisting).
    let stage = stage(evidence.diagnostic).or_else(|| stage(evidence.context));
    if matches!(stage, Some(Stage::Connect | Stage::MailFrom))
        || by_wording == Some(Reason::Blocked)
        || names_a_code_about_us(&text)
        || code.is_some_and(|(_, s, d)| s == 7 || (s == 1 && matches!(d, 7 | 8)))
    {
        return Reason::Blocked;
    }
    // The reader's own program failing, or the name service failing, says nothing of the
    // address (an unknown user in a script's output is the script's).
    if LOCAL_PROGRAM.is_match(&text) {
        return Reason::Other;
    }
    if by_wording != Some(Reason::HostUnknown) && DNS_FAULT.is_match(&text) {
        return Reason::Network;
    }
    let temporary = matches!(code, Some((4, _, _)));
    let by_code = code.and_then(|(_, subject, detail)| by_status(subject, detail));
    let reason = match (by_code, by_wording) {
        (Some(code), _) if is_definite(code) => code,
        (_, Some(Reason::UserUnknown)) if stage == Some(Stage::Data) => Reason::Filtered,
        (_, Some(w)) => w,
        (Some(code), None) => code,
        (None, None) => Reason::Other,
    };
    let reason = orange_or_la_poste(&text).unwrap_or(reason);
    match reason {
        // A temporary failure never removes a reader, whatever it says; nor do words alone,
        // without a server's reply code or the report saying the failure is permanent. A
        // missing host or domain is a fact of DNS, not a filter's wording.
        r if r.class() == Class::Hard
            && (temporary
                || (code.is_none()
                    && !matches!(r, Reason::HostUnknown | Reason::NotAccept)
                    && !permanent(&text)
                    && !permanent(&context))) =>
        {
            Reason::Other
        }
        r => r,
    }
}

/// Orange's and La Poste's own codes (`LPN007_416`, `OFR006_102`, `OFR_506`, `LPN416`), listed
/// on their postmaster pages: the last three digits say what the generic status code does not
/// (La Poste refuses an unknown recipient with 550 5.5.0 after DATA).
static ORANGE_CODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)(?:LPN|OFR|OUK)(?:\d{3}[_-]|_)?(\d{3})(?-u:\b)").expect("the pattern is valid")
});

fn orange_or_la_poste(text: &str) -> Option<Reason> {
    let caps = ORANGE_CODE.captures(text)?;
    Some(match caps.get(1)?.as_str() {
        "416" | "418" => Reason::UserUnknown,
        "417" => Reason::MailboxFull,
        "420" | "426" => Reason::Suspended,
        "514" => Reason::TooBig,
        // Spam, SPF, authentication, an invalid sender, too many connections: about us.
        "102" | "103" | "104" | "305" | "401" | "402" | "403" | "405" | "415" | "421" | "506" | "510" | "999" => {
            Reason::Blocked
        }
        _ => return None,
    })
}

/// The report's code, or a more specific one from the diagnostic when the report's says
/// only "failed" (5.0.0) or is missing.
fn specific_status(status: Option<&str>, diagnostic: &str) -> Option<(u16, u16, u16)> {
    let given = status.and_then(parse_status);
    match given {
        Some((_, s, d)) if s != 0 || d != 0 => given,
        _ => STATUS
            .find_iter(diagnostic)
            .filter_map(|m| parse_status(m.as_str()))
            .find(|&(_, s, d)| s != 0 || d != 0)
            .or(given),
    }
}

fn is_definite(r: Reason) -> bool {
    matches!(
        r,
        Reason::UserUnknown
            | Reason::HostUnknown
            | Reason::HasMoved
            | Reason::Disabled
            | Reason::MailboxFull
            | Reason::Expired
    )
}

fn wording(text: &str) -> Option<Reason> {
    if text.is_empty() {
        return None;
    }
    WORDING_SET.matches(text).iter().next().map(|i| WORDINGS[i].0)
}

/// RFC 3463's subjects and details as reasons; `None` where the code says too little.
fn by_status(subject: u16, detail: u16) -> Option<Reason> {
    Some(match (subject, detail) {
        (1, 1) | (1, 10) => Reason::UserUnknown,
        (1, 2) => Reason::HostUnknown,
        (1, 6) => Reason::HasMoved,
        (2, 1) => Reason::Disabled,
        (2, 2) | (2, 3) => Reason::MailboxFull,
        (3, 4) => Reason::TooBig,
        (4, 4) => Reason::HostUnknown,
        (4, 7) => Reason::Expired,
        (4, 1) | (4, 2) | (4, 6) => Reason::Network,
        (7, _) => Reason::Blocked,
        _ => return None,
    })
}

/// `5.1.1` as (5, 1, 1).
fn parse_status(s: &str) -> Option<(u16, u16, u16)> {
    let caps = STATUS.captures(s)?;
    let n = |i| caps.get(i).and_then(|m| m.as_str().parse().ok());
    Some((n(1)?, n(2)?, n(3)?))
}

#[cfg(test)]
mod tests;
