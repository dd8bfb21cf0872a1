//! Relay pools through real servers: two Postfix smtp-sinks share a send by weight, one killed
//! mid-send hands its messages to the other (everyone once), a relay refusing the sender
//! leaves the rotation, one answering 421 (a scripted server) leaves it after three, and a daily
//! limit is kept across runs.

use crate::support;
use crate::support::tools;

use std::collections::HashMap;
use std::time::Duration;

use support::{Project, Sink, csv, run};

/// A pool of smtp-sinks as `smtp:` (a YAML flow list); `extra` goes into each relay.
fn pool(relays: &[(&str, &Sink, &str)]) -> String {
    let relays: Vec<String> = relays
        .iter()
        .map(|(name, sink, extra)| {
            format!(
                "{{ name: {name}, host: 127.0.0.1, port: {}, security: none, timeout: 5s, concurrency: 2{extra} }}",
                sink.port
            )
        })
        .collect();
    format!("[{}]", relays.join(", "))
}

/// How many times each address arrived over all the sinks.
fn arrivals(sinks: &[&Sink]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for sink in sinks {
        for rcpt in sink.delivered() {
            *counts.entry(rcpt).or_default() += 1;
        }
    }
    counts
}

fn everyone_once(sinks: &[&Sink], n: usize) {
    let counts = arrivals(sinks);
    assert_eq!(counts.len(), n, "everyone arrived");
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "more than once: {twice:?}");
}

fn relay<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["relays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["relay"] == name)
        .unwrap_or_else(|| panic!("no relay {name} in {status}"))
}

