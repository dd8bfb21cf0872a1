//! The return path end to end with real reports: the newsletter goes through a real Postfix
//! relay to a server that refuses some readers; Postfix writes the delivery status
//! notifications itself and delivers them to the bounce mailbox, and `newsletter bounces`
//! reads them there.

use crate::support;
use crate::support::tools;

use std::collections::BTreeMap;

use support::postfix::Postfix;
use support::{Project, Reply, ScriptServer, Stage, csv, run, scheduled_issue, wait_until};

/// The readers' mail servers: what each one answers to RCPT.
fn readers_servers() -> ScriptServer {
    ScriptServer::start(|stage, rcpt, _| match (stage, rcpt) {
        (Stage::Rcpt, "user0@example.org") => Reply::Code(
            550,
            "5.1.1 <user0@example.org>: Recipient address rejected: User unknown in local recipient table",
        ),
        // Temporary, until Postfix gives up (at once here): Action failed, Status 4.2.2.
        (Stage::Rcpt, "user1@example.org") => Reply::Code(452, "4.2.2 <user1@example.org>: Mailbox full"),
        (Stage::Rcpt, "user2@example.org") => Reply::Code(552, "5.2.2 <user2@example.org>: Mailbox full, over quota"),
        (Stage::Rcpt, "user3@example.org") => Reply::Code(
            554,
            "5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org",
        ),
        _ => Reply::Ok,
    })
}

/// What `bounces --format json` said, per recipient: (class, reason, issue, action).
fn verdicts(out: &str) -> BTreeMap<String, (String, String, String, String)> {
    let all: serde_json::Value = serde_json::from_str(out).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("recipient"), (s("class"), s("reason"), s("issue"), s("action")))
        })
        .collect()
}

