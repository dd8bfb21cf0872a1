//! SpamAssassin (Debian's spamassassin, local rules: `-L`) on the July issue as a receiver
//! sees it: the message smtp-sink received, under one Received: hop from the foundation's
//! relay. The tool itself must cause no rule: the score is 0.0 or less.

use crate::support;
use crate::support::tools;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{Project, Sink, root, run};

/// The rules that a message's making, not its words, would trip.
const OURS: &[&str] = &[
    "HTML_FONT_LOW_CONTRAST",
    "HTML_TITLE_SUBJ_DIFF",
    "MIME_HTML_ONLY",
    "MIME_QP_LONG_LINE",
    "MISSING_MID",
    "MISSING_DATE",
    "INVALID_DATE",
    "HTML_MIME_NO_HTML_TAG",
    "MPART_ALT_DIFF",
    "HTML_IMAGE_ONLY_32",
    "FROM_EXCESS_BASE64",
    "SUBJ_ALL_CAPS",
    "T_KAM_HTMLNOISE",
];

/// SpamAssassin's score and the rules it hit.
fn spamassassin(message: &str) -> (f64, Vec<String>, String) {
    let mut child = Command::new(tools::program(&tools::SPAMASSASSIN))
        .args(["-t", "-L"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spamassassin: run scripts/test, which installs Debian's spamassassin");
    child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
    let out = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    let report = out
        .split("Content analysis details:")
        .nth(1)
        .unwrap_or_else(|| panic!("no report in {out}"))
        .to_owned();
    let score: f64 = report
        .trim_start()
        .trim_start_matches('(')
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let rules = report
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let points = words.next()?;
            points.parse::<f64>().ok()?;
            words.next().map(str::to_owned)
        })
        .collect();
    (score, rules, report)
}

#[test]
fn the_july_issue_scores_nothing_the_tool_caused() {
    needs!(tools::SMTP_SINK, tools::SPAMASSASSIN);
    let sink = Sink::start();
    let july = std::fs::read_to_string(root().join("newsletters/2025-07.md")).unwrap();
    let project = Project::new(
        sink.port,
        "email,first_name\nreader@example.org,Alex\n",
        "throttle: { rate: off }\n",
    )
    .with_issues(&[("2025-07", july)]);
    let r = run(project.command().args(["send", "2025-07", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, dump) = sink.messages().remove(0);
    let message = support::as_received(&dump);
    let date = support::header(&message, "Date").unwrap().trim().to_owned();
    let received = format!(
        "Received: from mail.openinfra.dev (mail.openinfra.dev [104.130.246.10])\r\n\tby mx.example.org with ESMTPS id 4Abc123; {date}\r\n"
    );
    let (score, rules, report) = spamassassin(&(received + &message));
    let ours: Vec<&String> = rules.iter().filter(|r| OURS.contains(&r.as_str())).collect();
    assert!(ours.is_empty(), "rules the tool causes: {ours:?}\n{report}");
    assert!(score <= 0.0, "score {score}\n{report}");
}
