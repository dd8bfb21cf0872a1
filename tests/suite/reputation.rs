//! Guard-rails for the sender's reputation, through real sends: the warm-up's daily cap (the
//! ledger's dates moved back a day stand in for tomorrow) and the circuit breaker that stops
//! a send whose hard bounces climb, then goes on only when told to.

use crate::support;
use crate::support::tools;

use support::{Project, Reply, ScriptServer, Sink, Stage, csv, run, scheduled_issue};

fn ledger_path(project: &Project) -> std::path::PathBuf {
    project.dir.path().join("state/newsletter.db")
}

/// Moves every date of the ledger's deliveries `days` back: the next send runs "tomorrow".
fn a_day_passes(project: &Project) {
    let db = rusqlite::Connection::open(ledger_path(project)).unwrap();
    db.execute_batch(
        "UPDATE deliveries SET
            first_at = strftime('%Y-%m-%dT%H:%M:%fZ', first_at, '-1 day'),
            updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', updated_at, '-1 day'),
            sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', sent_at, '-1 day')",
    )
    .unwrap();
}

#[test]
fn the_warm_up_caps_each_day_and_the_next_day_goes_on() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(300),
        "throttle: { rate: off, warmup: { start: 100, until: 400, days: 3 } }\n",
    )
    .with_issues(&[("small", scheduled_issue(Some("2025-06-01T09:00:00Z")))]);
    let r = run(project.command().args(["send", "small", "--dry-run"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Warm-up:") && r.stdout.contains("a run now sends at most 100"),
        "{}",
        r.stdout
    );

    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count(), 100, "day 1: the start of the ramp");
    assert!(
        r.stdout
            .contains("warm-up day 1 of 3: 100 of today's 100 sent; 200 left for the next days"),
        "{}",
        r.stdout
    );
    // Cron again the same day: nothing, silently; by hand, nothing, saying why.
    let r = run(project.command().arg("send"));
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    let again = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("not sent today"), "{}", again.stdout);
    assert_eq!(sink.count(), 100);
    let status = project.assert_cron_resumes("small");
    assert_eq!(status["warmup"]["left_today"], 0, "{status}");

    // Day 2: 100 × 4^(1/2) = 200, which finishes the list; cron takes it up.
    a_day_passes(&project);
    let r = run(project.command().arg("send"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count(), 300);
    assert!(sink.received().values().all(|n| *n == 1), "each reader once");
    let status = project.status("small");
    assert_eq!(
        (
            status["warmup"]["cap"].as_u64(),
            status["warmup"]["left_today"].as_u64()
        ),
        (Some(200), Some(0))
    );
    assert_eq!(status["state"], "complete", "{status}");
}

#[test]
fn the_breaker_stops_a_send_whose_hard_bounces_climb_until_told_to_go_on() {
    // Every tenth reader's mailbox does not exist: 10% hard bounces against a limit of 5%.
    let server = ScriptServer::start(|stage, rcpt, _| {
        let n: usize = rcpt
            .trim_start_matches("user")
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        match stage {
            Stage::Rcpt if n % 10 == 9 => Reply::Code(550, "5.1.1 Mailbox does not exist"),
            _ => Reply::Ok,
        }
    });
    let project = Project::new(
        server.port,
        &csv(600),
        "throttle: { rate: off, breaker: { min_messages: 200 } }\nbounces: { mass_guard: 100000 }\n",
    );
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("stopped by the circuit breaker: hard bounces are ")
            && r.stderr.contains("(limit 5%, throttle.breaker.hard_bounce_percent)")
            && r.stderr.contains("--resume-despite-rates"),
        "{}",
        r.stderr
    );
    let taken = server.accepted().len();
    assert!((170..=300).contains(&taken), "stopped soon after 200 messages: {taken}");
    // Cron does not go on by itself.
    assert_eq!(run(project.command().args(["send", "small", "--yes"])).code, 2);
    assert_eq!(server.accepted().len(), taken);

    let r = run(project
        .command()
        .args(["send", "small", "--yes", "--resume-despite-rates"]));
    assert_eq!(r.code, 1, "the refused readers failed: {}", r.stderr);
    assert_eq!(server.accepted().len(), 540, "every reader whose mailbox exists, once");
    for i in (0..600).filter(|i| i % 10 != 9) {
        assert_eq!(server.count(&format!("user{i}@example.org")), 1, "user{i}");
    }
}
