//! DKIM signatures checked by implementations that are not ours: the `mail-auth` crate and
//! dkimpy, on messages as a real SMTP server (Postfix's smtp-sink) received them.

use crate::support;
use crate::support::tools;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::{DomainKey, VerifySignature};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};
use support::{Project, Sink, root, run};

/// Recipients whose names need RFC 2047 encoding and fold the To: header.
const RECIPIENTS: &str = "email,first_name,last_name\n\
    zoe@example.org,Zoë,Ångström\n\
    kim@example.kr,김민수,김\n\
    max@example.de,Maximiliane Wilhelmina Friederike,von Hohenzollern-Sigmaringen-Württemberg und Lüdenscheid-Oberbrügge\n\
    plain@example.com,Pat,Smith\n";

const BOTH: &str = "{ selector: rsa2026, ed25519_selector: ed2026 }";

fn keys() -> [(&'static str, String); 2] {
    let read = |name: &str| std::fs::read_to_string(root().join("tests/fixtures").join(name)).unwrap();
    [
        ("NEWSLETTER_DKIM_PRIVATE_KEY", read("dkim-test-rsa.pem")),
        ("NEWSLETTER_DKIM_ED25519_PRIVATE_KEY", read("dkim-test-ed25519.pem")),
    ]
}

/// A DNS cache for mail-auth holding only our records, so that it never asks a real resolver.
struct Records(HashMap<Box<str>, Txt>);

impl ResolverCache<Box<str>, Txt> for Records {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(name).cloned()
    }

    fn insert(&self, _: Box<str>, _: Txt, _: Instant) {}
}

