//! `newsletter bounces`: the parser against the reference verdicts of the Sisimai corpus.

use std::collections::BTreeSet;
use std::path::Path;

use newsletter::bounces::{self, Class};

/// Sisimai's stand-in for "the report names no recipient".
const NO_RECIPIENT: &str = "undisclosed-recipient-in-headers@libsisimai.org.invalid";

type Verdicts = BTreeSet<(Option<String>, String)>;

fn reference() -> Vec<(String, Verdicts)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    expected
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let verdicts = e["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let rcpt = r["recipient"].as_str().unwrap();
                    (
                        (rcpt != NO_RECIPIENT).then(|| rcpt.to_owned()),
                        r["class"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (e["file"].as_str().unwrap().to_owned(), verdicts)
        })
        .collect()
}

#[test]
fn agrees_with_the_reference_on_the_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces/corpus");
    let (mut agree, mut total, mut false_suppressions) = (0, 0, 0);
    let mut report = String::new();
    for (file, expected) in reference() {
        let raw = std::fs::read(dir.join(&file)).unwrap();
        let read = bounces::read(&raw);
        let got: Verdicts = read
            .findings
            .iter()
            .map(|f| (f.recipient.clone(), f.reason.class().as_str().to_owned()))
            .collect();
        // Per recipient named by either side: the same class is an agreement. A file the
        // reference reads nothing from, and neither do we, is one agreement.
        let recipients: BTreeSet<&Option<String>> = expected.iter().chain(&got).map(|(r, _)| r).collect();
        if recipients.is_empty() {
            agree += 1;
            total += 1;
        }
        for r in recipients {
            let class = |set: &Verdicts| set.iter().find(|(x, _)| x == r).map(|(_, c)| c.clone());
            total += 1;
            if class(&expected) == class(&got) {
                agree += 1;
            }
        }
        for (rcpt, class) in got.difference(&expected) {
            let suppresses = class == Class::Hard.as_str() || class == Class::Complaint.as_str();
            if suppresses {
                false_suppressions += 1;
            }
            report.push_str(&format!(
                "{file}: got {rcpt:?} {class}{} expected {expected:?}\n",
                if suppresses { " (FALSE SUPPRESSION)" } else { "" }
            ));
        }
        if got != expected && std::env::var_os("BOUNCES_VERBOSE").is_some() {
            for f in &read.findings {
                report.push_str(&format!(
                    "    {:?} {:?} {:?} {:.300}\n",
                    f.recipient, f.reason, f.status, f.diagnostic
                ));
            }
        }
        for (rcpt, class) in expected.difference(&got) {
            report.push_str(&format!("{file}: missed {rcpt:?} {class}\n"));
        }
    }
    let agreement = agree as f64 / total as f64;
    eprintln!(
        "{report}agreement {agree}/{total} = {:.1}%, false suppressions {false_suppressions}",
        agreement * 100.0
    );
    // Measured floors (docs/benchmarks.md has the figures and the targets): a change
    // that lowers them is a regression.
    assert!(agreement >= 0.84, "agreement {agreement}");
    assert!(false_suppressions <= 7, "{false_suppressions} false suppressions");
}
