//! The return path after a real send: reports (DSNs, a complaint, a mailto unsubscribe, a
//! stranger's bounce, a block) read from the bounce mailbox suppress the right readers once, a
//! running send skips them, delay warnings count no bounce, and a dry run changes nothing.

use crate::support;
use crate::support::tools;
use std::path::Path;
use support::{Project, Sink, arf, csv, header, maildir, mailto_in_message, run, scheduled_issue, wait_until};

const VERP: &str = "bounces+{token}@lists.example.org";

/// A reader writing to the address bounces come to (it may be the From address).
pub(crate) const PERSON: &str = "From: Reader <reader@example.net>\nTo: newsletter@openinfra.dev\nSubject: Re: Inside Open Infrastructure\nMessage-ID: <p1@example.net>\n\nThanks! A question about Zuul: is the talk recorded?\n";

/// Per recipient: the envelope sender and Message-ID of the message of `issue` the sink
/// received (our Message-IDs start with the issue).
pub(crate) fn sent(sink: &Sink, issue: &str) -> std::collections::HashMap<String, (String, String)> {
    let prefix = format!("<{issue}.");
    sink.messages()
        .into_iter()
        .filter(|(_, text)| header(text, "Message-ID").is_some_and(|id| id.starts_with(&prefix)))
        .map(|(rcpts, text)| {
            let from = header(&text, "X-Mail-Args").unwrap().trim_start_matches('<');
            let from = from.split('>').next().unwrap().to_owned();
            (
                rcpts[0].clone(),
                (from, header(&text, "Message-ID").unwrap().to_owned()),
            )
        })
        .collect()
}

/// A delivery status notification as a relay sends it, delivered to `to`.
pub(crate) fn dsn(
    id: &str,
    to: &str,
    final_recipient: &str,
    status: &str,
    diagnostic: &str,
    returned_id: &str,
) -> String {
    format!(
        "Return-Path: <>\nDelivered-To: {to}\nFrom: MAILER-DAEMON@relay.example.net (Mail Delivery System)\nTo: {to}\nSubject: Undelivered Mail Returned to Sender\nMessage-ID: <{id}@relay.example.net>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example.net\n\nFinal-Recipient: rfc822; {final_recipient}\nAction: failed\nStatus: {status}\nDiagnostic-Code: smtp; {diagnostic}\n\n--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: {returned_id}\nList-Id: Inside Open Infrastructure <newsletter.openinfra.dev>\nSubject: Small issue\n\n--B--\n"
    )
}

/// Each message of a maildir as Python's `mailbox.Maildir` reads it: (sub-folder, flags).
fn python_maildir(dir: &Path) -> Vec<(String, String)> {
    let script = "import mailbox, sys\nbox = mailbox.Maildir(sys.argv[1], create=False)\nfor key in box.keys():\n    m = box.get_message(key)\n    print(m.get_subdir(), m.get_flags())\n";
    let out = std::process::Command::new(tools::program(&tools::PYTHON3))
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (sub, flags) = l.split_once(' ').unwrap_or((l, ""));
            (sub.to_owned(), flags.to_owned())
        })
        .collect()
}

