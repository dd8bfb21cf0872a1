use super::*;

#[test]
fn codes_and_wordings() {
    let r = |status, diagnostic| {
        reason(Evidence {
            status,
            diagnostic,
            ..Evidence::default()
        })
    };
    assert_eq!(r(Some("5.1.1"), "550 5.1.1 User unknown"), Reason::UserUnknown);
    assert_eq!(r(Some("5.1.1"), "mailbox full"), Reason::MailboxFull);
    assert_eq!(r(Some("5.0.0"), "550 No such user here"), Reason::UserUnknown);
    assert_eq!(
        r(Some("5.0.0"), "550 5.7.26 Recipient address rejected: user unknown"),
        Reason::Blocked
    );
    assert_eq!(
        r(Some("5.2.1"), "550 5.2.1 <filtered@example.com>... User unknown"),
        Reason::Disabled
    );
    assert_eq!(
        r(
            Some("5.2.1"),
            "550-5.2.1 The email account that you tried to reach is disabled."
        ),
        Reason::Disabled
    );
    assert_eq!(r(Some("4.2.1"), "450 4.2.1 mailbox disabled"), Reason::Other);
    assert_eq!(r(Some("5.0.0"), "550 account suspended"), Reason::Suspended);
    let delay = Evidence {
        status: Some("4.2.2"),
        diagnostic: "452 4.2.2 Mailbox full",
        delayed: true,
        ..Evidence::default()
    };
    assert_eq!(reason(delay), Reason::Delayed);
    assert_eq!(Reason::Delayed.class(), Class::Soft);
    assert_eq!(
        r(
            Some("5.5.0"),
            "550 5.5.0 Adresse destinataire invalide. Invalid recipient. LPN007_416 (in reply to end of DATA command)"
        ),
        Reason::UserUnknown
    );
    assert_eq!(
        r(
            Some("5.0.0"),
            "550 mwinf5c04 ME Adresse IP source bloquee. OFR006_102 Ref"
        ),
        Reason::Blocked
    );
    assert_eq!(r(Some("4.2.1"), "421 Service refuse. LPN006_107"), Reason::Other);
    // A queue on the server's disk is not a message waiting too long in one.
    assert_eq!(
        r(Some("4.3.0"), "451 4.3.0 Error: queue file write error"),
        Reason::Other
    );
    assert_eq!(r(None, "Message was in the queue for 5 days"), Reason::Expired);
    assert_eq!(
        r(Some("5.0.0"), "550 Unknown user (in reply to end of DATA command)"),
        Reason::Filtered
    );
    assert_eq!(r(Some("4.1.1"), "450 4.1.1 User unknown"), Reason::Other);
    assert_eq!(r(None, "550 Host or domain name not found"), Reason::HostUnknown);
    // Words without a code of permanent failure remove no one, except DNS's facts.
    assert_eq!(r(None, "No such user here"), Reason::Other);
    assert_eq!(
        r(None, "No such user here. This is a permanent error."),
        Reason::UserUnknown
    );
    assert_eq!(r(None, "Host or domain name not found"), Reason::HostUnknown);
    assert_eq!(r(Some("2.0.0"), "delivered"), Reason::Delivered);
    assert_eq!(r(Some("5.0.0"), ""), Reason::Other);
}

