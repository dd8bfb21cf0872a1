//! Bounces written for people (qmail, Exim, many appliances): the failed addresses, codes and
//! wordings are found in the prose, which ends where the returned message begins.

use std::sync::LazyLock;

use regex::Regex;

use super::classify::STATUS;
use super::fields::clean_address;

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9][A-Za-z0-9._%+=!#$&'*/?^`{|}~-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
        .expect("the pattern is valid")
});

/// Where the returned message starts in the prose of a bounce: a separator line, or the first
/// of its header lines.
static RETURNED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?mi)^(?:[ \t]*[-=_*|]{2,}.*(?:original|copy|returned|enclosed|headers|undelivered|below this line|(?:message|text) follows).*$|.*(?:copy of the (?:original )?message|original message).*:[ \t]*$|[ \t]*(?:original message|message headers follow|headers of the (original|returned)|copy of the (original )?message|unsent message below|original message headers|returned message|undelivered message|first \d+ lines|message text follows|unsent message follows).*$|(?:return-path|received|message-id|dkim-signature|mime-version|x-mailer|content-type):[ \t]?\S.*\n[A-Za-z-]+:[ \t]?\S)",
    )
    .expect("the pattern is valid")
});

/// The prose of a bounce and, apart, what follows it (the returned message, if inline).
pub fn split_returned(text: &str) -> (&str, &str) {
    match RETURNED.find(text) {
        // A separator on the first lines is the bounce's own heading, not the copy.
        Some(m) if m.start() > 0 => text.split_at(m.start()),
        _ => (text, ""),
    }
}

/// One failed recipient found in prose, with the code and the text around it.
#[derive(Debug, PartialEq)]
pub struct Failure {
    pub recipient: String,
    pub status: Option<String>,
    pub text: String,
}

/// The failed recipients in `prose`: those of `listed` (X-Failed-Recipients) when given, else
/// every address in it except those in `not_recipients` (the report's own sender and
/// recipient, postmasters).
pub fn failures(prose: &str, listed: &[String], not_recipients: &[String]) -> Vec<Failure> {
    // Each address with where it stands and whether it is an aside there.
    let mentions: Vec<(String, usize, bool)> = ADDRESS
        .find_iter(prose)
        .filter_map(|m| Some((clean_address(m.as_str())?, m.start(), is_aside(prose, m.start()))))
        .collect();
    // An address once mentioned as an aside (a helpdesk to contact) is one everywhere: the
    // same line may follow in another language.
    let is_aside_anywhere = |address: &String| mentions.iter().any(|(a, _, aside)| *aside && a == address);
    let mut found: Vec<(String, usize)> = Vec::new();
    for (address, at, _) in &mentions {
        let wanted = if listed.is_empty() {
            !not_recipients.contains(address) && !is_role(address) && !is_aside_anywhere(address)
        } else {
            listed.contains(address)
        };
        if wanted && !found.iter().any(|(a, _)| a == address) {
            found.push((address.clone(), line_start(prose, *at)));
        }
    }
    for address in listed {
        if !found.iter().any(|(a, _)| a == address) {
            found.push((address.clone(), 0));
        }
    }
    let single = found.len() == 1;
    let mut failures = Vec::with_capacity(found.len());
    for (i, (recipient, start)) in found.iter().enumerate() {
        let end = found[i + 1..]
            .iter()
            .map(|(_, s)| *s)
            .find(|s| s > start)
            .unwrap_or(prose.len());
        // One recipient: the whole prose is about it (the code may come before the address).
        let text = if single && listed.len() <= 1 {
            prose
        } else {
            &prose[*start..end]
        };
        // A transcript's failing reply, not the 250s before it.
        let status = STATUS
            .find_iter(text)
            .find(|m| !m.as_str().starts_with('2'))
            .or_else(|| STATUS.find(text))
            .map(|m| m.as_str().to_owned());
        failures.push(Failure {
            recipient: recipient.clone(),
            status,
            text: text.trim().to_owned(),
        });
    }
    failures
}

