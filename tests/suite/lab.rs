//! The lab: evidence no corpus can give. The newsletter goes through each MTA foundations
//! relay through (Postfix, Exim, OpenSMTPD, Sendmail, each a throwaway instance) to readers'
//! servers that refuse with the catalogue of real refusal texts
//! (`tests/fixtures/lab/refusals.tsv`, one server per text, at the stage its receiver gives
//! it). The MTA writes the reports; `newsletter bounces` reads them. Every text's truth is
//! known by construction: none of the refusals that are not the reader's may suppress or count
//! anyone, at any MTA.

use crate::support;
use crate::support::tools;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use support::lab::{Receivers, Refusal, catalogue};
use support::mta::Mta;
use support::postfix::Postfix;
use support::{Project, run, scheduled_issue};

/// The readers of the catalogue, one per refusal.
fn readers(catalogue: &[Refusal]) -> String {
    let mut csv = String::from("email,first_name\n");
    for i in 0..catalogue.len() {
        csv.push_str(&format!("{},Reader{i}\n", Receivers::reader(i)));
    }
    csv
}

/// Sends the issue through the MTA on `mta_port`, waits for one report per refusal in
/// `maildir`, reads them, and checks each reader's fate against the catalogue's truth.
fn send_and_judge(mta: &str, mta_port: u16, maildir: &Path, catalogue: &[Refusal], log: impl Fn() -> String) {
    let project = Project::new(
        mta_port,
        &readers(catalogue),
        "throttle: { rate: off }\nbounces: { return_path: \"bounces+{token}@lists.example.org\" }\n",
    )
    .with_issues(&[("2025-01", scheduled_issue(None))]);
    let r = run(project.command().args(["send", "2025-01", "--yes"]));
    assert_eq!(r.code, 0, "{mta}: {}", r.stderr);
    // One report per refusal at least; then until none has come for a while, as a relay may
    // warn of a delay before it gives up.
    let deadline = Instant::now() + Duration::from_secs(90);
    let waiting = || std::fs::read_dir(maildir.join("new")).map_or(0, |d| d.count());
    let (mut seen, mut quiet_since) = (0, Instant::now());
    while waiting() < catalogue.len() || quiet_since.elapsed() < Duration::from_secs(4) {
        assert!(
            Instant::now() < deadline,
            "{mta}: {} reports of {}; its log:\n{}",
            waiting(),
            catalogue.len(),
            log()
        );
        if waiting() != seen {
            (seen, quiet_since) = (waiting(), Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = run(project
        .command()
        .args(["bounces", "--format", "json", "--maildir"])
        .arg(maildir));
    assert_eq!(r.code, 0, "{mta}: {}", r.stderr);
    let all: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // A reader's fate is the weightiest of its reports' (a delay warning, then the failure).
    let weight = |v: &serde_json::Value| fate(v["action"].as_str().unwrap_or_default()).1;
    let mut verdicts: BTreeMap<String, &serde_json::Value> = BTreeMap::new();
    for v in all.as_array().unwrap() {
        let Some(reader) = v["recipient"].as_str() else {
            continue;
        };
        let entry = verdicts.entry(reader.to_owned()).or_insert(v);
        if weight(v) > weight(entry) {
            *entry = v;
        }
    }
    let mut wrong = Vec::new();
    let mut false_suppressions = 0;
    for (i, refusal) in catalogue.iter().enumerate() {
        let reader = Receivers::reader(i);
        let Some(v) = verdicts.get(&reader) else {
            wrong.push(format!("{reader} ({}): no verdict", refusal.receiver));
            continue;
        };
        let action = v["action"].as_str().unwrap_or_default();
        let got = fate(action).0;
        // A relay that only ever reports a delay (OpenSMTPD 6.8 reports an expired envelope as
        // "Action: delayed", without the receiver's words) has reported no bounce: nothing to
        // count is right for a soft refusal.
        if refusal.truth == "soft" && action.starts_with("none: a delay warning") {
            continue;
        }
        if got == "hard" && refusal.truth != "hard" {
            false_suppressions += 1;
        }
        if got != refusal.truth {
            if std::env::var_os("LAB_VERBOSE").is_some() {
                let file = v["file"].as_str().unwrap_or_default();
                // Read, it moved to cur/ with its flags after the name.
                let text = std::fs::read_dir(maildir.join("cur"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .find(|e| e.file_name().to_string_lossy().starts_with(file))
                    .and_then(|e| std::fs::read_to_string(e.path()).ok())
                    .unwrap_or_default();
                wrong.push(text.chars().take(3000).collect());
            }
            wrong.push(format!(
                "{mta}: {} {:?} `{}` (from {}): truth {}, got {got} ({} {}: {action})",
                refusal.receiver,
                refusal.when,
                refusal.reply.join(" ").chars().take(90).collect::<String>(),
                refusal.page,
                refusal.truth,
                v["class"],
                v["reason"],
            ));
        }
    }
    eprintln!(
        "{mta}: {} of {} refusals read as their truth",
        catalogue.len() - wrong.len(),
        catalogue.len()
    );
    assert_eq!(
        false_suppressions,
        0,
        "{mta}: false suppressions:\n{}",
        wrong.join("\n")
    );
    assert!(wrong.is_empty(), "{mta}:\n{}", wrong.join("\n"));
}

/// What an action did to its reader, as the catalogue's truth says it (and its weight).
fn fate(action: &str) -> (&'static str, u8) {
    if action.starts_with("suppressed") || action.starts_with("held") {
        ("hard", 2)
    } else if action.starts_with("counted") {
        ("soft", 1)
    } else {
        ("none", 0)
    }
}

fn routes(catalogue: &[Refusal], port: u16) -> Vec<(String, String, u16)> {
    (0..catalogue.len())
        .map(|i| (Receivers::domain(i), Receivers::ip(i), port))
        .collect()
}

#[test]
fn postfix_reports_of_every_refusal_are_read_as_their_truth() {
    needs!(tools::POSTFIX);
    let catalogue = catalogue();
    let receivers = Receivers::start(&catalogue);
    let relay = Postfix::start_routed(receivers.port, &routes(&catalogue, receivers.port));
    send_and_judge("Postfix", relay.port, &relay.maildir("bounces"), &catalogue, || {
        relay.log()
    });
}

#[test]
fn exim_reports_of_every_refusal_are_read_as_their_truth() {
    needs!(tools::EXIM);
    let catalogue = catalogue();
    let receivers = Receivers::start(&catalogue);
    let exim = Mta::exim(&routes(&catalogue, receivers.port));
    send_and_judge("Exim", exim.port, &exim.maildir(), &catalogue, || exim.log());
}

#[test]
fn opensmtpd_reports_of_every_refusal_are_read_as_their_truth() {
    needs!(tools::OPENSMTPD);
    let catalogue = catalogue();
    let receivers = Receivers::start(&catalogue);
    let smtpd = Mta::opensmtpd(&routes(&catalogue, receivers.port));
    send_and_judge("OpenSMTPD", smtpd.port, &smtpd.maildir(), &catalogue, || smtpd.log());
}

#[test]
fn sendmail_reports_of_every_refusal_are_read_as_their_truth() {
    needs!(tools::SENDMAIL);
    let catalogue = catalogue();
    let receivers = Receivers::start(&catalogue);
    let sendmail = Mta::sendmail(&routes(&catalogue, receivers.port));
    support::lab::catch_reports(receivers.port, &sendmail.maildir());
    send_and_judge("Sendmail", sendmail.port, &sendmail.maildir(), &catalogue, || {
        sendmail.log()
    });
}
