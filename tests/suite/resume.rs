//! Exactly-once delivery under cron: kill -9 and re-run, locks, schedules, list changes,
//! suppression, Ctrl-C, a server down then up, and status. Real processes, real SQLite, real
//! SMTP servers.

use crate::support;
use crate::support::tools;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{Project, Reply, ScriptServer, Sink, Stage, csv, run, scheduled_issue, wait_until};

fn spawn(project: &Project, args: &[&str]) -> Child {
    project
        .std_command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_at_several_points_then_rerun_delivers_everyone_once_or_twice() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let n = 3000;
    let concurrency = 4;
    let project = Project::new(
        sink.port,
        &csv(n),
        &format!("throttle: {{ rate: 1500/s, concurrency: {concurrency} }}\n"),
    );
    let mut kills = 0;
    for received_before_kill in [300, 1200, 2100] {
        let mut child = spawn(&project, &["send", "small", "--yes", "-q"]);
        wait_until("messages to arrive", || sink.count() >= received_before_kill);
        child.kill().unwrap(); // SIGKILL: no chance to record anything more
        child.wait().unwrap();
        kills += 1;
    }
    let r = run(project.command().args(["send", "small", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let received = sink.received();
    let missing: Vec<usize> = (0..n)
        .filter(|i| !received.contains_key(&format!("user{i}@example.org")))
        .collect();
    assert!(missing.is_empty(), "never received: {missing:?}");
    assert!(received.values().all(|&c| c <= 2), "someone got it three times");
    let doubles = received.values().filter(|&&c| c == 2).count() as u64;
    let status = project.status("small");
    let reported = status["possibly_duplicated"].as_u64().unwrap();
    eprintln!("{kills} kills: {doubles} recipients got the issue twice; status reports {reported} possibly duplicated");
    assert!(doubles <= reported, "{doubles} doubles but status reports {reported}");
    assert!(
        reported <= (concurrency + 1) * kills,
        "{reported} possibly duplicated for {kills} kills at concurrency {concurrency} (one waits per run)"
    );
    assert_eq!(status["sent"].as_u64().unwrap(), n as u64);
    assert_eq!(status["state"], "complete");
}

#[test]
fn a_second_concurrent_run_exits_at_once() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(40), "throttle: { rate: 20/s }\n");
    let mut first = spawn(&project, &["send", "small", "--yes", "-q"]);
    wait_until("the first run to send", || sink.count() > 0);
    let started = Instant::now();
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(2), "it does not wait");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("another `newsletter send` is running"),
        "{}",
        r.stderr
    );
    // Cron's run meanwhile: the running send does the work; nothing printed, so cron mails no one.
    let r = run(project.command().arg("send"));
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    assert!(first.wait().unwrap().success());
    assert_eq!(sink.messages().len(), 40);
}

#[test]
fn a_lock_left_by_a_dead_process_does_not_block() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(200), "throttle: { rate: 50/s }\n");
    let mut holder = spawn(&project, &["send", "small", "--yes", "-q"]);
    wait_until("the run to hold the lock", || sink.count() > 0);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(project.dir.path().join("state/newsletter.lock").exists());
    let r = run(project
        .command()
        .args(["send", "small", "--yes", "-q"])
        .env("NEWSLETTER_THROTTLE_RATE", "off"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.received().len(), 200);
}

#[test]
fn cron_sends_what_is_due_once_and_nothing_else() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(5), "throttle: { rate: off }\n").with_issues(&[
        ("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z"))),
        ("2099-01", scheduled_issue(Some("2099-01-01T09:00:00Z"))),
        ("draft", scheduled_issue(None)),
    ]);
    let r = run(project.command().arg("send"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.messages().len(), 5, "the past issue only");
    let again = run(project.command().arg("send"));
    assert_eq!(
        (again.code, again.stdout.as_str(), again.stderr.as_str()),
        (0, "", ""),
        "nothing due: silent"
    );
    assert_eq!(sink.messages().len(), 5);

    let r = run(project.command().args(["status", "--format", "json"]));
    let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["issue"].as_str().unwrap(), i["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("2025-06", "complete"), ("2099-01", "scheduled"), ("draft", "draft")]
    );
}