/// Where a mail client starts a forwarded message in the text (Apple Mail, Gmail, Thunderbird).
static FORWARDED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?mi)^[ \t]*(?:begin forwarded message:|-{5,} ?forwarded message ?-{5,})[ \t]*\n")
        .expect("the pattern is valid")
});

/// The message a person forwarded inline, its quoting (`> `) taken off, if the text has one.
pub fn forwarded(prose: &str) -> Option<String> {
    let start = FORWARDED.find(prose)?.end();
    let mut inner = String::with_capacity(prose.len() - start);
    for line in prose[start..].lines() {
        let line = line
            .strip_prefix('>')
            .map_or(line, |l| l.strip_prefix(' ').unwrap_or(l));
        if inner.is_empty() && line.trim().is_empty() {
            continue;
        }
        inner.push_str(line);
        inner.push('\n');
    }
    Some(inner)
}

/// Every address in `text`, in lower case.
pub fn addresses(text: &str) -> Vec<String> {
    ADDRESS
        .find_iter(text)
        .filter_map(|m| clean_address(m.as_str()))
        .collect()
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// Addresses of mail systems are never the reader who bounced.
fn is_role(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or_default();
    matches!(
        local,
        "postmaster" | "mailer-daemon" | "mailerdaemon" | "root" | "abuse" | "noreply" | "no-reply"
    )
}

/// An address inside a URL (`https://host/path?to=a@b`), one to contact for help, the alias a
/// recipient was expanded from, or a sender (`MAIL FROM:<a@b>` in a transcript, `From: a@b` in
/// the returned message's details) is not a recipient.
fn is_aside(text: &str, at: usize) -> bool {
    let line = &text[line_start(text, at)..at];
    let word = line.rsplit(char::is_whitespace).next().unwrap_or_default();
    let line = line.to_ascii_lowercase();
    let label = line.trim_end_matches(|c: char| c == '<' || c.is_whitespace());
    word.contains("://")
        || line.contains("contact")
        || line.contains("generated from")
        || label.ends_with("from:")
        || label.ends_with("sender:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_ends_where_the_returned_message_starts() {
        let text = "Hi. I couldn't deliver to <a@b.example>:\n550 5.1.1 no such user\n\n--- Enclosed is a copy of the message.\n\nReturn-Path: <x@y.example>\n";
        let (prose, rest) = split_returned(text);
        assert!(prose.ends_with("user\n\n"), "{prose:?}");
        assert!(rest.contains("Return-Path"));
        let f = failures(prose, &[], &["x@y.example".into()]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].recipient, "a@b.example");
        assert_eq!(f[0].status.as_deref(), Some("5.1.1"));
    }

    #[test]
    fn senders_are_not_recipients_and_the_failing_reply_decides() {
        let transcript = " In:  MAIL\n     FROM:<sender@x.example> SIZE=1\n Out: 250 2.1.0 Ok\n In:  RCPT TO:<reader@y.example>\n Out: 250 2.1.5 Ok\n In:  DATA\n Out: 451 4.3.0 Error: queue file write error\n";
        let f = failures(transcript, &[], &[]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].recipient, "reader@y.example");
        assert_eq!(f[0].status.as_deref(), Some("4.3.0"));
    }

    #[test]
    fn a_forwarded_bounce_is_unquoted() {
        let prose = "FYI\n\nBegin forwarded message:\n\n> From: MAILER-DAEMON@x.example\n> Subject: Returned mail\n>\n> <a@b.example>: 550 5.1.1 unknown\n";
        assert_eq!(
            forwarded(prose).as_deref(),
            Some("From: MAILER-DAEMON@x.example\nSubject: Returned mail\n\n<a@b.example>: 550 5.1.1 unknown\n")
        );
        assert_eq!(forwarded("no forward here\n"), None);
    }

    #[test]
    fn each_recipient_gets_its_own_paragraph() {
        let prose = "<full@x.example>:\n552 5.2.2 Mailbox full\n\n<gone@x.example>:\n550 5.1.1 User unknown\n";
        let f = failures(prose, &[], &[]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].status.as_deref(), Some("5.2.2"));
        assert_eq!(f[1].status.as_deref(), Some("5.1.1"));
    }
}
