//! Delivery against real SMTP servers: Postfix's smtp-sink for the happy path, a scripted
//! server in this file's support module for every fault. Each test runs the binary as a user
//! does and asserts who received what, how often, with which headers.

use crate::support;
use crate::support::tools;

use std::time::{Duration, Instant};

use support::{Options, Project, Reply, ScriptServer, Sink, Stage, csv, run};

const FAST_RETRY: &str = "throttle: { rate: off, concurrency: 2, retries: 3, retry_delay: 50ms }\n";

#[test]
fn every_valid_recipient_gets_the_issue_once_with_its_headers() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    // A BOM, a duplicate in other case, an invalid address, a short row, an IDN domain,
    // a line break in a name, HTML in a field, unsubscribed and bounced rows.
    let list = "\u{feff}email,first_name,name,status\n\
        alice@example.org,Alice,Alice Example,\n\
        bob@example.org,<b>Bob</b>,Bob & Co,active\n\
        ALICE@example.org ,Again,Alice Again,\n\
        not-an-address,X,X,\n\
        short@example.org,Short\n\
        joerg@bücher.example,Jörg,Jörg Müller,\n\
        \"eve@example.org\",Eve,\"Eve\r\nBcc: victim@example.org\",\n\
        gone@example.org,Gone,Gone,unsubscribed\n\
        bounce@example.org,B,B,bounced\n";
    let project = Project::new(sink.port, list, "throttle: { rate: off }\n");
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let received = sink.received();
    let mut who: Vec<(&str, usize)> = received.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    who.sort();
    assert_eq!(
        who,
        vec![
            ("alice@example.org", 1),
            ("bob@example.org", 1),
            ("joerg@xn--bcher-kva.example", 1)
        ]
    );
    for (line, reason) in [
        (4, "duplicate"),
        (5, "invalid address"),
        (6, "wrong number of fields"),
        (8, "line break in a field"),
        (10, "unsubscribed"),
        (11, "bounced"),
    ] {
        let needle = format!("recipients.csv:{line}: {reason}");
        assert!(r.stderr.contains(&needle), "missing {needle:?} in {}", r.stderr);
    }
    assert!(r.stdout.contains("Sent 3 of 3"), "{}", r.stdout);

    let bob = sink
        .messages()
        .into_iter()
        .find(|(to, _)| to[0] == "bob@example.org")
        .unwrap()
        .1;
    let head = bob
        .split("\r\n\r\n")
        .next()
        .unwrap_or(&bob)
        .replace("\r\n ", " ")
        .replace("\n ", " ");
    for header in [
        "From: \"OpenInfra Foundation\" <newsletter@openinfra.dev>",
        "To: =?utf-8?b?Qm9iICYgQ28=?= <bob@example.org>", // "Bob & Co", encoded
        "Subject: Small issue for <b>Bob</b>",
        "List-Id: Inside Open Infrastructure <newsletter.openinfra.dev>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "List-Unsubscribe: <https://openinfra.dev/newsletter/unsubscribe?token=",
        "Message-ID: <small.",
    ] {
        assert!(head.contains(header), "missing {header:?} in\n{head}");
    }
    let body = support::decode_qp(&bob);
    assert!(
        body.contains("Hello &lt;b&gt;Bob&lt;/b&gt;, this is the lead."),
        "HTML-escaped in the HTML part"
    );
    assert!(
        body.contains("Hello <b>Bob</b>, this is the lead."),
        "literal in the text part"
    );
}

#[test]
fn a_temporary_failure_is_retried_and_delivered_once() {
    let server = ScriptServer::start(|stage, rcpt, attempt| match (stage, rcpt, attempt) {
        (Stage::Rcpt, "user1@example.org", 1) => Reply::Code(451, "4.3.0 Try again later"),
        (Stage::Dot, "user2@example.org", 1) => Reply::Code(452, "4.3.1 Insufficient system storage"),
        _ => Reply::Ok,
    });
    let project = Project::new(server.port, &csv(5), FAST_RETRY);
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for i in 0..5 {
        assert_eq!(server.count(&format!("user{i}@example.org")), 1, "user{i}");
    }
    assert_eq!(server.seen(Stage::Rcpt, "user1@example.org"), 2);
}

