//! SES's events through SNS, end to end: `serve` takes SNS messages signed by the test with
//! its own certificate, which `serve` fetches over HTTPS from "sns.us-east-1.amazonaws.com"
//! (openssl's s_server with a certificate of a private CA the test trusts through
//! SSL_CERT_FILE, reached through an HTTPS proxy in the test, as HTTPS_PROXY says). A bounce
//! and a complaint suppress their readers; a tampered message, a foreign topic and a
//! certificate from elsewhere change nothing; a subscription is confirmed.

use crate::support;
use crate::support::tools;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine;
use support::serve::{Server, curl};
use support::smtpd::Pki;
use support::{Project, Sink, csv, free_port, run};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";

/// openssl's s_server serving the files of `dir` over HTTPS.
struct Https {
    port: u16,
    child: Child,
}

impl Https {
    fn start(dir: &Path, cert: &Path, key: &Path) -> Https {
        let port = free_port();
        // It names each file served on stderr.
        let child = Command::new(tools::program(&tools::OPENSSL))
            .args(["s_server", "-WWW", "-accept", &port.to_string(), "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("served.log")).unwrap())
            .spawn()
            .unwrap();
        support::wait_until("s_server listens", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Https { port, child }
    }
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP CONNECT proxy that takes every tunnel to `to`: the test's "sns.us-east-1.amazonaws.com".
fn proxy(to: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                assert!(line.starts_with("CONNECT sns.us-east-1.amazonaws.com:443 "), "{line}");
                while line != "\r\n" {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                }
                let mut client = client;
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let server = TcpStream::connect(("127.0.0.1", to)).unwrap();
                let (mut up_read, mut up_write) = (server.try_clone().unwrap(), server);
                let mut client_write = client.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_read, &mut client_write);
                });
                let _ = std::io::copy(&mut reader, &mut up_write);
            });
        }
    });
    port
}

/// An SNS message signed with `key` (SignatureVersion `version`: 1 SHA1, 2 SHA256), as SNS
/// documents the text it signs.
fn signed(key: &Path, version: &str, kind: &str, id: &str, message: &str, cert_url: &str) -> serde_json::Value {
    let timestamp = "2026-11-30T10:00:00.000Z";
    let subscribe = "https://sns.us-east-1.amazonaws.com/confirm.txt";
    let text = if kind == "Notification" {
        format!("Message\n{message}\nMessageId\n{id}\nTimestamp\n{timestamp}\nTopicArn\n{TOPIC}\nType\n{kind}\n")
    } else {
        format!(
            "Message\n{message}\nMessageId\n{id}\nSubscribeURL\n{subscribe}\nTimestamp\n{timestamp}\nToken\ntok\nTopicArn\n{TOPIC}\nType\n{kind}\n"
        )
    };
    let digest = if version == "1" { "-sha1" } else { "-sha256" };
    let mut openssl = Command::new(tools::program(&tools::OPENSSL))
        .args(["dgst", digest, "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    openssl.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let signature = openssl.wait_with_output().unwrap().stdout;
    serde_json::json!({
        "Type": kind,
        "MessageId": id,
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": timestamp,
        "Token": "tok",
        "SubscribeURL": subscribe,
        "SignatureVersion": version,
        "Signature": base64::engine::general_purpose::STANDARD.encode(signature),
        "SigningCertURL": cert_url,
    })
}

fn post(server: &Server, body: &serde_json::Value) -> u16 {
    let (code, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "x-amz-sns-message-type: Notification",
        "-H",
        "content-type: text/plain; charset=UTF-8",
        "--data-binary",
        &body.to_string(),
        &format!("{}/events/ses", server.base),
    ]);
    code
}

fn suppressed(project: &Project) -> Vec<(String, String)> {
    let r = run(project.command().args(["suppress", "list", "--format", "json"]));
    let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut out: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["email"].as_str().unwrap().to_owned(), s["kind"].to_string()))
        .collect();
    out.sort();
    out
}

