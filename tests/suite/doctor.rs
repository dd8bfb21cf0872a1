//! `newsletter doctor` against real parts: aiosmtpd with STARTTLS and AUTH for the login (no
//! mail may arrive), dnsmasq for the DNS records, our DKIM key's record as `newsletter dkim`
//! prints it.

use std::path::Path;

use tempfile::TempDir;

use crate::init::{kata_project, newsletter_in};
use crate::support::dns::{Dnsmasq, txt};
use crate::support::smtpd::{Pki, Smtpd};
use crate::support::{root, run, tools};

/// The project's `smtp:` block as init wrote it, replaced by `smtp`, and DKIM turned on.
fn configure(dir: &Path, smtp: &str) {
    let path = dir.join("newsletter.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let block = "smtp:\n  host: null\n  port: 587\n  username: null\n";
    assert!(text.contains(block));
    let text = text
        .replace(block, &format!("smtp: {smtp}\ndkim: {{ selector: s1 }}\n"))
        .replace("test_recipients: []", "test_recipients: [staff@example.org]");
    std::fs::write(path, text).unwrap();
}

fn key() -> String {
    std::fs::read_to_string(root().join("tests/fixtures/dkim-test-rsa.pem")).unwrap()
}

/// The DKIM record of the test key as OpenSSL derives its public key (SubjectPublicKeyInfo,
/// DER, base64), not as our own `newsletter dkim` prints it.
fn dkim_record() -> String {
    use base64::Engine;
    let out = std::process::Command::new(tools::program(&tools::OPENSSL))
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(root().join("tests/fixtures/dkim-test-rsa.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(out.stdout)
    )
}

fn doctor(dir: &Path, dns: &Dnsmasq) -> (i32, serde_json::Value, String) {
    let r = run(newsletter_in(dir)
        .args(["doctor", "--resolver", &dns.address(), "--format", "json"])
        .env("NEWSLETTER_DKIM_PRIVATE_KEY", key())
        .env("NEWSLETTER_SMTP_PASSWORD", "s3cret"));
    let json = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}\n{}", r.stdout, r.stderr));
    (r.code, json, r.stderr)
}

/// The finding about `subject` (the first, or the one whose words contain `containing`).
fn said<'a>(found: &'a serde_json::Value, subject: &str, containing: &str) -> (&'a str, &'a str) {
    let f = found
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == subject && f["said"].as_str().unwrap().contains(containing))
        .unwrap_or_else(|| panic!("no finding on {subject} with `{containing}`: {found:#}"));
    (f["verdict"].as_str().unwrap(), f["said"].as_str().unwrap())
}

