//! TLS to a relay, for real: aiosmtpd with certificates from a private CA made by the test,
//! STARTTLS and implicit TLS with AUTH, XOAUTH2 against a local token endpoint, and each
//! way a handshake fails, as one line that says what to change.

use crate::support;
use crate::support::tools;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::smtpd::{Pki, Smtpd};
use support::{Project, csv, run};

fn project(smtp: String, extra: &str) -> Project {
    Project::new(1, &csv(5), &format!("throttle: {{ rate: off }}\n{extra}")).with_smtp(&smtp)
}

#[test]
fn starttls_and_implicit_tls_to_a_private_ca_deliver_everything_with_auth() {
    needs!(tools::OPENSSL, tools::AIOSMTPD);
    let pki = Pki::new();
    let cert = pki.issue("server", &["localhost", "127.0.0.1"], 2);
    // STARTTLS with AUTH PLAIN; implicit TLS with only AUTH LOGIN offered.
    for (mode, security, exclude) in [("starttls", "starttls", "LOGIN"), ("tls", "tls", "PLAIN")] {
        let server = Smtpd::start(
            mode,
            Some(&cert),
            &[
                "--user",
                "sender@openinfra.dev",
                "--password",
                "s3cret",
                "--exclude",
                exclude,
            ],
        );
        let smtp = format!(
            "{{ host: localhost, port: {}, security: {security}, username: sender@openinfra.dev, ca_file: {}, timeout: 10s }}",
            server.port,
            pki.ca().display()
        );
        let project = project(smtp, "");
        let r = run(project
            .command()
            .args(["send", "small", "--yes"])
            .env("NEWSLETTER_SMTP_PASSWORD", "s3cret"));
        assert_eq!(r.code, 0, "{mode}: {}", r.stderr);
        let received = server.received();
        assert_eq!(received.len(), 5, "{mode}");
        for m in &received {
            assert_eq!(m.meta["tls"], true, "{mode}");
            // Our preference, which Python's ssl (OpenSSL) follows: AES-128-GCM.
            assert_eq!(m.meta["cipher"], "TLS_AES_128_GCM_SHA256", "{mode}");
            assert_eq!(m.meta["login"], "sender@openinfra.dev", "{mode}");
            assert!(
                support::header(&m.text, "Message-ID").is_some(),
                "{mode}: a whole message"
            );
        }
        let mut to: Vec<String> = received
            .iter()
            .map(|m| m.meta["to"][0].as_str().unwrap().to_owned())
            .collect();
        to.sort();
        to.dedup();
        assert_eq!(to.len(), 5, "each recipient once: {to:?}");
        assert!(!r.stderr.contains("s3cret") && !r.stdout.contains("s3cret"));
    }
}

/// A send against `server` with `security` and `ca_file`, expected to fail before sending.
fn refused(server: &Smtpd, security: &str, ca_file: Option<&std::path::Path>, timeout: &str) -> (String, Duration) {
    let ca = ca_file
        .map(|p| format!(", ca_file: {}", p.display()))
        .unwrap_or_default();
    let smtp = format!(
        "{{ host: localhost, port: {}, security: {security}, timeout: {timeout}{ca} }}",
        server.port
    );
    let project = project(smtp, "");
    let started = Instant::now();
    let r = run(project.command().args(["send", "small", "--yes"]));
    let elapsed = started.elapsed();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    for debug in [
        "Other(",
        "Error(",
        "Connection error",
        "InvalidContentType",
        "CaUsedAsEndEntity",
    ] {
        assert!(!r.stderr.contains(debug), "no debug words: {}", r.stderr);
    }
    assert!(server.received().is_empty());
    (r.stderr, elapsed)
}