/// How mail fails, pattern by pattern: whose fault decides before what the code says.
#[test]
fn refusals_of_our_sending_outrank_any_code() {
    let r = |status, diagnostic| {
        reason(Evidence {
            status,
            diagnostic,
            ..Evidence::default()
        })
    };
    // A blocklisting or a rate limit of our IP, whatever Status the relay put on it.
    for (status, text) in [
        (
            Some("5.1.1"),
            "550 5.7.1 Service unavailable, Client host [192.0.2.7] blocked using zen.example",
        ),
        (
            Some("5.1.1"),
            "554 Your IP address 192.0.2.7 is listed at a DNS blacklist",
        ),
        (
            Some("5.1.1"),
            "550 Too many emails sent to too many recipients this hour from 192.0.2.7",
        ),
        (
            Some("5.1.1"),
            "421 4.7.0 Our system has detected an unusual rate of unsolicited mail",
        ),
        (
            Some("5.2.1"),
            "550-5.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered",
        ),
        (
            Some("5.0.0"),
            "550 5.7.26 Unauthenticated email from example.org is not accepted due to its DMARC policy",
        ),
    ] {
        assert_eq!(r(status, text), Reason::Blocked, "{text}");
    }
    // Refused at the greeting, HELO or MAIL FROM: our server or our sender, never the reader.
    for text in [
        "host mx.example.net[192.0.2.9] said: 550 5.1.0 <newsletter@lists.example.org>: Sender address rejected: Domain not found (in reply to MAIL FROM command)",
        "SMTP error from remote mail server after MAIL FROM:<bounces@lists.example.org> SIZE=9000: 553 5.1.7 The sender address is invalid",
        "SMTP error from remote mail server after EHLO relay.example.org: 550 Invalid domain name",
        "host mx.example.net[192.0.2.9] refused to talk to me: 554 5.3.0 No SMTP service here",
        "Connected to 192.0.2.9 but sender was rejected. Remote host said: 553 sorry, your domain does not exist",
        "----- Transcript of session follows -----\n>>> MAIL From:<n@lists.example.org> SIZE=900\n<<< 550 5.1.1 unknown or illegal alias",
    ] {
        assert_eq!(r(Some("5.1.1"), text), Reason::Blocked, "{text}");
    }
    // A transcript whose first line is the server refusing: the greeting.
    let greeting = Evidence {
        status: Some("5.5.0"),
        diagnostic: "554-mx.example.net Service not available",
        context: "... while talking to [192.0.2.9]:\n<<< 554-mx.example.net Service not available\n<<< 554 No SMTP service\n554 5.0.0 Service unavailable",
        ..Evidence::default()
    };
    assert_eq!(reason(greeting), Reason::Blocked);
    // A reply cut to its first line: the transcript's other lines say why.
    let cut = Evidence {
        status: Some("5.0.0"),
        diagnostic: "554-Transaction failed",
        context: "... while talking to [192.0.2.9]:\n>>> MAIL From:<n@lists.example.org>\n<<< 250 ok\n>>> RCPT To:<reader@example.net>\n<<< 250 ok\n>>> DATA\n<<< 554-Transaction failed\n<<< 554-Reject due to policy restrictions.\n<<< 554 see https://postmaster.example.net",
        ..Evidence::default()
    };
    assert_eq!(reason(cut), Reason::Blocked);
    assert_eq!(
        r(
            Some("5.0.0"),
            "554 mx.example.net 192.0.2.7 found on one or more DNSBLs"
        ),
        Reason::Blocked
    );
    // At RCPT TO the same words are the reader's.
    assert_eq!(
        r(
            Some("5.1.1"),
            "----- Transcript of session follows -----\n>>> MAIL From:<n@lists.example.org>\n<<< 250 ok\n>>> RCPT To:<reader@example.net>\n<<< 550 5.1.1 unknown or illegal alias"
        ),
        Reason::UserUnknown
    );
    assert_eq!(
        r(
            Some("5.1.1"),
            "550 5.1.1 <reader@example.net>: Recipient address rejected: User unknown (in reply to RCPT TO command)"
        ),
        Reason::UserUnknown
    );
    // A fault of the name service is not a missing domain; a missing domain still is.
    assert_eq!(
        r(Some("5.4.4"), "554 5.4.4 Malformed or unexpected name server reply"),
        Reason::Network
    );
    assert_eq!(
        r(Some("5.4.4"), "SERVFAIL looking up the MX of example.net"),
        Reason::Network
    );
    assert_eq!(
        r(
            Some("5.4.4"),
            "Host or domain name not found. Name service error for name=example.net type=MX: Host not found"
        ),
        Reason::HostUnknown
    );
    // The reader's own program failing: the mailbox exists.
    for text in [
        "Command died with status 67: \"/usr/bin/procmail\". Command output: User unknown",
        "pipe to |/home/reader/bin/autoreply generated by reader@example.net: Child process of pipe transport returned 1",
        "550 5.1.1 mailer error: the vacation script exited with exit code 2",
    ] {
        assert_eq!(r(Some("5.1.1"), text).class(), Class::Soft, "{text}");
    }
}

/// Notices written for people, from the templates of MTAs that send no report: the notice's
/// own words make a failure final only where no server reply is quoted, and a delay never is.
#[test]
fn notices_for_people_are_final_by_their_words_only_without_a_reply() {
    let r = |diagnostic: &str, delayed: bool| {
        reason(Evidence {
            diagnostic,
            delayed,
            ..Evidence::default()
        })
    };
    // Domino: no code, no "permanent"; the notice says it was not delivered.
    let domino = "Your message\n\n  Subject: News\n\nwas not delivered to:\n\n  reader@example.net\n\nbecause:\n\n  User reader (reader@example.net) not listed in Domino Directory";
    assert_eq!(r(domino, false), Reason::UserUnknown);
    assert_eq!(r(domino, true), Reason::Delayed);
    // The same words with no framing: unclear, so soft.
    assert_eq!(r("User reader not listed in Domino Directory", false), Reason::Other);
    // A quoted reply decides for itself: a 450 under the same framing is not final.
    assert_eq!(
        r(
            "could not be delivered to one or more recipients: 450 4.2.0 <r@example.net>: user unknown",
            false
        ),
        Reason::Other
    );
    // DMA: no MX and no A record is a fact of DNS about the domain.
    assert_eq!(
        r("can not find MX or A records for `nonexistent.example'", false),
        Reason::HostUnknown
    );
    assert_eq!(Reason::HostUnknown.class(), Class::Hard);
}