#[test]
fn doctor_logs_in_without_sending_and_reads_the_records_receivers_judge_us_by() {
    needs!(tools::DNSMASQ, tools::AIOSMTPD, tools::OPENSSL);
    let out = TempDir::new().unwrap();
    let dir = kata_project(&out);
    let pki = Pki::new();
    let cert = pki.issue("server", &["localhost"], 2);
    let server = Smtpd::start(
        "starttls",
        Some(&cert),
        &["--user", "news@example.org", "--password", "s3cret"],
    );
    configure(
        &dir,
        &format!(
            "{{ host: localhost, port: {}, username: news@example.org, ca_file: {}, timeout: 10s }}",
            server.port,
            pki.ca().display()
        ),
    );
    let good = [
        txt("s1._domainkey.example.org", &dkim_record()),
        txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all"),
        txt(
            "_dmarc.example.org",
            "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org",
        ),
        "--mx-host=example.org,mx.example.org,10".to_owned(),
    ];
    let dns = Dnsmasq::start(&["example.org"], &good);
    let (code, found, stderr) = doctor(&dir, &dns);
    assert_eq!(code, 0, "nothing to fix: {found:#}\n{stderr}");
    assert_eq!(said(&found, "newsletter.yaml", "").0, "ok");
    assert_eq!(said(&found, "NEWSLETTER_UNSUBSCRIBE_SECRET", "").0, "ok");
    let (verdict, words) = said(&found, "localhost", "");
    assert_eq!(verdict, "ok");
    assert_eq!(
        words,
        format!(
            "localhost:{} answered EHLO, STARTTLS, logged in as news@example.org; no mail was sent",
            server.port
        )
    );
    assert_eq!(server.received().len(), 0, "a login, never a message");
    assert_eq!(
        said(&found, "s1._domainkey.example.org", "").1,
        "DKIM key published and matching ours"
    );
    // The relay is on this machine: which address its mail leaves from is not in DNS.
    assert_eq!(said(&found, "example.org (SPF)", "on this machine").0, "warning");
    assert_eq!(
        said(&found, "_dmarc.example.org", "").1,
        "DMARC p=quarantine, reports to mailto:dmarc@example.org"
    );
    assert_eq!(said(&found, "example.org (MX)", "").1, "bounces go to mx.example.org");

    // Text for people: one line each, and a tally.
    let r = run(newsletter_in(&dir)
        .args(["doctor", "--resolver", &dns.address()])
        .env("NEWSLETTER_DKIM_PRIVATE_KEY", key())
        .env("NEWSLETTER_SMTP_PASSWORD", "s3cret"));
    assert!(
        r.stdout.contains("relay:\n  ok       localhost: localhost:"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.ends_with("0 to fix\n"), "{}", r.stdout);

    // Each record wrong in its own way, and a password the relay refuses.
    let other_key = dkim_record().replace("MIIB", "MIIC");
    let bad = [
        txt("s1._domainkey.example.org", &other_key),
        txt("example.org", "v=spf1 -all"),
        txt("example.org", "v=spf1 ip4:192.0.2.1 -all"),
        txt("_dmarc.example.org", "v=DMARC1; p=none"),
    ];
    let dns = Dnsmasq::start(&["example.org"], &bad);
    let r = run(newsletter_in(&dir)
        .args(["doctor", "--resolver", &dns.address(), "--format", "json"])
        .env("NEWSLETTER_DKIM_PRIVATE_KEY", key())
        .env("NEWSLETTER_SMTP_PASSWORD", "wrong"));
    assert_eq!(r.code, 1, "{}", r.stdout);
    let found: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let (verdict, words) = said(&found, "localhost", "");
    assert_eq!(verdict, "fix");
    assert!(
        words.contains("535") || words.to_lowercase().contains("auth"),
        "{words}"
    );
    assert!(
        said(&found, "s1._domainkey.example.org", "")
            .1
            .starts_with("another key is published")
    );
    assert!(said(&found, "example.org (SPF)", "").1.starts_with("2 SPF records"));
    assert_eq!(said(&found, "_dmarc.example.org", "").0, "warning");
    assert!(said(&found, "_dmarc.example.org", "").1.contains("without rua="));
    assert!(said(&found, "example.org (MX)", "").1.starts_with("no MX"));
    assert_eq!(server.received().len(), 0);
}

/// What pyspf (an independent SPF implementation, RFC 7208) says of mail from `ip` for
/// `domain`, asking the same DNS server.
fn pyspf(dns: &Dnsmasq, ip: &str, domain: &str) -> String {
    let script = format!(
        "import dns.resolver, spf\nr = dns.resolver.Resolver(configure=False)\nr.nameservers = ['127.0.0.1']\nr.port = {}\ndns.resolver.default_resolver = r\nprint(spf.check2(i='{ip}', s='news@{domain}', h='relay.example.net')[0])\n",
        dns.port
    );
    let out = std::process::Command::new(tools::program(&tools::PYSPF))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Our finding on a relay's SPF as RFC 7208's result names.
fn spf_result(verdict: &str, words: &str) -> &'static str {
    match () {
        _ if verdict == "ok" => "pass",
        _ if words.contains("(matched by ~") => "softfail",
        _ if words.contains("(matched by -") => "fail",
        _ if words.contains("(matched by ?") => "neutral",
        _ if words.contains("lookups") || words.contains("no SPF record") || words.contains("SPF records") => {
            "permerror"
        }
        _ => "neutral",
    }
}

#[test]
fn doctor_evaluates_spf_for_each_relay_as_pyspf_does() {
    needs!(tools::DNSMASQ, tools::PYSPF, tools::OPENSSL);
    let out = TempDir::new().unwrap();
    let dir = kata_project(&out);
    // A pool whose second relay is at a documentation address: its login fails fast, and its
    // SPF is judged from DNS alone.
    configure(
        &dir,
        "[ { name: here, host: 127.0.0.1, port: 9, security: none, timeout: 2s }, { name: far, host: relay.example.net, port: 587, timeout: 2s } ]",
    );
    let zone = |spf: &str| {
        vec![
            txt("s1._domainkey.example.org", &dkim_record()),
            txt("example.org", spf),
            txt("_spf.example.net", "v=spf1 ip4:192.0.2.0/28 ~all"),
            txt("_loop.example.org", "v=spf1 include:example.org -all"),
            txt("_dmarc.example.org", "v=DMARC1; p=none; rua=mailto:dmarc@example.org"),
            "--mx-host=example.org,mx.example.org,10".to_owned(),
            "--host-record=mx.example.org,192.0.2.9".to_owned(),
            "--host-record=relay.example.net,192.0.2.10".to_owned(),
        ]
    };
    let records = [
        ("v=spf1 a:mx.example.org include:_spf.example.net -all", "pass"),
        ("v=spf1 mx/24 -all", "pass"),
        ("v=spf1 ip4:198.51.100.0/24 include:_spf.example.net -all", "pass"),
        ("v=spf1 ip4:198.51.100.0/24 -all", "fail"),
        ("v=spf1 ip4:198.51.100.0/24 ~all", "softfail"),
        ("v=spf1 ip4:198.51.100.0/24 ?all", "neutral"),
        ("v=spf1 ip4:198.51.100.0/24", "neutral"),
        ("v=spf1 ip4:198.51.100.0/24 redirect=_spf.example.org", "permerror"),
        ("v=spf1 include:_loop.example.org -all", "permerror"),
    ];
    for (record, expected) in records {
        let dns = Dnsmasq::start(&["example.org", "example.net"], &zone(record));
        let (code, found, _) = doctor(&dir, &dns);
        assert_eq!(code, 1, "the relays cannot be reached: {found:#}");
        assert_eq!(said(&found, "far", "").0, "fix");
        // The relay on this machine: its public address is not in DNS.
        assert_eq!(said(&found, "example.org (SPF)", "relay here").0, "warning");
        let (verdict, words) = said(&found, "example.org (SPF)", "relay far");
        let ours = spf_result(verdict, words);
        assert_eq!(ours, expected, "{record}: {words}");
        assert_eq!(
            pyspf(&dns, "192.0.2.10", "example.org"),
            ours,
            "pyspf on {record}: {words}"
        );
    }
    let dns = Dnsmasq::start(
        &["example.org", "example.net"],
        &zone("v=spf1 ip4:198.51.100.0/24 -all"),
    );
    let (_, found, _) = doctor(&dir, &dns);
    assert_eq!(
        said(&found, "example.org (SPF)", "relay far").1,
        "does not let relay far send: 192.0.2.10 (matched by -all); add ip4:/ip6: for it, or the include: its provider documents"
    );
}

/// A resolver that knows none of our domains (a machine without the internet answers so for
/// every name) gets one line that says so, not a "missing" for every record.
#[test]
fn doctor_says_once_when_dns_knows_no_such_domain() {
    needs!(tools::DNSMASQ);
    let out = TempDir::new().unwrap();
    let dir = kata_project(&out);
    configure(&dir, "{ host: 127.0.0.1, port: 9, security: none, timeout: 2s }");
    let dns = Dnsmasq::start(&["example.org"], &[]);
    let (code, found, _) = doctor(&dir, &dns);
    assert_eq!(code, 1);
    let dns_lines: Vec<&serde_json::Value> = found
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["area"] == "dns")
        .collect();
    assert_eq!(dns_lines.len(), 1, "{found:#}");
    let (verdict, words) = said(&found, "example.org", "knows no such domain");
    assert_eq!(verdict, "fix");
    assert!(
        words.contains("--resolver names another server, --offline skips DNS"),
        "{words}"
    );
}

#[test]
fn doctor_offline_reads_configuration_and_secrets_and_names_what_is_missing() {
    let out = TempDir::new().unwrap();
    let dir = kata_project(&out);
    let r = run(newsletter_in(&dir)
        .args(["doctor", "--offline", "--format", "json"])
        .env_remove("NEWSLETTER_UNSUBSCRIBE_SECRET"));
    assert_eq!(r.code, 1, "{}", r.stdout);
    let found: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(said(&found, "smtp.host", "").1.starts_with("no relay is set"));
    assert!(
        said(&found, "NEWSLETTER_UNSUBSCRIBE_SECRET", "")
            .1
            .starts_with("not set")
    );
    assert!(said(&found, "DKIM", "").1.starts_with("no signing"));
    assert_eq!(said(&found, "test_recipients", "").0, "warning");
    // A configuration that does not load is the one thing said.
    std::fs::write(dir.join("newsletter.yaml"), "smtp: { hots: x }\n").unwrap();
    let r = run(newsletter_in(&dir).args(["doctor", "--offline"]));
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.starts_with("configuration:\n  fix      newsletter.yaml: "),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("did you mean `host`"), "{}", r.stdout);
}
