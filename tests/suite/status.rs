//! `newsletter status` after real sends: counts, failures and JSON, partial sends, a run that
//! holds the lock.

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
