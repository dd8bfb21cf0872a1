//! What an SMTP refusal says about the recipient, the message or the sender. Shared by the
//! delivery loop and the ledger.

/// A permanent reply that means the mailbox does not exist: the address is suppressed so that
/// no later issue is sent to it (repeated sends to dead mailboxes hurt the sender's reputation).
pub fn mailbox_does_not_exist(reply: &str) -> bool {
    let lower = reply.to_ascii_lowercase();
    ["5.1.1", "5.1.10", "5.2.1"].iter().any(|code| {
        lower
            .match_indices(code)
            .any(|(i, _)| !lower[i + code.len()..].starts_with(|c: char| c.is_ascii_digit()))
    }) || (lower.contains("(550)")
        && [
            "does not exist",
            "user unknown",
            "unknown user",
            "no such user",
            "mailbox unavailable",
        ]
        .iter()
        .any(|p| lower.contains(p)))
}

/// The reply with the recipient's address taken out, so that the same refusal given to
/// different recipients compares equal ("554 5.7.1 <a@x>: Relay access denied").
pub fn without_recipient(reply: &str, email: &str) -> String {
    let lower = reply.to_lowercase();
    let email = email.to_lowercase();
    lower.replace(&email, "<>")
}

/// A server turning away a connection because it has too many from us already (Postfix's
/// `smtpd_client_connection_count_limit`, Exchange's concurrent connection limit).
pub fn too_many_connections(reply: &str) -> bool {
    let lower = reply.to_ascii_lowercase();
    [
        "too many connections",
        "too many concurrent",
        "concurrent server connections",
        "connection count limit",
    ]
    .iter()
    .any(|p| lower.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonexistent_mailboxes_are_recognised() {
        assert!(mailbox_does_not_exist(
            "permanent error (550): 5.1.1 <x@y>: Recipient address rejected: User unknown"
        ));
        assert!(mailbox_does_not_exist(
            "permanent error (550): Requested action not taken: mailbox unavailable"
        ));
        assert!(mailbox_does_not_exist(
            "permanent error (550): 5.2.1 The email account that you tried to reach is disabled"
        ));
        assert!(!mailbox_does_not_exist(
            "permanent error (554): 5.7.1 Message rejected as spam"
        ));
        assert!(!mailbox_does_not_exist("permanent error (552): 5.1.15 whatever"));
    }

    #[test]
    fn the_same_refusal_to_different_recipients_compares_equal() {
        assert_eq!(
            without_recipient("554 5.7.1 <A@x.org>: Relay access denied", "a@x.org"),
            without_recipient("554 5.7.1 <b@y.org>: Relay access denied", "b@y.org")
        );
        assert!(too_many_connections(
            "421 4.7.0 127.0.0.1 Error: too many connections from 127.0.0.1"
        ));
        assert!(too_many_connections(
            "421 4.3.2 The maximum number of concurrent server connections has exceeded a limit"
        ));
    }
}