#[test]
fn permanent_failures_are_reported_and_the_send_goes_on() {
    let server = ScriptServer::start(|stage, rcpt, _| match (stage, rcpt) {
        (Stage::Rcpt, "user1@example.org") => Reply::Code(550, "5.1.1 Mailbox does not exist"),
        (Stage::Dot, "user3@example.org") => Reply::Code(554, "5.7.1 Message rejected as spam"),
        _ => Reply::Ok,
    });
    let project = Project::new(server.port, &csv(6), FAST_RETRY);
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 1, "some recipients failed: {}", r.stderr);
    assert!(
        r.stderr
            .contains("recipients.csv:3 user1@example.org: permanent error (550): 5.1.1 Mailbox does not exist"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("recipients.csv:5 user3@example.org: permanent error (554): 5.7.1 Message rejected as spam"),
        "{}",
        r.stderr
    );
    assert_eq!(server.seen(Stage::Rcpt, "user1@example.org"), 1, "a 5xx is not retried");
    for i in [0, 2, 4, 5] {
        assert_eq!(server.count(&format!("user{i}@example.org")), 1, "user{i}");
    }
    assert_eq!(server.count("user1@example.org") + server.count("user3@example.org"), 0);
    assert!(r.stdout.contains("Sent 4 of 6"), "{}", r.stdout);
}

#[test]
fn a_connection_dropped_mid_data_is_retried_on_a_new_connection() {
    let server = ScriptServer::start(|stage, rcpt, attempt| match (stage, rcpt, attempt) {
        (Stage::Dot, "user2@example.org", 1) => Reply::Drop,
        _ => Reply::Ok,
    });
    let project = Project::new(server.port, &csv(4), FAST_RETRY);
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for i in 0..4 {
        assert_eq!(server.count(&format!("user{i}@example.org")), 1, "user{i}");
    }
    assert!(
        server.connections() >= 3,
        "two senders, one reconnect: {}",
        server.connections()
    );
}

#[test]
fn a_slow_reply_past_the_timeout_is_retried_and_a_slow_one_within_it_is_fine() {
    let server = ScriptServer::start(|stage, rcpt, attempt| match (stage, rcpt, attempt) {
        (Stage::Dot, "user0@example.org", 1) => Reply::Delay(
            Duration::from_millis(2500),
            Box::new(Reply::Code(451, "4.4.2 too slow")),
        ),
        (Stage::Dot, "user1@example.org", _) => Reply::Delay(Duration::from_millis(400), Box::new(Reply::Ok)),
        _ => Reply::Ok,
    });
    let project = Project::new(server.port, &csv(3), FAST_RETRY);
    let r = run(project
        .command()
        .args(["send", "small", "--yes"])
        .env("NEWSLETTER_SMTP_TIMEOUT", "1s"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.count("user0@example.org"), 1);
    assert_eq!(server.seen(Stage::Dot, "user0@example.org"), 2);
    assert_eq!(server.count("user1@example.org"), 1);
    assert_eq!(server.seen(Stage::Dot, "user1@example.org"), 1);
}

#[test]
fn a_server_that_rejects_every_recipient_differently_stops_the_run() {
    // Each refusal differs, so it is the recipients', not the relay's (see tests/resume.rs).
    let server = ScriptServer::start(|stage, rcpt, _| match stage {
        Stage::Rcpt => {
            let local = rcpt.split('@').next().unwrap_or_default();
            Reply::Code(
                554,
                Box::leak(format!("5.7.1 refused by the rule for {local}").into_boxed_str()),
            )
        }
        _ => Reply::Ok,
    });
    let project = Project::new(
        server.port,
        &csv(200),
        "throttle: { rate: off, concurrency: 2, max_consecutive_failures: 5 }\n",
    );
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(
            "stopped after 5 failures in a row; the last: permanent error (554): 5.7.1 refused by the rule for user"
        ),
        "{}",
        r.stderr
    );
    let tried: u32 = (0..200)
        .map(|i| server.seen(Stage::Rcpt, &format!("user{i}@example.org")))
        .sum();
    // The failures, the last refusal (held back until the next reply shows it is not the
    // relay's), and those in flight (concurrency + 1).
    assert!(tried <= 5 + 1 + 3, "only the failures and those in flight: {tried}");
}

