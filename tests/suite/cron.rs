//! `newsletter send` from cron: what is due goes once, nothing else; a named send of a
//! scheduled issue waits unless told `--now`; an unreadable `send_at` is named.

use crate::support;
use crate::support::tools;
use support::{Project, Sink, csv, run, scheduled_issue};

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
fn cron_names_an_unreadable_send_at_and_sends_the_due_issues_all_the_same() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(2), "throttle: { rate: off }\n").with_issues(&[
        ("2025-05", scheduled_issue(Some("2025-05-01T09:00:00Z"))),
        ("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z"))),
        ("2025-07", scheduled_issue(Some("2025-07-01 09:00"))),
    ]);
    // The unreadable issue is said, and the run fails; the due ones go all the same.
    let r = run(project.command().arg("send"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("2025-07.md:2:"), "file and line: {}", r.stderr);
    assert!(
        r.stderr
            .contains("RFC 3339 with a time zone, e.g. 2025-08-01T15:00:00Z"),
        "{}",
        r.stderr
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines[0].starts_with("2025-05: Sent 2 of 2"), "{}", r.stdout);
    assert!(lines[1].starts_with("2025-06: Sent 2 of 2"), "{}", r.stdout);
    assert_eq!(sink.count(), 4, "the due issues went");
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
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "", ""),
        "fixed: nothing to say"
    );
    assert_eq!(sink.count(), 4, "and nothing sent twice");
}