#[test]
fn reports_written_by_postfix_suppress_the_right_readers_with_and_without_verp() {
    needs!(tools::POSTFIX);
    let servers = readers_servers();
    let relay = Postfix::start(servers.port);
    let issues = [("2025-01", scheduled_issue(None)), ("2025-02", scheduled_issue(None))];
    // With VERP, reports come back to bounces+TOKEN@; without, to the From address.
    let verp = Project::new(
        relay.port,
        &csv(6),
        "bounces: { return_path: \"bounces+{token}@lists.example.org\" }\n",
    )
    .with_issues(&issues);
    let plain = Project::new(relay.port, &csv(6), "").with_issues(&issues);
    for project in [&verp, &plain] {
        let r = run(project.command().args(["send", "2025-01", "--yes"]));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while relay.waiting("bounces") < 4 || relay.waiting("newsletter") < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} and {} reports; Postfix's log:\n{}",
            relay.waiting("bounces"),
            relay.waiting("newsletter"),
            relay.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let expected = [
        ("user0@example.org", "hard", "user-unknown", "suppressed (bounce)"),
        (
            "user1@example.org",
            "soft",
            "mailbox-full",
            "counted (1 of 3 soft bounces in a row)",
        ),
        (
            "user2@example.org",
            "soft",
            "mailbox-full",
            "counted (1 of 3 soft bounces in a row)",
        ),
        (
            "user3@example.org",
            "soft",
            "blocked",
            "none: a block of our sending, not of the reader (see status)",
        ),
    ];
    for (project, mailbox) in [(&verp, "bounces"), (&plain, "newsletter")] {
        let r = run(project
            .command()
            .args(["bounces", "--format", "json", "--maildir"])
            .arg(relay.maildir(mailbox)));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let got = verdicts(&r.stdout);
        assert_eq!(got.len(), 4, "{mailbox}: {}", r.stdout);
        for (rcpt, class, reason, action) in expected {
            let (c, why, issue, did) = &got[rcpt];
            assert_eq!(
                (c.as_str(), why.as_str(), issue.as_str(), did.as_str()),
                (class, reason, "2025-01", action),
                "{mailbox} {rcpt}: {}",
                r.stdout
            );
        }
        let status = project.status("2025-01");
        assert_eq!(status["bounces"]["hard"], 1, "{status}");
        assert_eq!(status["bounces"]["soft"], 2, "{status}");
        assert_eq!(status["bounces"]["blocked"], 1, "{status}");
    }

    // The next issue goes to everyone but user0: the relay never sees user0 again.
    let rcpts_before = servers.seen(Stage::Rcpt, "user0@example.org");
    assert_eq!(rcpts_before, 2);
    let r = run(verp.command().args(["send", "2025-02", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    wait_until("the second issue relayed", || {
        servers.count("user4@example.org") == 3
            && servers.count("user5@example.org") == 3
            && servers.seen(Stage::Rcpt, "user2@example.org") == 3
            && servers.seen(Stage::Rcpt, "user3@example.org") == 3
    });
    assert_eq!(
        servers.seen(Stage::Rcpt, "user0@example.org"),
        rcpts_before,
        "{}",
        relay.log()
    );
    // The second issue's soft bounces count on towards soft_limit (3).
    wait_until("the second issue's reports", || relay.waiting("bounces") == 3);
    let r = run(verp
        .command()
        .args(["bounces", "--format", "json", "--maildir"])
        .arg(relay.maildir("bounces")));
    let got = verdicts(&r.stdout);
    for rcpt in ["user1@example.org", "user2@example.org"] {
        assert_eq!(got[rcpt].2, "2025-02");
        assert_eq!(got[rcpt].3, "counted (2 of 3 soft bounces in a row)", "{}", r.stdout);
    }
}

/// Postfix's own delay warning: a reader's server greylists for longer than
/// delay_warning_time, Postfix tells the sender it is still trying, and `bounces` records it
/// without counting a bounce.
#[test]
fn a_delay_warning_from_postfix_counts_no_bounce() {
    needs!(tools::POSTFIX);
    let servers = ScriptServer::start(|stage, _, _| match stage {
        Stage::Rcpt => Reply::Code(451, "4.7.1 Greylisted, try again later"),
        _ => Reply::Ok,
    });
    // Retried every second or two, warned about after one, never given up on in the test.
    let relay = Postfix::start_with(
        servers.port,
        "maximal_queue_lifetime = 1d\ndelay_warning_time = 1s\nqueue_run_delay = 1s\nminimal_backoff_time = 2s\nmaximal_backoff_time = 2s\n",
    );
    let project = Project::new(relay.port, &csv(1), "bounces: { soft_limit: 1 }\n");
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while relay.waiting("newsletter") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no delay warning; Postfix's log:\n{}",
            relay.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = run(project
        .command()
        .args(["bounces", "--format", "json", "--maildir"])
        .arg(relay.maildir("newsletter")));
    let got = verdicts(&r.stdout);
    assert_eq!(
        got["user0@example.org"],
        (
            "soft".to_owned(),
            "delayed".to_owned(),
            "small".to_owned(),
            "none: a delay warning, the relay is still trying".to_owned()
        ),
        "{}",
        r.stdout
    );
    // soft_limit 1 would have suppressed a soft bounce at once.
    let r = run(project.command().args(["suppress", "list"]));
    assert!(!r.stdout.contains("user0@example.org"), "{}", r.stdout);
}

/// `kind: sendmail` into a running Postfix (its own `sendmail` and `postdrop`), which relays
/// to smtp-sink: every reader gets the issue once, with our DKIM signatures intact; Postfix
/// stopped halfway loses nothing (its `sendmail` leaves mail in the maildrop queue, which
/// Postfix takes up when it starts again).
#[test]
fn the_local_mta_s_sendmail_delivers_once_signed_and_loses_nothing_when_stopped() {
    needs!(tools::POSTFIX, tools::SMTP_SINK, tools::DKIMPY);
    let sink = support::Sink::start();
    let relay = Postfix::start(sink.port);
    let project = Project::new(1, &csv(120), "throttle: { rate: 40/s }\ndkim: { selector: rsa2026 }\n")
        .with_smtp("{ kind: sendmail, timeout: 20s }")
        .with_issues(&[("2025-03", scheduled_issue(None))]);
    let key = std::fs::read_to_string(support::root().join("tests/fixtures/dkim-test-rsa.pem")).unwrap();
    let send = project
        .std_command()
        .env("MAIL_CONFIG", relay.config_dir())
        .env("NEWSLETTER_DKIM_PRIVATE_KEY", &key)
        .args(["send", "2025-03", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Postfix goes down while the send runs, and comes back after it ended.
    wait_until("the first messages relayed", || sink.count() >= 20);
    relay.control("stop");
    let out = send.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sink.count() < 120, "the stop came too late to matter");
    relay.control("start");
    wait_until("every message relayed", || sink.count() >= 120);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let received = sink.received();
    assert_eq!(received.len(), 120, "{received:?}");
    // Ours went into Postfix's queue once each. A message Postfix's own smtp client was
    // handing to the sink when `postfix stop` killed it goes again after the start (its
    // delivery was not yet recorded): Postfix's at-least-once, a handful at most.
    let again: usize = received.values().map(|n| n - 1).sum();
    assert!(again <= 5, "{again} delivered again: {received:?}");
    let status = project.status("2025-03");
    assert_eq!(
        (&status["sent"], &status["failed"], &status["pending"]),
        (&120.into(), &0.into(), &0.into()),
        "{status}"
    );

    // The signatures survived Postfix: dkimpy verifies those of ten of them.
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<std::path::PathBuf> = sink
        .messages()
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, (_, dump))| {
            let path = dir.path().join(format!("{i}.eml"));
            std::fs::write(&path, support::as_received(dump)).unwrap();
            path
        })
        .collect();
    let records = run(project
        .command()
        .env("NEWSLETTER_DKIM_PRIVATE_KEY", &key)
        .args(["dkim", "--format", "json"]));
    assert_eq!(records.code, 0, "{}", records.stderr);
    let records: serde_json::Value = serde_json::from_str(&records.stdout).unwrap();
    let (ok, report) = support::dkimpy(dir.path(), &records, &files);
    assert!(ok, "{report}");
    assert_eq!(report.lines().filter(|l| l.contains("pass")).count(), 10, "{report}");
}