#[test]
fn each_certificate_failure_is_one_line_that_says_what_to_change() {
    needs!(tools::OPENSSL, tools::AIOSMTPD);
    let pki = Pki::new();
    let expired = Smtpd::start("starttls", Some(&pki.issue("expired", &["localhost"], -1)), &[]);
    let (err, _) = refused(&expired, "starttls", Some(&pki.ca()), "10s");
    assert!(
        err.contains("the server's certificate has expired") || err.contains("the server's certificate expired on 20"),
        "{err}"
    );
    assert!(err.contains("must renew it"), "{err}");
    assert!(
        !err.contains("smtp.security"),
        "no mode hint where the mode is right: {err}"
    );

    let wrong_name = Smtpd::start("tls", Some(&pki.issue("other", &["mail.example.org"], 2)), &[]);
    let (err, _) = refused(&wrong_name, "tls", Some(&pki.ca()), "10s");
    assert!(err.contains("is for mail.example.org, not `localhost`"), "{err}");

    let self_signed = Smtpd::start("starttls", Some(&pki.self_signed()), &[]);
    let (err, _) = refused(&self_signed, "starttls", Some(&pki.ca()), "10s");
    assert!(
        err.contains("the server presents a self-signed CA certificate"),
        "{err}"
    );
    assert!(err.contains("smtp.ca_file"), "{err}");

    // A good certificate, but its CA is not named: the built-in and system roots do not know it.
    let untrusted = Smtpd::start("tls", Some(&pki.issue("good", &["localhost"], 2)), &[]);
    let (err, _) = refused(&untrusted, "tls", None, "10s");
    assert!(err.contains("add that CA's certificate (PEM) to smtp.ca_file"), "{err}");
    // ca_only with the right CA trusts it.
    let smtp = format!(
        "{{ host: localhost, port: {}, security: tls, ca_file: {}, ca_only: true, timeout: 10s }}",
        untrusted.port,
        pki.ca().display()
    );
    let r = run(project(smtp, "").command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(untrusted.received().len(), 5);
}

#[test]
fn a_wrong_mode_for_the_port_is_named_quickly() {
    needs!(tools::OPENSSL, tools::AIOSMTPD);
    let pki = Pki::new();
    let cert = pki.issue("server", &["localhost"], 2);
    // Implicit TLS against a STARTTLS port: the server greets in plain text.
    let starttls_port = Smtpd::start("starttls", Some(&cert), &[]);
    let (err, _) = refused(&starttls_port, "tls", Some(&pki.ca()), "30s");
    assert!(err.contains("answered in plain text"), "{err}");
    assert!(err.contains("set smtp.security: starttls"), "{err}");
    // STARTTLS against an implicit-TLS port: the server waits for a handshake and never greets.
    let tls_port = Smtpd::start("tls", Some(&cert), &[]);
    let (err, elapsed) = refused(&tls_port, "starttls", Some(&pki.ca()), "30s");
    assert!(err.contains("set smtp.security: tls"), "{err}");
    assert!(
        elapsed < Duration::from_secs(15),
        "found out well before the 30 s timeout: {elapsed:?}"
    );
}

#[test]
fn a_refused_login_names_the_user_and_what_to_check() {
    needs!(tools::OPENSSL, tools::AIOSMTPD);
    let pki = Pki::new();
    let server = Smtpd::start(
        "starttls",
        Some(&pki.issue("server", &["localhost"], 2)),
        &["--user", "sender@openinfra.dev", "--password", "right"],
    );
    let smtp = format!(
        "{{ host: localhost, port: {}, security: starttls, username: sender@openinfra.dev, ca_file: {}, timeout: 10s }}",
        server.port,
        pki.ca().display()
    );
    let r = run(project(smtp, "")
        .command()
        .args(["send", "small", "--yes"])
        .env("NEWSLETTER_SMTP_PASSWORD", "wrong"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("refused the login of `sender@openinfra.dev`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("NEWSLETTER_SMTP_PASSWORD"), "{}", r.stderr);
    assert!(!r.stderr.contains("wrong"), "{}", r.stderr);
}

/// An OAuth 2.0 token endpoint on loopback: each POST gets `tok-N` (N counting from 1),
/// valid for `lifetime` seconds; the request bodies are kept.
struct TokenEndpoint {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    fn start(lifetime: u64) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(String::from_utf8(body).unwrap());
                    seen.len()
                };
                let json =
                    format!("{{\"access_token\":\"tok-{n}\",\"token_type\":\"Bearer\",\"expires_in\":{lifetime}}}");
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                )
                .unwrap();
            }
        });
        TokenEndpoint { port, bodies }
    }
}