/// Sends `issues` to RECIPIENTS with both keys and returns the received messages (written as
/// .eml files in `dir`) and `newsletter dkim`'s records.
fn send_signed(
    dir: &Path,
    dkim: &str,
    keys: &[(&str, String)],
    issues: &[(&str, String)],
) -> (Vec<PathBuf>, serde_json::Value) {
    let sink = Sink::start();
    let config = format!("throttle: {{ rate: off }}\ndkim: {dkim}\n");
    let project = Project::new(sink.port, RECIPIENTS, &config).with_issues(issues);
    for (name, _) in issues {
        let r = run(project
            .command()
            .args(["send", name, "--yes", "--force"])
            .envs(keys.iter().cloned()));
        assert_eq!(r.code, 0, "{}", r.stderr);
        for (_, key) in keys {
            let secret_line = key.lines().nth(1).unwrap_or(key);
            assert!(!r.stderr.contains(secret_line) && !r.stdout.contains(secret_line));
        }
    }
    let r = run(project
        .command()
        .args(["dkim", "--format", "json"])
        .envs(keys.iter().cloned()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let records: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let messages = sink.messages();
    assert_eq!(messages.len(), issues.len() * (RECIPIENTS.lines().count() - 1));
    let files = messages
        .iter()
        .enumerate()
        .map(|(i, (_, dump))| {
            let path = dir.join(format!("{i:03}.eml"));
            std::fs::write(&path, support::as_received(dump)).unwrap();
            path
        })
        .collect();
    (files, records)
}

fn issue(name: &str) -> String {
    std::fs::read_to_string(root().join("newsletters").join(format!("{name}.md"))).unwrap()
}

#[test]
fn rsa_and_ed25519_signatures_verify_in_mail_auth_and_dkimpy() {
    needs!(tools::SMTP_SINK, tools::DKIMPY);
    let dir = tempfile::tempdir().unwrap();
    let unicode = std::fs::read_to_string(root().join("tests/fixtures/small.md"))
        .unwrap()
        .replace(
            "title: Small issue for {{first_name}}",
            "title: \"Café, Ñandú und Grüße: 日本語のニュース for {{first_name}}\"",
        );
    let (files, records) = send_signed(
        dir.path(),
        BOTH,
        &keys(),
        &[
            ("2025-07", issue("2025-07")),
            ("2025-01", issue("2025-01")),
            ("unicode", unicode),
        ],
    );

    // mail-auth (Rust), with the records `newsletter dkim` printed.
    let mut map = HashMap::new();
    for record in records.as_array().unwrap() {
        let name = record["name"].as_str().unwrap();
        let key = DomainKey::parse(record["value"].as_str().unwrap().as_bytes()).unwrap();
        let txt = Txt::from(key);
        map.insert(format!("{name}.").into_boxed_str(), txt.clone());
        map.insert(name.into(), txt);
    }
    assert_eq!(map.len(), 4, "an RSA and an Ed25519 record: {records}");
    let cache = Records(map);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let authenticator = MessageAuthenticator::new_cloudflare().unwrap();
    let mut algorithms = HashMap::new();
    for file in &files {
        let raw = std::fs::read(file).unwrap();
        let message = AuthenticatedMessage::parse(&raw).unwrap();
        let outputs = runtime.block_on(authenticator.verify_dkim(Parameters::new(&message).with_txt_cache(&cache)));
        assert_eq!(outputs.len(), 2, "{}: two signatures", file.display());
        for output in &outputs {
            assert_eq!(
                output.result(),
                &DkimResult::Pass,
                "{}: {:?}",
                file.display(),
                output.result()
            );
            let algorithm = format!("{:?}", output.signature().unwrap().algorithm());
            *algorithms.entry(algorithm).or_insert(0) += 1;
        }
    }
    assert_eq!(algorithms.len(), 2, "{algorithms:?}");
    assert!(algorithms.values().all(|n| *n == files.len()), "{algorithms:?}");

    // dkimpy (Python).
    let (ok, report) = support::dkimpy(dir.path(), &records, &files);
    assert!(ok, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.ends_with(" pass")).count(),
        2 * files.len(),
        "{report}"
    );
    assert_eq!(report.matches(" rsa-sha256 pass").count(), files.len(), "{report}");
    assert_eq!(report.matches(" ed25519-sha256 pass").count(), files.len(), "{report}");
}

#[test]
fn every_header_a_forger_would_add_is_oversigned() {
    needs!(tools::SMTP_SINK, tools::DKIMPY);
    let dir = tempfile::tempdir().unwrap();
    let (files, records) = send_signed(dir.path(), BOTH, &keys(), &[("small", issue_small())]);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let unfolded = text.replace("\r\n\t", " ").replace("\r\n ", " ");
    let signature = unfolded.lines().find(|l| l.starts_with("DKIM-Signature:")).unwrap();
    let h: Vec<&str> = signature
        .split("h=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split(':')
        .map(str::trim)
        .collect();
    for header in [
        "from",
        "to",
        "subject",
        "date",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        let occurs = unfolded
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&format!("{header}:")))
            .count();
        assert_eq!(occurs, 1, "{header}");
        assert_eq!(
            h.iter().filter(|n| **n == header).count(),
            2,
            "{header} once more than it occurs: {h:?}"
        );
    }
    for header in ["message-id", "content-type", "mime-version", "list-id", "feedback-id"] {
        assert!(h.contains(&header), "{header} signed: {h:?}");
    }
    // The message as sent verifies; with a second From: added in transit it does not.
    let (ok, report) = support::dkimpy(dir.path(), &records, &files[..1]);
    assert!(ok, "{report}");
    let tampered = dir.path().join("tampered.eml");
    std::fs::write(&tampered, format!("From: Mallory <ceo@openinfra.dev>\r\n{text}")).unwrap();
    let (ok, report) = support::dkimpy(dir.path(), &records, &[tampered]);
    assert!(!ok, "{report}");
    assert_eq!(report.matches(" fail").count(), 2, "{report}");
}

#[test]
fn keys_configured_the_earlier_way_still_sign_verifiably() {
    needs!(tools::SMTP_SINK, tools::DKIMPY, tools::OPENSSL);
    // One Ed25519 signature from a base64 seed (`algorithm: ed25519`), and one RSA signature
    // from a PKCS#8 key under `selector` alone.
    let dir = tempfile::tempdir().unwrap();
    let seed = [(
        "NEWSLETTER_DKIM_PRIVATE_KEY",
        "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=".to_owned(),
    )];
    let (files, records) = send_signed(
        dir.path(),
        "{ selector: nl2025, algorithm: ed25519 }",
        &seed,
        &[("small", issue_small())],
    );
    let (ok, report) = support::dkimpy(dir.path(), &records, &files);
    assert!(ok, "{report}");
    assert_eq!(report.matches(" ed25519-sha256 pass").count(), files.len(), "{report}");

    let pkcs8 = Command::new(tools::program(&tools::OPENSSL))
        .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
        .arg(root().join("tests/fixtures/dkim-test-rsa.pem"))
        .output()
        .unwrap();
    let pkcs8 = [("NEWSLETTER_DKIM_PRIVATE_KEY", String::from_utf8(pkcs8.stdout).unwrap())];
    assert!(pkcs8[0].1.starts_with("-----BEGIN PRIVATE KEY-----"));
    let dir = tempfile::tempdir().unwrap();
    let (files, records) = send_signed(dir.path(), "{ selector: nl2025 }", &pkcs8, &[("small", issue_small())]);
    let (ok, report) = support::dkimpy(dir.path(), &records, &files);
    assert!(ok, "{report}");
    assert_eq!(report.matches(" rsa-sha256 pass").count(), files.len(), "{report}");
}

