//! `newsletter status` after real sends: counts, failures and JSON, an interrupted send to
//! another list and what cron will do with it, a run that holds the lock.

use crate::resume::spawn;
use crate::support;
use crate::support::tools;
use support::{Project, Reply, ScriptServer, Sink, Stage, csv, run, wait_until};

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
        status["state"], "partial",
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
fn status_counts_the_list_the_issue_was_sent_to_and_says_what_cron_will_do() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(5), "throttle: { rate: 40/s, concurrency: 1 }\n");
    // A named send to another list of 60, killed part way.
    let other = project.dir.path().join("other.csv");
    std::fs::write(&other, csv(60)).unwrap();
    let mut send = project
        .std_command()
        .args(["send", "small", "--yes", "-q", "--recipients"])
        .arg(&other)
        .spawn()
        .unwrap();
    wait_until("some messages", || sink.count() >= 10);
    send.kill().unwrap();
    send.wait().unwrap();
    let sent = sink.count() as u64;
    let status = project.status("small");
    assert_eq!(status["state"], "interrupted", "{status}");
    // Pending counts the 60-row list the run read, not the configured 5.
    let pending = status["pending"].as_u64().unwrap();
    assert!(
        pending + sent >= 60 && pending + sent <= 61,
        "{pending} pending, {sent} sent: {status}"
    );
    let next = status["next"].as_str().unwrap();
    assert!(next.contains("cron will not resume it (it has no send_at)"), "{next}");
    assert!(
        next.contains(&format!(
            "`newsletter send small --recipients {}",
            other.canonicalize().unwrap().display()
        )),
        "{next}"
    );
    let overview = run(project.command().arg("status"));
    assert!(overview.stdout.contains("interrupted"), "{}", overview.stdout);

    // Finished as status says; then, months later, readers join the list: it stays complete and
    // nobody is told to mail them an old issue.
    let r = run(project
        .command()
        .args(["send", "small", "--yes", "-q", "--recipients"])
        .arg(&other));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let failed = run(project.command().args(["status", "small", "--failed"]));
    assert_eq!(
        failed.stdout.trim(),
        "Nobody failed: every recipient of small in the ledger was sent it (60 sent)."
    );
    std::fs::write(&other, csv(80)).unwrap();
    let status = project.status("small");
    assert_eq!(status["state"], "complete", "{status}");
    assert_eq!(status["pending"], 0);
    assert!(
        status["next"].as_str().unwrap().starts_with("nothing: it is complete"),
        "{status}"
    );
    let detail = run(project.command().args(["status", "small"]));
    assert!(detail.stdout.contains("(complete)"), "{}", detail.stdout);
    assert!(!detail.stdout.contains("never got it"), "{}", detail.stdout);
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