#[test]
fn dry_run_plans_and_writes_samples_without_connecting() {
    let port = support::free_port(); // nothing listens: a connection attempt would fail
    let mut list = csv(25);
    list.push_str("broken,X\nuser3@example.org,Dup\n");
    let project = Project::new(
        port,
        &list,
        "throttle: { rate: 600/min, concurrency: 3 }\ndry_run_samples: 5\n",
    );
    let r = run(project.command().args(["send", "small", "--dry-run"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for expected in [
        "Recipients read: 27",
        "To send:         25",
        "Skipped:         2 (1 invalid address, 1 duplicate)",
        "Throttle:        10/s, 3 connections",
        "Estimated time:  2s",
        "Wrote 5 messages",
    ] {
        assert!(r.stdout.contains(expected), "missing {expected:?} in\n{}", r.stdout);
    }
    let dir = project.dir.path().join("out/small/dry-run");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files[0], "000001-user0@example.org.eml");
    assert_eq!(files.len(), 5);
    let eml = std::fs::read_to_string(dir.join(&files[0])).unwrap();
    assert!(eml.contains("Subject: Small issue for User0"));

    let r = run(project.command().args(["send", "small", "--dry-run", "--all"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 25);
}

#[test]
fn test_sends_go_to_staff_with_a_test_subject() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(50),
        "test_recipients: [staff@openinfra.dev]\nthrottle: { rate: off }\n",
    );
    let r = run(project.command().args(["send", "small", "--test"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0, vec!["staff@openinfra.dev"]);
    assert!(
        messages[0].1.contains("Subject: [TEST] Small issue for reader"),
        "neutral values, never a reader's"
    );
    assert!(r.stderr.contains("note: a test send fills the recipient fields with neutral values (archive.fields: first_name=reader, name=reader)"), "{}", r.stderr);

    let r = run(project
        .command()
        .args(["send", "small", "--test", "--to", "a@openinfra.dev,b@openinfra.dev"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let received = sink.received();
    assert_eq!(
        (received["a@openinfra.dev"], received["b@openinfra.dev"], received.len()),
        (1, 1, 3)
    );
}

#[test]
fn a_real_send_needs_yes_when_not_on_a_terminal() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(3), "");
    let r = run(project.command().args(["send", "small"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("not on a terminal: pass --yes to send 'Small issue for {{first_name}}' to 3 recipients"),
        "{}",
        r.stderr
    );
    assert!(sink.messages().is_empty());
}

#[test]
fn the_throttle_spaces_messages() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let n = 21;
    let project = Project::new(
        sink.port,
        &csv(n),
        "throttle: { rate: 20/s, burst: 1, concurrency: 4 }\n",
    );
    let started = Instant::now();
    let r = run(project.command().args(["send", "small", "--yes"]));
    let elapsed = started.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.messages().len(), n);
    // N messages at rate R with a bucket of 1 take at least (N - 1) / R.
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
}

#[test]
fn a_dkim_selector_without_a_key_stops_before_sending() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(1), "dkim: { selector: nl2025 }\n");
    let r = run(project
        .command()
        .args(["send", "small", "--yes"])
        .env_remove("NEWSLETTER_DKIM_PRIVATE_KEY"));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("dkim.selector is set but NEWSLETTER_DKIM_PRIVATE_KEY is not"),
        "{}",
        r.stderr
    );
    assert!(sink.messages().is_empty());
}

#[test]
fn commands_are_pipelined_only_when_the_server_offers_it() {
    for pipelining in [true, false] {
        let server = ScriptServer::start_with(
            Options {
                starttls: false,
                pipelining,
                ..Options::default()
            },
            |_, _, _| Reply::Ok,
        );
        let project = Project::new(server.port, &csv(5), "throttle: { rate: off, concurrency: 1 }\n");
        let r = run(project.command().args(["send", "small", "--yes", "-q"]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        for i in 0..5 {
            assert_eq!(server.count(&format!("user{i}@example.org")), 1);
        }
        assert_eq!(server.pipelined(), if pipelining { 5 } else { 0 });
    }
}

#[test]
fn batches_pause_between_them() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(5),
        "throttle: { rate: off, concurrency: 2, batch_size: 2, batch_pause: 700ms }\n",
    );
    let started = Instant::now();
    let r = run(project.command().args(["send", "small", "--yes", "-q"]));
    let elapsed = started.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.messages().len(), 5);
    // 5 messages in batches of 2: two pauses.
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");
}

#[test]
fn a_relay_capping_connections_gets_fewer_and_everyone_once() {
    let server = ScriptServer::start_with(
        Options {
            max_connections: Some(2),
            ..Options::default()
        },
        |_, _, _| Reply::Ok,
    );
    let project = Project::new(
        server.port,
        &csv(300),
        "throttle: { rate: off, concurrency: 4, retries: 1, retry_delay: 50ms }\n",
    );
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for i in 0..300 {
        assert_eq!(server.count(&format!("user{i}@example.org")), 1, "user{i}");
    }
    assert_eq!(server.most_open(), 2);
    let said = r.stderr.matches("the server turned a connection away").count();
    assert_eq!(said, 1, "said once: {}", r.stderr);
    assert!(r.stderr.contains("too many connections"), "{}", r.stderr);
    // Two connections were refused at the start, and after every good stretch one more try:
    // far fewer refusals than messages.
    assert!(server.connections() < 2 + 10, "{} connections", server.connections());
}

#[test]
fn a_non_ascii_local_part_needs_smtputf8() {
    let csv = "email,first_name\n김민수@example.kr,민수\nplain@example.org,Pat\n";
    for smtputf8 in [false, true] {
        let server = ScriptServer::start_with(
            Options {
                smtputf8,
                ..Options::default()
            },
            |_, _, _| Reply::Ok,
        );
        let project = Project::new(server.port, csv, "throttle: { rate: off }\n");
        let r = run(project.command().args(["send", "small", "--yes"]));
        assert_eq!(server.count("plain@example.org"), 1);
        if smtputf8 {
            assert_eq!(r.code, 0, "{}", r.stderr);
            assert_eq!(server.count("김민수@example.kr"), 1);
        } else {
            assert_eq!(r.code, 1, "{}", r.stderr);
            assert_eq!(server.count("김민수@example.kr"), 0);
            assert!(
                r.stderr.contains("recipients.csv:2 김민수@example.kr: the address has non-ASCII characters before the @, and the server does not accept such addresses (it does not offer SMTPUTF8"),
                "{}",
                r.stderr
            );
            assert!(!r.stderr.contains("internal client error"), "{}", r.stderr);
        }
    }
}

#[test]
fn a_test_send_has_its_own_message_id_and_real_mail_a_feedback_id() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        "email,first_name\nstaff@openinfra.dev,Sam\n",
        "throttle: { rate: off }\n",
    );
    let r = run(project
        .command()
        .args(["send", "small", "--test", "--to", "staff@openinfra.dev"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A second test (after a correction, say) is a message of its own.
    let r = run(project
        .command()
        .args(["send", "small", "--test", "--to", "staff@openinfra.dev"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let messages = sink.messages();
    assert_eq!(messages.len(), 3);
    let header = |text: &str, name: &str| {
        text.lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .map(|l| l.split_once(':').unwrap().1.trim().to_owned())
    };
    let (test, real): (Vec<_>, Vec<_>) = messages.iter().partition(|(_, t)| t.contains("Subject: [TEST]"));
    let second_id = header(&test[1].1, "Message-ID").unwrap();
    let (test, real) = (&test[0].1, &real[0].1);
    let (test_id, real_id) = (header(test, "Message-ID").unwrap(), header(real, "Message-ID").unwrap());
    assert_ne!(test_id, real_id);
    assert_ne!(test_id, second_id, "two test sends, two Message-IDs");
    // The staff's own address, and a neutral name rather than a reader's (the list's only
    // row is this address, with Sam).
    assert!(header(test, "To").unwrap().contains("staff@openinfra.dev"));
    assert!(!test.contains("Sam"), "no reader's value in a test");
    assert!(test_id.starts_with("<small.test."), "{test_id}");
    assert_eq!(
        header(real, "Feedback-ID").as_deref(),
        Some("small:newsletter.openinfra.dev:newsletter:openinfra.dev")
    );
    assert_eq!(header(test, "Feedback-ID"), None, "a test is not a campaign");
}

#[test]
fn no_header_line_passes_998_octets_whatever_the_name() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let csv = format!(
        "email,first_name\nlong@example.org,{}\nwide@example.org,{}\nplain@example.org,Pat\n",
        "b".repeat(1200),
        "Ä".repeat(1200)
    );
    let project = Project::new(sink.port, &csv, "throttle: { rate: off }\n");
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let messages = sink.messages();
    assert_eq!(messages.len(), 3);
    for (rcpt, text) in &messages {
        let longest = text.lines().map(str::len).max().unwrap();
        assert!(longest <= 998, "{rcpt:?}: a line of {longest} octets");
    }
}

/// The summary counts everyone of the list: those sent, and those not sent with why.
#[test]
fn the_summary_counts_everyone_of_the_list() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let csv = "email,first_name\nann@example.org,Ann\nnot-an-address,X\nbob@example.org,Bob\ncyd@example.org,Cyd\n";
    let project = Project::new(sink.port, csv, "throttle: { rate: off }\n");
    assert_eq!(
        run(project.command().args(["suppress", "add", "cyd@example.org"])).code,
        0
    );
    let r = run(project.command().args(["send", "small", "--yes", "--limit", "1"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Sent 1 of 1 in")
            && r.stdout.contains(
                "Not sent: 1 skipped (1 invalid address: line 3), 1 suppressed or forgotten, 1 left for a later run."
            ),
        "{}",
        r.stdout
    );
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert!(
        r.stdout.contains("Sent 1 of 1 in")
            && r.stdout.contains(
                "Not sent: 1 skipped (1 invalid address: line 3), 1 suppressed or forgotten, 1 already sent."
            ),
        "{}",
        r.stdout
    );
}

/// Without the recipient list, preview, check and a test send all read recipients.example.csv
/// in its place and say so; a real send needs the real list.
#[test]
fn one_rule_for_a_missing_recipient_list() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(1),
        "test_recipients: [staff@openinfra.dev]\nthrottle: { rate: off }\n",
    );
    std::fs::remove_file(project.dir.path().join("recipients.csv")).unwrap();
    std::fs::copy(
        support::root().join("recipients.example.csv"),
        project.dir.path().join("recipients.example.csv"),
    )
    .unwrap();
    let r = run(project.command().args(["preview", "small"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("(recipients.example.csv line 2)"), "{}", r.stdout);
    let r = run(project.command().args(["check", "small", "--offline"]));
    assert!(
        r.stdout.contains(
            "recipients.csv does not exist: template variables checked against the columns of recipients.example.csv"
        ),
        "{}",
        r.stdout
    );
    let r = run(project.command().args(["send", "small", "--test"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("neutral values"), "{}", r.stderr);
    assert_eq!(sink.received().get("staff@openinfra.dev"), Some(&1));
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot open recipient list") && r.stderr.contains("copy recipients.example.csv"),
        "{}",
        r.stderr
    );
}

/// Without the secret a real send stops before anything goes, saying how to make one.
#[test]
fn a_send_without_the_secret_says_how_to_make_it() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(2), "throttle: { rate: off }\n");
    let r = run(project
        .command()
        .env_remove("NEWSLETTER_UNSUBSCRIBE_SECRET")
        .args(["send", "small", "--yes"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("NEWSLETTER_UNSUBSCRIBE_SECRET is not set: it signs the unsubscribe links and is ours to make, once: `openssl rand -base64 32`"),
        "{}",
        r.stderr
    );
    assert_eq!(sink.count(), 0);
}