fn issue_small() -> String {
    std::fs::read_to_string(root().join("tests/fixtures/small.md")).unwrap()
}

#[test]
fn dkim_prints_the_records_to_publish() {
    needs!(tools::OPENSSL);
    let project = Project::new(1, RECIPIENTS, "dkim: { selector: rsa2026, ed25519_selector: ed2026 }\n");
    let r = run(project.command().arg("dkim").envs(keys()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.starts_with(';')).collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines[0].starts_with("rsa2026._domainkey.openinfra.dev. 3600 IN TXT ( \"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"), "{}", lines[0]);
    // A 2048-bit key's record is longer than one TXT string may be.
    assert!(lines[0].matches('"').count() >= 4, "{}", lines[0]);
    assert!(
        lines[1].starts_with("ed2026._domainkey.openinfra.dev. 3600 IN TXT ( \"v=DKIM1; k=ed25519; p="),
        "{}",
        lines[1]
    );

    // The RSA key the openssl command line derives is the one published.
    let public = Command::new(tools::program(&tools::OPENSSL))
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(root().join("tests/fixtures/dkim-test-rsa.pem"))
        .output()
        .unwrap();
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode(&public.stdout);
    let published: String = lines[0]
        .split("p=")
        .nth(1)
        .unwrap()
        .replace("\" \"", "")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/' || *c == '=')
        .collect();
    assert_eq!(published, expected);
}

#[test]
fn bad_keys_are_refused_before_sending_with_what_to_do() {
    needs!(tools::SMTP_SINK, tools::OPENSSL);
    let sink = Sink::start();
    let project = Project::new(sink.port, RECIPIENTS, "dkim: { selector: rsa2026 }\n");
    let small = Command::new(tools::program(&tools::OPENSSL))
        .args(["genrsa", "-traditional", "1024"])
        .output()
        .unwrap();
    let small = String::from_utf8(small.stdout).unwrap();
    for (key, expected) in [
        ("not a key", "NEWSLETTER_DKIM_PRIVATE_KEY: not a PEM key"),
        (
            small.as_str(),
            "NEWSLETTER_DKIM_PRIVATE_KEY: the RSA key is shorter than 2048 bits",
        ),
    ] {
        let r = run(project
            .command()
            .args(["send", "small", "--yes"])
            .env("NEWSLETTER_DKIM_PRIVATE_KEY", key));
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains(expected), "{}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    assert_eq!(sink.count(), 0);
}

/// A sign-up's confirmation email, sent by `serve` with both keys, verifies in dkimpy.
#[test]
fn the_confirmation_email_of_a_sign_up_verifies_in_dkimpy() {
    needs!(tools::SMTP_SINK, tools::CURL, tools::DKIMPY);
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let config = format!(
        "throttle: {{ rate: off }}\ndkim: {BOTH}\nunsubscribe: {{ url: https://openinfra.dev/newsletter/unsubscribe }}\n"
    );
    let project = Project::new(sink.port, RECIPIENTS, &config);
    let server = support::serve::Server::start_with_env(&project, &keys());
    let (code, _) = support::serve::curl(&[
        "--data",
        "email=zoe%40example.org&name=Zo%C3%AB+%C3%85ngstr%C3%B6m",
        &format!("{}/newsletter/subscribe", server.base),
    ]);
    assert_eq!(code, 200);
    let deadline = Instant::now() + std::time::Duration::from_secs(15);
    while sink.count() == 0 {
        assert!(Instant::now() < deadline, "no confirmation email");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (_, dump) = sink.messages().remove(0);
    let file = dir.path().join("confirm.eml");
    std::fs::write(&file, support::as_received(&dump)).unwrap();
    let r = run(project.command().args(["dkim", "--format", "json"]).envs(keys()));
    let records: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let (ok, report) = support::dkimpy(dir.path(), &records, &[file]);
    assert!(ok, "{report}");
    assert_eq!(report.matches(" pass").count(), 2, "{report}");
}