fn bounce(email: &str) -> String {
    serde_json::json!({
        "notificationType": "Bounce",
        "bounce": { "bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{ "emailAddress": email, "action": "failed", "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown" }] },
        "mail": { "source": "newsletter@openinfra.dev", "destination": [email] }
    })
    .to_string()
}

#[test]
fn signed_bounces_and_complaints_suppress_and_anything_else_changes_nothing() {
    needs!(tools::SMTP_SINK, tools::OPENSSL, tools::CURL);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(4),
        &format!(
            "throttle: {{ rate: off }}\nbounces: {{ ses_events: {{ topics: [\"{TOPIC}\"], settle_every: 200ms }} }}\n"
        ),
    );
    assert_eq!(run(project.command().args(["send", "small", "--yes"])).code, 0);

    let pki = Pki::new();
    let (cert, key) = pki.issue("sns", &["sns.us-east-1.amazonaws.com"], 2);
    let (signer_cert, signer_key) = pki.issue("signer", &["signer.example"], 2);
    let site = tempfile::tempdir().unwrap();
    std::fs::copy(&signer_cert, site.path().join("SimpleNotificationService-test.pem")).unwrap();
    std::fs::write(site.path().join("confirm.txt"), "<ConfirmSubscriptionResponse/>").unwrap();
    let https = Https::start(site.path(), &cert, &key);
    let proxy = proxy(https.port);
    let server = Server::start_with_env(
        &project,
        &[
            ("HTTPS_PROXY", format!("http://127.0.0.1:{proxy}")),
            ("SSL_CERT_FILE", pki.ca().display().to_string()),
        ],
    );

    // SNS asks to confirm: the SubscribeURL is visited.
    let confirm = signed(&signer_key, "2", "SubscriptionConfirmation", "c-1", "confirm", CERT_URL);
    assert_eq!(post(&server, &confirm), 200);
    let served = std::fs::read_to_string(site.path().join("served.log")).unwrap_or_default();
    assert!(
        served.contains("confirm.txt"),
        "the subscription was confirmed: {served}"
    );

    // A bounce (SignatureVersion 1) and a complaint (2, as a configuration set's event).
    let hard = signed(
        &signer_key,
        "1",
        "Notification",
        "n-1",
        &bounce("user1@example.org"),
        CERT_URL,
    );
    assert_eq!(post(&server, &hard), 200);
    let complaint = serde_json::json!({
        "eventType": "Complaint",
        "complaint": { "complainedRecipients": [{ "emailAddress": "user2@example.org" }], "complaintFeedbackType": "abuse" },
        "mail": { "source": "newsletter@openinfra.dev" }
    })
    .to_string();
    assert_eq!(
        post(
            &server,
            &signed(&signer_key, "2", "Notification", "n-2", &complaint, CERT_URL)
        ),
        200
    );

    // Changed after signing; a topic not ours; a certificate from elsewhere: refused.
    let mut tampered = signed(
        &signer_key,
        "2",
        "Notification",
        "n-3",
        &bounce("user3@example.org"),
        CERT_URL,
    );
    tampered["Message"] = bounce("user0@example.org").into();
    assert_eq!(post(&server, &tampered), 403);
    let mut foreign = signed(
        &signer_key,
        "2",
        "Notification",
        "n-4",
        &bounce("user0@example.org"),
        CERT_URL,
    );
    foreign["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:theirs".into();
    assert_eq!(post(&server, &foreign), 403);
    let elsewhere = signed(
        &signer_key,
        "2",
        "Notification",
        "n-5",
        &bounce("user0@example.org"),
        "https://evil.example/SimpleNotificationService-test.pem",
    );
    assert_eq!(post(&server, &elsewhere), 403);

    support::wait_until("the events are settled", || suppressed(&project).len() >= 2);
    // SNS delivers a message again when unsure: nothing changes the second time.
    assert_eq!(post(&server, &hard), 200);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let list = suppressed(&project);
    let emails: Vec<&str> = list.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(emails, ["user1@example.org", "user2@example.org"], "{list:?}");
    assert_eq!(list[0].1, "\"hard-bounce\"", "{list:?}");
    assert_eq!(list[1].1, "\"complaint\"", "{list:?}");
}

#[test]
fn forged_messages_cost_no_fetch_and_cannot_write_log_lines() {
    needs!(tools::OPENSSL, tools::CURL);
    let project = Project::new(
        1,
        &csv(2),
        &format!("bounces: {{ ses_events: {{ topics: [\"{TOPIC}\", \"{TOPIC}\\nINFO forged\"] }} }}\n"),
    );
    let pki = Pki::new();
    let (cert, key) = pki.issue("sns", &["sns.us-east-1.amazonaws.com"], 2);
    let (signer_cert, signer_key) = pki.issue("signer", &["signer.example"], 2);
    let site = tempfile::tempdir().unwrap();
    std::fs::copy(&signer_cert, site.path().join("SimpleNotificationService-test.pem")).unwrap();
    // Certificates of another key under every name a forgery gives: served (and logged by
    // s_server) when fetched, and no signature verifies with them.
    let mut names: Vec<String> = (0..300)
        .map(|i| format!("SimpleNotificationService-forged{i}.pem"))
        .collect();
    names.extend(["SimpleNotificationService-forged-x.pem".into(), "forged.pem".into()]);
    for name in &names {
        std::fs::copy(&cert, site.path().join(name)).unwrap();
    }
    let https = Https::start(site.path(), &cert, &key);
    let proxy = proxy(https.port);
    let log = project.dir.path().join("serve.log");
    let server = Server::start_logging(
        &project,
        &[
            ("HTTPS_PROXY", format!("http://127.0.0.1:{proxy}")),
            ("SSL_CERT_FILE", pki.ca().display().to_string()),
            ("NEWSLETTER_LOG", "info".into()),
        ],
        std::fs::File::create(&log).unwrap(),
    );
    let fetched = || {
        std::fs::read_to_string(site.path().join("served.log"))
            .unwrap_or_default()
            .matches("forged")
            .count()
    };

    // Malformed: no fetch at all.
    let mut bad = signed(&signer_key, "2", "Notification", "f-0", "{}", CERT_URL);
    bad["Signature"] = "AAAA".into();
    bad["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-forged-x.pem".into();
    assert_eq!(post(&server, &bad), 403);
    let mut query = signed(&signer_key, "2", "Notification", "f-1", "{}", CERT_URL);
    query["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com/forged.pem?x=1".into();
    assert_eq!(post(&server, &query), 403);
    assert_eq!(fetched(), 0);
    // 300 well-formed forgeries, each naming a certificate of its own: at most ten fetched.
    let codes: Vec<u16> = (0..300)
        .map(|i| {
            let url = format!("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-forged{i}.pem");
            post(
                &server,
                &signed(&signer_key, "2", "Notification", &format!("g-{i}"), "{}", &url),
            )
        })
        .collect();
    assert!(codes.iter().all(|c| *c == 403 || *c == 503), "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 290, "{codes:?}");
    assert!((1..=10).contains(&fetched()), "{} fetches", fetched());
    // Past the limit a genuine message naming a certificate not fetched yet waits too: 503,
    // which SNS answers by sending again later.
    let genuine = signed(
        &signer_key,
        "2",
        "Notification",
        "ok-1",
        &bounce("user1@example.org"),
        CERT_URL,
    );
    assert_eq!(post(&server, &genuine), 503);

    // A topic with a line break in it writes no line of its own.
    let mut forged = signed(&signer_key, "2", "Notification", "h-1", "{}", CERT_URL);
    forged["TopicArn"] = format!("{TOPIC}\nINFO forged: everything is fine").into();
    assert_eq!(post(&server, &forged), 403);
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\\nINFO forged: everything is fine"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("INFO forged")), "{text}");
}