fn oauth_send(
    server: &Smtpd,
    pki: &Pki,
    token_url: Option<&str>,
    concurrency: u32,
    env: &[(&str, &str)],
) -> support::Run {
    let oauth = token_url
        .map(|url| format!(", oauth: {{ token_url: \"{url}\", client_id: newsletter-app, scope: \"https://outlook.office365.com/.default\" }}"))
        .unwrap_or_default();
    let smtp = format!(
        "{{ host: localhost, port: {}, security: starttls, username: sender@openinfra.dev, auth: xoauth2, ca_file: {}, timeout: 10s{oauth} }}",
        server.port,
        pki.ca().display()
    );
    let throttle = format!("throttle: {{ rate: off, concurrency: {concurrency} }}\n");
    let project = Project::new(1, &csv(8), &throttle).with_smtp(&smtp);
    run(project
        .command()
        .args(["send", "small", "--yes"])
        .envs(env.iter().copied()))
}

#[test]
fn xoauth2_with_a_token_from_the_environment_or_the_client_credentials_flow() {
    needs!(tools::OPENSSL, tools::AIOSMTPD);
    let pki = Pki::new();
    let cert = pki.issue("server", &["localhost"], 2);
    let server = Smtpd::start(
        "starttls",
        Some(&cert),
        &["--user", "sender@openinfra.dev", "--token", "env-token,tok-1"],
    );

    let r = oauth_send(&server, &pki, None, 1, &[("NEWSLETTER_SMTP_OAUTH_TOKEN", "env-token")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.received().len(), 8);
    assert!(
        server
            .received()
            .iter()
            .all(|m| m.meta["login"] == "sender@openinfra.dev")
    );

    // A token valid for an hour is fetched once, whatever the number of connections.
    let endpoint = TokenEndpoint::start(3600);
    let url = format!("http://127.0.0.1:{}/oauth2/v2.0/token", endpoint.port);
    let r = oauth_send(
        &server,
        &pki,
        Some(&url),
        4,
        &[("NEWSLETTER_SMTP_OAUTH_CLIENT_SECRET", "client-secret")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.received().len(), 16);
    let bodies = endpoint.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    for field in [
        "grant_type=client_credentials",
        "client_id=newsletter-app",
        "client_secret=client-secret",
        "scope=https%3A%2F%2Foutlook.office365.com%2F.default",
    ] {
        assert!(bodies[0].contains(field), "{field} in {}", bodies[0]);
    }
    assert!(!r.stderr.contains("client-secret"));
}

#[test]
fn an_expiring_xoauth2_token_is_replaced_before_a_new_connection_uses_it() {
    needs!(tools::OPENSSL, tools::AIOSMTPD);
    let pki = Pki::new();
    let cert = pki.issue("server", &["localhost"], 2);
    let server = Smtpd::start(
        "starttls",
        Some(&cert),
        &["--user", "sender@openinfra.dev", "--token", "tok-1,tok-2,tok-3,tok-4"],
    );
    // Each token expires within the refresh margin: every connection gets a fresh one.
    let endpoint = TokenEndpoint::start(60);
    let url = format!("http://127.0.0.1:{}/token", endpoint.port);
    let r = oauth_send(
        &server,
        &pki,
        Some(&url),
        3,
        &[("NEWSLETTER_SMTP_OAUTH_CLIENT_SECRET", "client-secret")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.received().len(), 8);
    assert_eq!(endpoint.bodies.lock().unwrap().len(), 3, "one token per connection");

    // A refused token: one line naming the mailbox and what to check.
    let r = oauth_send(&server, &pki, None, 1, &[("NEWSLETTER_SMTP_OAUTH_TOKEN", "stale")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("refused the login of `sender@openinfra.dev`: the access token was not accepted"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("stale"), "{}", r.stderr);
}

#[test]
fn the_system_store_is_trusted_and_ssl_cert_file_names_it() {
    needs!(tools::OPENSSL, tools::AIOSMTPD);
    // No ca_file: the private CA is trusted because SSL_CERT_FILE names it as the system's
    // store, as `update-ca-certificates` would have added it.
    let pki = Pki::new();
    let server = Smtpd::start("tls", Some(&pki.issue("server", &["localhost"], 2)), &[]);
    let smtp = format!(
        "{{ host: localhost, port: {}, security: tls, timeout: 10s }}",
        server.port
    );
    let r = run(project(smtp, "")
        .command()
        .args(["send", "small", "--yes"])
        .env("SSL_CERT_FILE", pki.ca()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.received().len(), 5);
}