pub(crate) fn json(out: &str) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn reports_suppress_once_and_the_next_send_skips_them() {
    needs!(tools::SMTP_SINK, tools::PYTHON3);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(6),
        &format!("bounces: {{ return_path: \"{VERP}\", soft_limit: 2 }}\nunsubscribe: {{ url: \"https://openinfra.dev/u\", mailto: unsub@lists.example.org }}\n"),
    )
    .with_issues(&[("2025-01", scheduled_issue(None)), ("2025-02", scheduled_issue(None))]);
    let r = run(project.command().args(["send", "2025-01", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = sent(&sink, "2025-01");
    assert_eq!(first.len(), 6);
    // VERP: every recipient has their own envelope sender.
    for (rcpt, (from, _)) in &first {
        assert!(
            from.starts_with("bounces+2025-01.") && from.ends_with("@lists.example.org"),
            "{rcpt}: {from}"
        );
        assert!(from.split('@').next().unwrap().len() <= 64);
    }
    let envelope = |i: usize| first[&format!("user{i}@example.org")].0.clone();
    let message_id = |i: usize| first[&format!("user{i}@example.org")].1.clone();
    let md = project.dir.path().join("bounces");
    let reports = [
        // Through VERP, although the relay names an address it rewrote.
        ("1.hard", dsn("h1", &envelope(0), "forwarded@elsewhere.example", "5.1.1", "550 5.1.1 User unknown", "<other@x>")),
        ("2.complaint", arf("c1", "user1@example.org", &message_id(1))),
        ("3.soft", dsn("s1", &envelope(2), "user2@example.org", "5.2.2", "552 5.2.2 Mailbox full", &message_id(2))),
        // The reader's client uses the message's mailto: the token is in the subject.
        (
            "4.mailto",
            format!(
                "From: user3@example.org\nTo: unsub@lists.example.org\nSubject: {}\nMessage-ID: <u3@example.org>\n\nplease\n",
                mailto_in_message(&sink, "user3@example.org", Some("2025-01")).1
            ),
        ),
        ("5.stranger", dsn("x1", "newsletter@openinfra.dev", "stranger@nowhere.example", "5.1.1", "550 5.1.1 no such user", "<not-ours@x>")),
        ("6.blocked", dsn("b1", &envelope(4), "user4@example.org", "5.7.1", "554 5.7.1 Service unavailable; client host blocked using Spamhaus", &message_id(4))),
        (
            "7.vacation",
            "From: user5@example.org\nTo: newsletter@openinfra.dev\nSubject: Out of office\nAuto-Submitted: auto-replied\nMessage-ID: <v5@example.org>\n\nAway.\n".to_owned(),
        ),
        ("8.person", PERSON.to_owned()),
    ];
    let reports: Vec<(&str, String)> = reports.iter().map(|(n, t)| (*n, t.clone())).collect();
    maildir(&md, &reports);

    // A dry run says what would happen and changes nothing.
    let r = run(project
        .command()
        .args(["bounces", "--dry-run", "--format", "json", "--maildir"])
        .arg(&md));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let verdicts = json(&r.stdout);
    let find = |file: &str| {
        verdicts
            .iter()
            .find(|v| v["file"] == file)
            .unwrap_or_else(|| panic!("{file}: {}", r.stdout))
            .clone()
    };
    assert_eq!(find("1.hard")["recipient"], "user0@example.org");
    assert_eq!(find("1.hard")["class"], "hard");
    assert_eq!(find("1.hard")["status"], "5.1.1");
    assert_eq!(find("1.hard")["issue"], "2025-01");
    assert_eq!(find("1.hard")["action"], "would suppress (bounce)");
    assert_eq!(find("2.complaint")["class"], "complaint");
    assert_eq!(find("3.soft")["class"], "soft");
    assert_eq!(find("5.stranger")["recipient"], "stranger@nowhere.example");
    assert_eq!(find("5.stranger")["action"], "none: not a recipient of ours");
    assert_eq!(find("6.blocked")["class"], "soft");
    assert_eq!(find("7.vacation")["class"], "ignore");
    assert!(verdicts.iter().all(|v| v["file"] != "8.person"), "{}", r.stdout);
    assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 8);
    assert_eq!(project.status("2025-01")["bounces"]["hard"], 0);

    // The real run acts, moves each message to cur/, the reports as seen.
    let r = run(project.command().args(["bounces", "--maildir"]).arg(&md));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("8 message(s) read"), "{}", r.stdout);
    assert!(
        r.stdout.contains("; 1 message(s) that are no report left unread"),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 0);
    let cur: Vec<String> = std::fs::read_dir(md.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cur.len(), 8);
    assert!(cur.iter().all(|n| n.ends_with(":2,S") || n == "8.person:2,"), "{cur:?}");
    // As a mail client reads the maildir (Python's mailbox module): all read, all seen.
    let seen = python_maildir(&md);
    assert_eq!(seen.len(), 8);
    assert!(seen.iter().all(|(sub, _)| sub == "cur"), "{seen:?}");
    assert_eq!(seen.iter().filter(|(_, flags)| flags == "S").count(), 7, "{seen:?}");
    let suppressed = || {
        let r = run(project.command().args(["suppress", "list", "--format", "json"]));
        serde_json::from_str::<serde_json::Value>(&r.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["email"].as_str().unwrap().to_owned(),
                    s["source"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let expected: std::collections::BTreeMap<String, String> =
        [("user0", "bounce"), ("user1", "complaint"), ("user3", "mailto")]
            .into_iter()
            .map(|(u, s)| (format!("{u}@example.org"), s.to_owned()))
            .collect();
    assert_eq!(suppressed(), expected);

    // The same reports again (a second copy, a restored backup): nothing changes.
    maildir(&md, &reports);
    let r = run(project
        .command()
        .args(["bounces", "--format", "json", "--maildir"])
        .arg(&md));
    assert!(
        json(&r.stdout)
            .iter()
            .all(|v| v["action"] == "none: handled by an earlier run" || v["file"] == "4.mailto"),
        "{}",
        r.stdout
    );
    assert_eq!(suppressed(), expected);
    let status = project.status("2025-01");
    assert_eq!(status["bounces"]["hard"], 1);
    assert_eq!(status["bounces"]["soft"], 1);
    assert_eq!(status["bounces"]["complaints"], 1);
    assert_eq!(status["bounces"]["blocked"], 1);
    let warnings = status["warnings"].to_string();
    assert!(warnings.contains("bounce rate 33.33% is over 5%"), "{warnings}");
    assert!(warnings.contains("complaint rate 16.667% is over 0.1%"), "{warnings}");
    assert!(warnings.contains("refused the message as from us"), "{warnings}");
    let r = run(project.command().arg("status"));
    assert!(r.stdout.contains("bounced 33.3%  complaints 16.67%"), "{}", r.stdout);
    let r = run(project.command().args(["status", "--bounces"]));
    assert!(
        r.stdout.contains("user0@example.org") && r.stdout.contains("(not ours)"),
        "{}",
        r.stdout
    );
    // The mailto unsubscribe is an event too, and its suppression names it.
    assert!(
        r.stdout.contains("user3@example.org\tignore unsubscribe-request") && r.stdout.contains("suppressed (mailto)"),
        "{}",
        r.stdout
    );

    // The next issue skips the three; a second soft bounce in a row (soft_limit 2) suppresses.
    let before = sink.count();
    let r = run(project.command().args(["send", "2025-02", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count() - before, 3);
    let user2 = sent(&sink, "2025-02")["user2@example.org"].0.clone();
    assert!(user2.starts_with("bounces+2025-02."), "{user2}");
    maildir(
        &md,
        &[(
            "8.soft",
            dsn(
                "s2",
                &user2,
                "user2@example.org",
                "4.4.7",
                "Message expired in queue",
                "<x@y>",
            ),
        )],
    );
    let r = run(project.command().args(["bounces", "--maildir"]).arg(&md));
    assert!(
        r.stdout
            .contains("user2@example.org (expired 4.4.7): suppressed (soft bounces on 2 issues in a row)"),
        "{}",
        r.stdout
    );
    assert_eq!(suppressed()["user2@example.org"], "soft-limit");
}

/// `bounces` from cron while a long send runs: neither waits for the other (each has its own
/// lock on the one ledger), and the send skips the readers suppressed meanwhile.
#[test]
fn a_running_send_skips_readers_that_bounce_while_it_runs() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(400),
        "throttle: { rate: 100/s }\nbounces: { mass_guard: 100000 }\n",
    )
    .with_issues(&[("2025-01", scheduled_issue(None)), ("2025-02", scheduled_issue(None))]);
    let r = run(project.command().args(["send", "2025-01", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = sent(&sink, "2025-01");
    // The last hundred readers' January messages bounce.
    let reports: Vec<(String, String)> = (300..400)
        .map(|i| {
            let rcpt = format!("user{i}@example.org");
            let text = dsn(
                &format!("h{i}"),
                "newsletter@openinfra.dev",
                &rcpt,
                "5.1.1",
                "550 5.1.1 no such user",
                &first[&rcpt].1,
            );
            (format!("{i}.hard"), text)
        })
        .collect();
    let md = project.dir.path().join("bounces");
    maildir(
        &md,
        &reports.iter().map(|(n, t)| (n.as_str(), t.clone())).collect::<Vec<_>>(),
    );
    let send = project
        .std_command()
        .args(["send", "2025-02", "--yes", "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the second issue under way", || sink.count() >= 405);
    let r = run(project.command().args(["bounces", "--maildir"]).arg(&md));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("100 address(es) suppressed"), "{}", r.stdout);
    let done = send.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let february: Vec<String> = sent(&sink, "2025-02").into_keys().collect();
    assert_eq!(february.len(), 300);
    // Each of them once: 400 messages of January, 300 of February.
    assert_eq!(sink.count(), 700);
    assert!(
        february.iter().all(|r| r
            .trim_start_matches("user")
            .split('@')
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            < 300),
        "a reader suppressed during the run got the issue"
    );
}

/// A delay warning is no bounce: it never counts towards soft_limit and `status` shows it
/// apart; the failures that may follow do count.
#[test]
fn delay_warnings_count_no_bounce() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(1), "bounces: { soft_limit: 2 }\n")
        .with_issues(&[("2025-01", scheduled_issue(None)), ("2025-02", scheduled_issue(None))]);
    for issue in ["2025-01", "2025-02"] {
        let r = run(project.command().args(["send", issue, "--yes"]));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let rcpt = "user0@example.org";
    let id_of = |issue: &str| sent(&sink, issue)[rcpt].1.clone();
    let delay = |id: &str, issue: &str| {
        dsn(
            id,
            "newsletter@openinfra.dev",
            rcpt,
            "4.4.1",
            "connect to mx.example.org: Connection timed out",
            &id_of(issue),
        )
        .replace("Action: failed", "Action: delayed")
        .replace(
            "Undelivered Mail Returned to Sender",
            "Delayed Mail (still being retried)",
        )
    };
    let expired = |id: &str, issue: &str| {
        dsn(
            id,
            "newsletter@openinfra.dev",
            rcpt,
            "4.4.7",
            "delivery time expired",
            &id_of(issue),
        )
    };
    let md = project.dir.path().join("bounces");
    maildir(
        &md,
        &[("1.delay", delay("d1", "2025-01")), ("2.delay", delay("d2", "2025-02"))],
    );
    let r = run(project.command().args(["bounces", "--dry-run", "--maildir"]).arg(&md));
    assert!(
        r.stdout
            .contains("0 hard, 0 soft, 0 complaint(s), 0 ignored, 2 delay warning(s); 0 address(es)"),
        "{}",
        r.stdout
    );
    let r = run(project
        .command()
        .args(["bounces", "--format", "json", "--maildir"])
        .arg(&md));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let delays = json(&r.stdout);
    assert_eq!(delays.len(), 2, "{}", r.stdout);
    for v in &delays {
        assert_eq!(v["class"], "soft");
        assert_eq!(v["reason"], "delayed");
        assert_eq!(v["action"], "none: a delay warning, the relay is still trying");
    }
    let status = project.status("2025-01");
    assert_eq!(status["bounces"]["soft"], 0, "{status}");
    assert_eq!(status["bounces"]["delayed"], 1, "{status}");
    assert!(!status["warnings"].to_string().contains("bounce rate"), "{status}");
    let r = run(project.command().args(["status", "2025-01"]));
    assert!(
        r.stdout.contains("delay warnings       1 (not bounces)"),
        "{}",
        r.stdout
    );

    // Both messages expire after all: two soft bounces in a row suppress.
    maildir(
        &md,
        &[
            ("3.expired", expired("e1", "2025-01")),
            ("4.expired", expired("e2", "2025-02")),
        ],
    );
    let r = run(project
        .command()
        .args(["bounces", "--format", "json", "--maildir"])
        .arg(&md));
    let failures = json(&r.stdout);
    assert_eq!(
        failures[0]["action"], "counted (1 of 2 soft bounces in a row)",
        "{}",
        r.stdout
    );
    assert_eq!(
        failures[1]["action"], "suppressed (soft bounces on 2 issues in a row)",
        "{}",
        r.stdout
    );
}

#[test]
fn a_dry_run_leaves_an_old_ledger_as_it_was() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(1), "");
    let db = project.write_release_0_ledger();
    let md = project.dir.path().join("bounces");
    maildir(
        &md,
        &[(
            "1",
            dsn(
                "o1",
                "newsletter@openinfra.dev",
                "a@example.org",
                "5.1.1",
                "550 5.1.1 unknown",
                "<x@y>",
            ),
        )],
    );
    let r = run(project
        .command()
        .args(["bounces", "--dry-run", "--format", "json", "--maildir"])
        .arg(&md));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("does not upgrade it"), "{}", r.stderr);
    assert_eq!(json(&r.stdout)[0]["class"], "hard");
    let version: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 0);
    assert!(!project.dir.path().join("state/newsletter.bounces.lock").exists());
}