#[test]
fn a_named_send_of_a_scheduled_issue_waits_for_its_time_unless_told_now() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(3), "throttle: { rate: off }\n")
        .with_issues(&[("2099-01", scheduled_issue(Some("2099-01-01T09:00:00Z")))]);
    let r = run(project.command().args(["send", "2099-01", "--yes"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("scheduled for 2099-01-01T09:00:00+00:00")
            && r.stderr.contains("cron's `newsletter send` sends it then")
            && r.stderr.contains("--now")
            && r.stderr.lines().count() == 1,
        "{}",
        r.stderr
    );
    assert_eq!(sink.messages().len(), 0, "nothing sent");
    // A dry run and a test send look at it as they always did.
    assert_eq!(
        run(project.command().args(["send", "2099-01", "--dry-run", "-q"])).code,
        0
    );
    let r = run(project.command().args(["send", "2099-01", "--yes", "--now"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.messages().len(), 3);
}

#[test]
fn cron_with_nothing_due_prints_nothing() {
    let project = Project::new(support::free_port(), &csv(3), "")
        .with_issues(&[("later", scheduled_issue(Some("2099-01-01T00:00:00Z")))]);
    let r = run(project.command().arg("send"));
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
}

#[test]
fn rows_added_removed_or_unsubscribed_between_runs() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(6), "throttle: { rate: off }\n");
    assert_eq!(run(project.command().args(["send", "small", "--yes", "-q"])).code, 0);
    // user0 removed, user1 unsubscribed, user2..5 kept, new1 and new2 added.
    project.write_csv(
        "email,first_name,status\nuser1@example.org,U1,unsubscribed\nuser2@example.org,U2,\nuser3@example.org,U3,\n\
         user4@example.org,U4,\nuser5@example.org,U5,\nnew1@example.org,N1,\nnew2@example.org,N2,\n",
    );
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Sent 2 of 2"), "{}", r.stdout);
    let received = sink.received();
    assert_eq!(received.len(), 8);
    assert!(received.values().all(|&c| c == 1), "{received:?}");
}

#[test]
fn suppressed_addresses_are_never_sent_and_dead_mailboxes_are_suppressed() {
    let server = ScriptServer::start(|stage, rcpt, _| match (stage, rcpt) {
        (Stage::Rcpt, "user4@example.org") => Reply::Code(
            550,
            "5.1.1 <user4@example.org>: Recipient address rejected: User unknown",
        ),
        _ => Reply::Ok,
    });
    let project = Project::new(server.port, &csv(6), "throttle: { rate: off }\n");
    let r = run(project
        .command()
        .args(["suppress", "add", "user0@example.org", "USER1@example.org"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let export = project.dir.path().join("unsubscribes.csv");
    std::fs::write(
        &export,
        "Email,Date\nuser2@example.org,2025-07-01\nnot an address,2025-07-02\n",
    )
    .unwrap();
    let r = run(project.command().arg("suppress").arg("import").arg(&export));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Imported 1 new address"), "{}", r.stdout);
    assert!(r.stderr.contains("unsubscribes.csv:3:"), "{}", r.stderr);

    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 1, "user4 failed: {}", r.stderr);
    assert_eq!(
        (
            server.count("user0@example.org"),
            server.count("user1@example.org"),
            server.count("user2@example.org")
        ),
        (0, 0, 0)
    );
    assert_eq!(
        (server.count("user3@example.org"), server.count("user5@example.org")),
        (1, 1)
    );

    let list = run(project.command().args(["suppress", "list", "--format", "json"]));
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let user4 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["email"] == "user4@example.org")
        .expect("auto-suppressed");
    assert!(user4["reason"].as_str().unwrap().contains("5.1.1"));
    assert_eq!(list.as_array().unwrap().len(), 4);
    // A website's unsubscribe export is the readers' own unsubscribes; the operator's own
    // list says so with --as suppressions.
    let kind = |email: &str| {
        let list = run(project.command().args(["suppress", "list", "--format", "json"]));
        let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
        let row = list.as_array().unwrap().iter().find(|s| s["email"] == email).cloned();
        row.map(|r| r["kind"].as_str().unwrap().to_owned())
    };
    assert_eq!(kind("user2@example.org").as_deref(), Some("unsubscribed"));
    std::fs::write(&export, "email\nuser2@example.org\n").unwrap();
    let r = run(project
        .command()
        .args(["suppress", "import", "--as", "suppressions"])
        .arg(&export));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(kind("user2@example.org").as_deref(), Some("suppressed"));

    let r = run(project.command().args(["suppress", "remove", "user0@example.org"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(project.command().args(["send", "small", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.count("user0@example.org"), 1);
    assert_eq!(
        server.seen(Stage::Rcpt, "user4@example.org"),
        1,
        "neither failed nor suppressed addresses are retried"
    );
}

#[test]
fn ctrl_c_finishes_in_flight_messages_and_the_next_run_resumes() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(100), "throttle: { rate: 25/s, concurrency: 4 }\n");
    let child = spawn(&project, &["send", "small", "--yes"]);
    wait_until("some messages", || sink.count() >= 10);
    let kill = std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Interrupted: in-flight messages finished and were recorded; run the same command again to resume."
        ),
        "{stderr}"
    );
    let before = sink.messages().len();
    assert!(before < 100);
    assert_eq!(
        project.status("small")["sent"].as_u64().unwrap(),
        before as u64,
        "every accepted message was recorded"
    );

    let r = run(project
        .command()
        .args(["send", "small", "--yes", "-q"])
        .env("NEWSLETTER_THROTTLE_RATE", "off"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let received = sink.received();
    assert_eq!(received.len(), 100);
    assert!(received.values().all(|&c| c == 1), "no duplicates after Ctrl-C");
    assert_eq!(project.status("small")["possibly_duplicated"], 0);
}

#[test]
fn a_server_down_on_the_first_run_and_up_on_the_second() {
    needs!(tools::SMTP_SINK);
    let port = support::free_port();
    let project = Project::new(port, &csv(20), "throttle: { rate: off }\n");
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot connect"), "{}", r.stderr);
    let sink = Sink::start_on(port);
    let r = run(project.command().args(["send", "small", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.received().len(), 20);
}

#[test]
fn status_shows_counts_failures_and_json() {
    let server = ScriptServer::start(|stage, rcpt, _| match (stage, rcpt) {
        (Stage::Dot, "user1@example.org") => Reply::Code(554, "5.7.1 Message rejected"),
        (Stage::Rcpt, "user2@example.org") => Reply::Code(451, "4.7.1 Greylisted, try later"),
        _ => Reply::Ok,
    });
    let project = Project::new(
        server.port,
        &csv(5),
        "throttle: { rate: off, retries: 1, retry_delay: 10ms }\n",
    );
    let r = run(project.command().args(["send", "small", "--yes", "-q"]));
    assert_eq!(r.code, 1, "{}", r.stderr);

    let status = project.status("small");
    assert_eq!(status["sent"], 3);
    assert_eq!(status["failed"], 1);
    assert_eq!(status["deferred"], 1);
    assert_eq!(
        status["state"], "sending",
        "a deferred recipient is left for the next run"
    );
    assert!(status["achieved_rate"].as_f64().unwrap() > 0.0);

    let r = run(project.command().args(["status", "small"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for expected in [
        "sent                 3",
        "failed               1",
        "deferred             1",
        "pending              1",
        "last errors:",
    ] {
        assert!(r.stdout.contains(expected), "missing {expected:?} in\n{}", r.stdout);
    }
    let r = run(project.command().args(["status", "small", "--failed"]));
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("user1@example.org\tline 3\tFailed\t1 attempts\tpermanent error (554): 5.7.1 Message rejected"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "user2@example.org\tline 4\tDeferred\t2 attempts\ttransient error (451): 4.7.1 Greylisted, try later"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn unsubscribe_url_is_signed_for_the_address() {
    let project = Project::new(support::free_port(), &csv(1), "");
    let r = run(project
        .command()
        .args(["unsubscribe-url", "Alice@Example.org", "--issue", "2025-07"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let token = r.stdout.trim().split("token=").nth(1).unwrap();
    assert!(!token.contains("alice") && !token.contains("YWxpY2"), "opaque: {token}");
    let secret = newsletter::unsubscribe::Secret::new(support::SECRET);
    let claim = secret.verify(token).unwrap();
    assert_eq!(
        (claim.email.as_str(), claim.issue.as_deref()),
        ("alice@example.org", Some("2025-07"))
    );
}

#[test]
fn a_recipient_failing_temporarily_run_after_run_is_given_up() {
    let server = ScriptServer::start(|stage, rcpt, _| match (stage, rcpt) {
        (Stage::Rcpt, "user1@example.org") => Reply::Code(451, "4.2.0 Mailbox busy"),
        _ => Reply::Ok,
    });
    let project = Project::new(
        server.port,
        &csv(3),
        "throttle: { rate: off, retries: 0, max_attempts: 2 }\n",
    )
    .with_issues(&[("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z")))]);
    for attempt in 1..=2 {
        let r = run(project.command().arg("send"));
        assert_eq!(r.code, 1, "run {attempt}: {}", r.stderr);
        assert_eq!(project.status("2025-06")["state"], "sending", "cron will try again");
    }
    let r = run(project.command().arg("send"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("gave up on 1 recipient(s) still failing temporarily after 2 attempts"),
        "{}",
        r.stderr
    );
    let status = project.status("2025-06");
    assert_eq!(
        (
            status["state"].as_str(),
            status["sent"].as_u64(),
            status["failed"].as_u64()
        ),
        (Some("complete"), Some(2), Some(1))
    );
    assert_eq!(server.seen(Stage::Rcpt, "user1@example.org"), 2);
    let quiet = run(project.command().arg("send"));
    assert_eq!((quiet.code, quiet.stdout.as_str(), quiet.stderr.as_str()), (0, "", ""));
}

/// A relay refusing the sender (5xx to MAIL FROM) or every message (5xx to DATA or to the
/// final dot), then the same ledger pointed at a working server: everyone gets it once.
#[test]
fn a_relay_that_refuses_every_message_leaves_everyone_pending_for_the_next_run() {
    needs!(tools::SMTP_SINK);
    for fault in [["-f", "MAIL"], ["-f", "DATA"], ["-f", "."]] {
        let port = support::free_port();
        let refusing = Sink::start_with(port, &fault);
        let project = Project::new(port, &csv(40), "throttle: { rate: off, concurrency: 4 }\n");
        let r = run(project.command().args(["send", "small", "--yes"]));
        assert_eq!(r.code, 2, "{fault:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        let expected = if fault[1] == "MAIL" {
            "the relay refused the sender"
        } else {
            "the relay gave 3 different recipients in a row the same refusal"
        };
        assert!(r.stderr.contains(expected), "{fault:?}: {}", r.stderr);
        assert!(r.stderr.contains("stay pending"), "{}", r.stderr);
        // (smtp-sink may keep a dump of a message it then refused: it was not delivered.)
        let status = project.status("small");
        assert_eq!(status["failed"], 0, "{fault:?}: {status}");
        assert_eq!(status["sent"], 0, "{status}");
        drop(refusing);

        // The relay fixed: the same ledger, a working server on the same port.
        let sink = Sink::start_on(port);
        let r = run(project.command().args(["send", "small", "--yes"]));
        assert_eq!(r.code, 0, "{fault:?}: {}", r.stderr);
        let received = sink.received();
        assert_eq!(received.len(), 40, "{fault:?}");
        assert!(received.values().all(|n| *n == 1), "{fault:?}: {received:?}");
        assert_eq!(project.status("small")["sent"], 40);
    }
}

#[test]
fn retry_failed_gives_permanent_failures_one_more_attempt() {
    let server = ScriptServer::start(|stage, rcpt, _| match (stage, rcpt) {
        (Stage::Rcpt, "user1@example.org") => Reply::Code(550, "5.7.1 Sender not allowed to this recipient"),
        (Stage::Rcpt, "user3@example.org") => Reply::Code(550, "5.1.1 Mailbox does not exist"),
        _ => Reply::Ok,
    });
    let project = Project::new(server.port, &csv(5), "throttle: { rate: off, concurrency: 1 }\n");
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(project.status("small")["failed"], 2);
    // Without the flag nothing more happens; with it, user1 is tried again (user3 was
    // suppressed as a dead mailbox and stays out).
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.seen(Stage::Rcpt, "user1@example.org"), 1);
    let r = run(project.command().args(["send", "small", "--yes", "--retry-failed"]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(server.seen(Stage::Rcpt, "user1@example.org"), 2);
    assert_eq!(server.seen(Stage::Rcpt, "user3@example.org"), 1);
    for i in [0, 2, 4] {
        assert_eq!(server.count(&format!("user{i}@example.org")), 1, "user{i}");
    }
    let r = run(project.command().args(["send", "--retry-failed", "--yes"]));
    assert_eq!(r.code, 2, "needs an issue: {}", r.stderr);
}

#[test]
fn cron_refuses_an_unreadable_send_at_and_names_each_issue_it_sends() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(2), "throttle: { rate: off }\n").with_issues(&[
        ("2025-05", scheduled_issue(Some("2025-05-01T09:00:00Z"))),
        ("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z"))),
        ("2025-07", scheduled_issue(Some("2025-07-01 09:00"))),
    ]);
    let r = run(project.command().arg("send"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("2025-07.md:2:"), "file and line: {}", r.stderr);
    assert!(
        r.stderr
            .contains("RFC 3339 with a time zone, e.g. 2025-08-01T15:00:00Z"),
        "{}",
        r.stderr
    );
    assert_eq!(sink.count(), 0, "nothing sent while an issue cannot be read");
    let status = run(project.command().arg("status"));
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("2025-07") && l.contains("error") && l.contains("RFC 3339")),
        "{}",
        status.stdout
    );

    let fixed = scheduled_issue(Some("2099-07-01T09:00:00Z"));
    std::fs::write(project.dir.path().join("newsletters/2025-07.md"), fixed).unwrap();
    let r = run(project.command().arg("send"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines[0].starts_with("2025-05: Sent 2 of 2"), "{}", r.stdout);
    assert!(lines[1].starts_with("2025-06: Sent 2 of 2"), "{}", r.stdout);
}

#[test]
fn status_tells_partial_sends_and_says_when_nobody_failed() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(5), "throttle: { rate: off }\n");
    let two = project.dir.path().join("two.csv");
    std::fs::write(&two, csv(2)).unwrap();
    let r = run(project
        .command()
        .args(["send", "small", "--yes", "--recipients"])
        .arg(&two));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let detail = run(project.command().args(["status", "small"]));
    assert!(
        detail
            .stdout
            .starts_with("small: Small issue for {{first_name}} (partial)"),
        "{}",
        detail.stdout
    );
    assert!(detail.stdout.contains("3 reader(s) of"), "{}", detail.stdout);
    let failed = run(project.command().args(["status", "small", "--failed"]));
    assert_eq!(
        failed.stdout.trim(),
        "Nobody failed: every recipient of small in the ledger was sent it (2 sent)."
    );
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let detail = run(project.command().args(["status", "small"]));
    assert!(detail.stdout.contains("(complete)"), "{}", detail.stdout);
}

#[test]
fn status_says_running_while_a_send_holds_the_lock() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(40), "throttle: { rate: 20/s }\n");
    // An earlier run completed the issue for a smaller list; this one runs now.
    let two = project.dir.path().join("two.csv");
    std::fs::write(&two, csv(2)).unwrap();
    assert_eq!(
        run(project
            .command()
            .args(["send", "small", "--yes", "--recipients"])
            .arg(&two))
        .code,
        0
    );
    let mut child = spawn(&project, &["send", "small", "--yes"]);
    wait_until("the send to start", || sink.count() >= 4);
    let state = || {
        let r = run(project.command().args(["status", "--format", "json"]));
        let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let small = list
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["issue"] == "small")
            .unwrap()
            .clone();
        small["state"].as_str().unwrap().to_owned()
    };
    assert_eq!(state(), "running");
    assert!(child.wait().unwrap().success());
    assert_eq!(state(), "complete");
}

/// A ledger written by the first release (its schema and rows, from
/// tests/fixtures/ledger-release-0.sql) is upgraded in place and the send resumes from it.
#[test]
fn a_ledger_from_the_first_release_upgrades_and_resumes() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(6), "throttle: { rate: off }\n");
    let db = project.write_release_0_ledger();
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // user0 and user1 had it, user2 failed for good, user3 is suppressed: two new messages.
    let mut received: Vec<String> = sink.received().into_keys().collect();
    received.sort();
    assert_eq!(received, ["user4@example.org", "user5@example.org"]);
    let status = project.status("small");
    assert_eq!(
        (status["sent"].as_u64(), status["failed"].as_u64()),
        (Some(4), Some(1)),
        "{status}"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version as usize, newsletter::ledger::schema::current_version());
}

fn countries(n: usize) -> String {
    let mut s = String::from("email,first_name,country\n");
    for i in 0..n {
        let country = ["KE", "NG", "DE"][i % 3];
        s.push_str(&format!("user{i}@example.org,User{i},{country}\n"));
    }
    s
}

#[test]
fn limit_and_where_send_part_of_the_list_and_a_full_send_the_rest_once() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &countries(12), "throttle: { rate: off }\n");
    let r = run(project.command().args(["send", "small", "--yes", "--limit", "3"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count(), 3);
    let r = run(project
        .command()
        .args(["send", "small", "--yes", "--where", "country=ke"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // KE are user0, 3, 6, 9; user0 had it already.
    assert_eq!(sink.count(), 6);
    let detail = run(project.command().args(["status", "small"]));
    assert!(
        detail.stdout.contains("(sending)"),
        "not complete after parts: {}",
        detail.stdout
    );
    let dry = run(project.command().args([
        "send",
        "small",
        "--dry-run",
        "--where",
        "country=NG",
        "--where",
        "country=DE",
        "--limit",
        "2",
    ]));
    assert!(
        dry.stdout
            .contains("Selection:       country=NG|DE; limit 2: 4 outside the segment, 4 held back by --limit"),
        "{}",
        dry.stdout
    );
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let received = sink.received();
    assert_eq!(received.len(), 12);
    assert!(received.values().all(|n| *n == 1), "{received:?}");
    assert_eq!(project.status("small")["state"], "complete");

    let r = run(project
        .command()
        .args(["send", "small", "--yes", "--where", "contry=KE"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("the segment names column `contry`, which the list does not have"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did you mean `country`?"), "{}", r.stderr);
}

#[test]
fn a_segment_in_the_front_matter_is_the_issue_s_audience() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let issue =
        scheduled_issue(Some("2025-06-01T09:00:00Z")).replacen("---\n", "---\nsegment:\n  country: [KE, NG]\n", 1);
    let project = Project::new(sink.port, &countries(9), "throttle: { rate: off }\n").with_issues(&[("africa", issue)]);
    let r = run(project.command().arg("send"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count(), 6, "KE and NG only");
    assert_eq!(project.status("africa")["state"], "complete");
    assert_eq!(project.status("africa")["pending"], 0);
}

#[test]
fn resuming_after_the_file_changed_warns_that_readers_get_two_texts() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project =
        Project::new(sink.port, &csv(6), "throttle: { rate: off }\n").with_issues(&[("june", scheduled_issue(None))]);
    let r = run(project.command().args(["send", "june", "--yes", "--limit", "2"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("changed"), "{}", r.stderr);
    let file = project.dir.path().join("newsletters/june.md");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("this is the lead", "this is the new lead");
    std::fs::write(&file, text).unwrap();
    let r = run(project.command().args(["send", "june", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("warning: june: the issue has changed since its send started")
            && r.stderr
                .contains("2 reader(s) got the earlier text, the 4 left get this one"),
        "{}",
        r.stderr
    );
}

/// The README's crontab line, run as cron runs it: `sh -c`, an empty environment, a short PATH.
#[test]
fn the_readme_crontab_line_works_in_cron_s_environment() {
    needs!(tools::SMTP_SINK);
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("*/5 * * * * "))
        .expect("a crontab line in the README");
    let command = line.splitn(6, ' ').nth(5).unwrap();
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(3), "throttle: { rate: off }\n")
        .with_issues(&[("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z")))]);
    std::fs::write(
        project.dir.path().join("secrets.env"),
        format!("NEWSLETTER_UNSUBSCRIBE_SECRET={}\n", support::SECRET),
    )
    .unwrap();
    let command = command
        .replace("/srv/newsletter", &project.dir.path().display().to_string())
        .replace(
            "/usr/local/bin/newsletter",
            &assert_cmd::cargo::cargo_bin("newsletter").display().to_string(),
        );
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SHELL", "/bin/sh")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sink.count(), 3);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("2025-06: Sent 3 of 3"));
}

/// The README's "Try it on this machine", run as written: both of its shell blocks in one
/// shell, in a scratch copy of the clone, with free ports and a scratch sink folder.
#[test]
fn the_readme_local_recipe_works_as_written() {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let section = readme
        .split("## Try it on this machine")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the section in the README");
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2, "{section}");
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("sink");
    let copy = |from: &str| {
        let to = dir.path().join(from);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(support::root().join(from), to).unwrap();
    };
    copy("recipients.example.csv");
    copy("newsletters/2025-07.md");
    let (smtp, http) = (support::free_port(), support::free_port());
    let script = format!("set -e\n{}{}", blocks[0], blocks[1])
        .replace("/tmp/newsletter-sink", &sink.display().to_string())
        .replace("2525", &smtp.to_string())
        .replace("8026", &http.to_string());
    let bin = assert_cmd::cargo::cargo_bin("newsletter");
    // Output to files and a process group of its own: the sink and the server the recipe
    // leaves running are stopped with the group once the shell is done.
    use std::os::unix::process::CommandExt;
    let (out_file, err_file) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut shell = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/bin", bin.parent().unwrap().display()),
        )
        .env("HOME", dir.path())
        // The recipe's serve listens on the default port, here a free one.
        .env("NEWSLETTER_SERVE_LISTEN", format!("127.0.0.1:{http}"))
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let status = shell.wait().unwrap();
    let _ = std::process::Command::new("kill")
        .arg("--")
        .arg(format!("-{}", shell.id()))
        .status();
    let stdout = std::fs::read_to_string(&out_file).unwrap();
    let stderr = std::fs::read_to_string(&err_file).unwrap();
    assert!(status.success(), "{script}\n{stdout}\n{stderr}");
    assert_eq!(
        std::fs::read_dir(&sink).unwrap().count(),
        3,
        "the test and two readers: {stdout}"
    );
    assert!(stdout.contains("2025-07: Sent 2 of 2"), "{stdout}");
    assert!(stdout.contains("alice@example.org\t"), "unsubscribed: {stdout}");
}