#[test]
fn two_relays_share_a_send_by_weight() {
    needs!(tools::SMTP_SINK);
    let (a, b) = (Sink::start(), Sink::start());
    let project = Project::new(a.port, &csv(4000), "throttle: { rate: off }\n")
        .with_smtp(&pool(&[("one", &a, ", weight: 1"), ("three", &b, ", weight: 3")]));
    let r = run(project.command().args(["send", "small", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    everyone_once(&[&a, &b], 4000);
    let (one, three) = (a.delivered().len(), b.delivered().len());
    assert!(
        (900..=1100).contains(&one),
        "about a quarter through weight 1: {one} and {three}"
    );
    let status = project.status("small");
    assert_eq!(relay(&status, "one")["sent"], one as u64, "{status}");
    assert_eq!(relay(&status, "three")["sent"], three as u64, "{status}");
}

#[test]
fn a_relay_killed_mid_send_hands_its_messages_to_the_other() {
    needs!(tools::SMTP_SINK);
    let (a, mut b) = (Sink::start(), Sink::start());
    let project = Project::new(
        a.port,
        &csv(4000),
        "throttle: { rate: 400/s, retries: 3, retry_delay: 50ms }\n",
    )
    .with_smtp(&pool(&[("steady", &a, ""), ("doomed", &b, "")]));
    let child = project
        .std_command()
        .args(["send", "small", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_until("the doomed relay took 500 messages", || b.count() >= 500);
    b.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("relay doomed left the rotation for 30s"),
        "said once: {stderr}"
    );
    everyone_once(&[&a, &b], 4000);
    let status = project.status("small");
    assert_eq!(status["sent"], 4000, "{status}");
    assert_eq!(status["pending"], 0, "{status}");
    // It took its share until it died: about 500 (a message it had whole but never
    // acknowledged went again through the other, and counts there).
    let doomed = relay(&status, "doomed")["sent"].as_u64().unwrap();
    assert!((400..2000).contains(&doomed), "{status}");
}

#[test]
fn a_relay_refusing_the_sender_leaves_the_rotation_and_the_other_sends() {
    needs!(tools::SMTP_SINK);
    let refusing = Sink::start_with(support::free_port(), &["-f", "MAIL"]);
    let good = Sink::start();
    let project = Project::new(good.port, &csv(200), "throttle: { rate: off }\n")
        .with_smtp(&pool(&[("refusing", &refusing, ""), ("good", &good, "")]));
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("relay refusing left the rotation") && r.stderr.contains("the relay refused the sender"),
        "{}",
        r.stderr
    );
    everyone_once(&[&good], 200);
    assert!(r.stdout.contains("Sent 200 of 200"), "{}", r.stdout);
}

#[test]
fn a_relay_answering_421_three_times_leaves_the_rotation_and_the_other_takes_its_messages() {
    needs!(tools::SMTP_SINK);
    // A real socket: every recipient refused with 421, the relay's own trouble (RFC 5321 4.2.3).
    let busy = support::ScriptServer::start(|stage, _, _| match stage {
        support::Stage::Rcpt => support::Reply::Code(421, "4.7.0 Too many connections, try again later"),
        _ => support::Reply::Ok,
    });
    let good = Sink::start();
    let busy_relay = format!(
        "{{ name: busy, host: 127.0.0.1, port: {}, security: none, timeout: 5s, concurrency: 1 }}",
        busy.port
    );
    let smtp = pool(&[("good", &good, "")]).replacen('[', &format!("[{busy_relay}, "), 1);
    let project = Project::new(good.port, &csv(300), "throttle: { rate: off, retry_delay: 20ms }\n").with_smtp(&smtp);
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("relay busy left the rotation"), "{}", r.stderr);
    // Three 421s, then no more: the rest went through the other relay, each reader once.
    let tried: u32 = (0..300)
        .map(|i| busy.seen(support::Stage::Rcpt, &format!("user{i}@example.org")))
        .sum();
    assert!((3..=4).contains(&tried), "busy was asked {tried} times");
    everyone_once(&[&good], 300);
    assert!(busy.accepted().is_empty());
    let status = project.status("small");
    assert_eq!(status["sent"], 300, "{status}");
    assert_eq!(relay(&status, "busy")["sent"], 0, "{status}");
}

#[test]
fn a_daily_limit_is_kept_and_the_rest_waits_for_tomorrow() {
    needs!(tools::SMTP_SINK);
    let (limited, other) = (Sink::start(), Sink::start());
    let project = Project::new(limited.port, &csv(400), "throttle: { rate: off }\n").with_smtp(&pool(&[
        ("limited", &limited, ", weight: 3, daily_limit: 100"),
        ("other", &other, ""),
    ]));
    let r = run(project.command().args(["send", "small", "--dry-run"]));
    assert!(
        r.stdout.contains(
            "Relays:          limited (weight 3, 2 connections, 100 of 100 left today), other (weight 1, 2 connections)"
        ),
        "{}",
        r.stdout
    );
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(limited.delivered().len(), 100, "no more than its limit");
    assert_eq!(other.delivered().len(), 300);
    assert!(r.stderr.contains("relay limited rests until tomorrow"), "{}", r.stderr);
    let status = project.status("small");
    assert_eq!(relay(&status, "limited")["today"], 100, "{status}");

    // Alone at its limit the same day, with readers added: nothing more goes, and the run
    // says so.
    project.write_csv(&csv(500));
    let project = project.with_smtp(&pool(&[("limited", &limited, ", daily_limit: 100")]));
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("every relay is at its daily limit"), "{}", r.stdout);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(limited.delivered().len(), 100);
}

#[test]
fn when_every_relay_is_out_the_send_stops_and_everyone_stays_pending() {
    needs!(tools::SMTP_SINK);
    let (a, b) = (
        Sink::start_with(support::free_port(), &["-f", "MAIL"]),
        Sink::start_with(support::free_port(), &["-f", "MAIL"]),
    );
    let project =
        Project::new(a.port, &csv(50), "throttle: { rate: off }\n").with_smtp(&pool(&[("a", &a, ""), ("b", &b, "")]));
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("every relay is out of the rotation (")
            && r.stderr.contains("a: the relay refused the sender")
            && r.stderr.contains("b: the relay refused the sender"),
        "{}",
        r.stderr
    );
    let status = project.status("small");
    assert_eq!(
        (status["sent"].as_u64(), status["failed"].as_u64()),
        (Some(0), Some(0)),
        "{status}"
    );
    assert_eq!(status["pending"], 50, "{status}");
}
