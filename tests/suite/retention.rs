//! Retention: an old issue's per-reader records reduced to its counts by cron's daily prune and
//! by `newsletter prune`, with `status` and `report` showing the same figures before and after,
//! the file smaller, the readers' standing untouched, and a pruned issue never sent again.

use serde_json::Value;

use crate::return_path::{dsn, sent};
use crate::support::tools;
use crate::support::{Project, Sink, csv, maildir, run, scheduled_issue};

fn json(project: &Project, args: &[&str]) -> Value {
    let r = run(project.command().args(args).args(["--format", "json"]));
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn sql(project: &Project, statement: &str) {
    let db = rusqlite::Connection::open(project.dir.path().join("state/newsletter.db")).unwrap();
    db.execute_batch(statement).unwrap();
}

fn count(project: &Project, query: &str) -> i64 {
    let db = rusqlite::Connection::open(project.dir.path().join("state/newsletter.db")).unwrap();
    db.query_row(query, [], |r| r.get(0)).unwrap()
}

fn without(mut v: Value, keys: &[&str]) -> Value {
    for k in keys {
        v.as_object_mut().unwrap().remove(*k);
    }
    v
}

#[test]
fn an_old_issue_keeps_its_figures_and_loses_who_got_it() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let readers = 2000;
    let project = Project::new(sink.port, &csv(readers), "throttle: { rate: off, concurrency: 4 }\n")
        .with_issues(&[("2025-01", scheduled_issue(None)), ("2025-02", scheduled_issue(None))]);
    for issue in ["2025-01", "2025-02"] {
        let r = run(project.command().args(["send", issue, "--yes", "-q"]));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    // Two hard bounces and a soft one come back for January.
    let ids = sent(&sink, "2025-01");
    let report = |i: usize, status: &str| {
        let rcpt = format!("user{i}@example.org");
        dsn(
            &format!("b{i}"),
            "newsletter@openinfra.dev",
            &rcpt,
            status,
            &format!("550 {status} no"),
            &ids[&rcpt].1,
        )
    };
    let mailbox = project.dir.path().join("bounces");
    maildir(
        &mailbox,
        &[
            ("1", report(1, "5.1.1")),
            ("2", report(2, "5.1.1")),
            ("3", report(3, "4.2.2")),
        ],
    );
    let r = run(project.command().args(["bounces", "--maildir"]).arg(&mailbox));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A sign-up never confirmed, 40 days old, and one from yesterday.
    let old = (chrono::Utc::now() - chrono::TimeDelta::days(40)).to_rfc3339();
    let recent = (chrono::Utc::now() - chrono::TimeDelta::days(1)).to_rfc3339();
    for (email, at) in [("late@example.net", &old), ("fresh@example.net", &recent)] {
        sql(
            &project,
            &format!(
                "INSERT INTO signups (email, projects, form, wording, layout_version, client, posted_at)
                 VALUES ('{email}', '', 'footer', 'Yes, send me the newsletter', '1', '{{}}', '{at}')"
            ),
        );
    }
    let status_before = json(&project, &["status", "2025-01"]);
    let report_before = json(&project, &["report", "2025-01"]);
    let suppressed_before = run(project.command().args(["suppress", "list"])).stdout;
    assert_eq!(status_before["sent"], 2000, "{status_before:#}");
    assert_eq!(status_before["bounces"]["hard"], 2, "{status_before:#}");

    // January completed three years ago; retention keeps two.
    sql(
        &project,
        "UPDATE issues SET completed_at = '2023-01-31T00:00:00.000Z' WHERE issue = '2025-01'",
    );
    let config = project.dir.path().join("newsletter.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text + "retention: { deliveries: 24 months, unconfirmed_signups: 30 days }\n",
    )
    .unwrap();
    let would = json(&project, &["prune", "--dry-run"]);
    assert_eq!(would["issues"], serde_json::json!(["2025-01"]));
    assert_eq!(would["deliveries"], 2000);
    assert_eq!(would["bounce_records"], 3);
    assert_eq!(would["unconfirmed_signups"], 1);
    assert_eq!(
        count(&project, "SELECT count(*) FROM deliveries WHERE issue = '2025-01'"),
        2000
    );

    // Cron's send prunes once a day, after sending what is due (nothing is).
    let r = run(project.command().arg("send"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Said as cron's notes are, on stderr (cron mails it).
    assert!(
        r.stderr
            .contains("pruned 1 issue(s) (2025-01): 2,000 delivery record(s)"),
        "{}",
        r.stderr
    );
    let r = run(project.command().arg("send"));
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""), "once a day");
    assert_eq!(
        count(&project, "SELECT count(*) FROM deliveries WHERE issue = '2025-01'"),
        0
    );
    assert_eq!(
        count(&project, "SELECT count(*) FROM bounce_events WHERE issue = '2025-01'"),
        0
    );
    assert_eq!(
        count(&project, "SELECT count(*) FROM deliveries WHERE issue = '2025-02'"),
        2000
    );
    assert_eq!(count(&project, "SELECT count(*) FROM signups"), 1);

    // The same figures; only who got it is gone, and says so.
    let status_after = json(&project, &["status", "2025-01"]);
    assert!(status_after["pruned"].is_string(), "{status_after:#}");
    assert_eq!(status_after["undelivered"], serde_json::json!([]));
    assert_eq!(
        without(status_after.clone(), &["pruned", "undelivered"]),
        without(status_before.clone(), &["undelivered"])
    );
    assert_eq!(json(&project, &["report", "2025-01"]), report_before);
    assert_eq!(
        run(project.command().args(["suppress", "list"])).stdout,
        suppressed_before
    );
    let r = run(project.command().args(["status", "2025-01"]));
    assert!(r.stdout.contains("per-reader records   pruned on"), "{}", r.stdout);
    let dossier = json(&project, &["subscribers", "export", "user1@example.org"]);
    assert_eq!(dossier["pruned"][0]["issue"], "2025-01", "{dossier:#}");
    assert!(
        dossier["events"].to_string().contains("hard-bounce"),
        "the standing's events stay: {dossier:#}"
    );

    // A pruned issue is never sent again: everyone would get it twice.
    let before = sink.count();
    let r = run(project.command().args(["send", "2025-01", "--yes"]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("per-reader records were pruned"), "{}", r.stderr);
    assert_eq!(sink.count(), before);

    // `newsletter prune` takes February once it is old too, and gives the space back.
    sql(
        &project,
        "UPDATE issues SET completed_at = '2023-02-28T00:00:00.000Z' WHERE issue = '2025-02'",
    );
    let pruned = json(&project, &["prune"]);
    assert_eq!(pruned["issues"], serde_json::json!(["2025-02"]));
    let (before, after) = (
        pruned["bytes_before"].as_u64().unwrap(),
        pruned["bytes_after"].as_u64().unwrap(),
    );
    assert!(after < before, "{pruned:#}");
    assert_eq!(count(&project, "SELECT count(*) FROM deliveries"), 0);
    let again = json(&project, &["prune"]);
    assert_eq!(again["issues"], serde_json::json!([]));
    assert_eq!(json(&project, &["status", "2025-02"])["sent"], 2000);
}
