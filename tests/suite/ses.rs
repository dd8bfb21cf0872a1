//! A relay of `kind: ses` against moto's SES server (PyPI `moto[server]`, an implementation
//! that is not ours): 200 messages arrive with our exact bytes (Message-IDs, DKIM signatures
//! verified by dkimpy on moto's copies), and throttling answers injected by a proxy in front
//! of moto are waited out without failing or doubling anyone.

use crate::support;
use crate::support::tools;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use support::{Project, csv, free_port, root, run};

/// moto's server on a free port, with the sender's domain verified (moto checks it).
struct Moto {
    port: u16,
    child: Child,
}

impl Moto {
    fn start() -> Moto {
        let port = free_port();
        let child = Command::new(tools::program(&tools::MOTO))
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server: run scripts/test, which installs moto[server]");
        let moto = Moto { port, child };
        // The v1 call: moto's v2 CreateEmailIdentity does not pass its own check. moto may
        // take a moment to answer after it listens.
        let body = "Action=VerifyDomainIdentity&Version=2010-12-01&Domain=openinfra.dev";
        support::wait_until("moto answers", || {
            moto.try_call("POST", "/", body)
                .is_some_and(|(status, _)| status == 200)
        });
        moto
    }

    fn call(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.try_call(method, path, body).expect("moto answers")
    }

    /// A request with an Authorization header naming us-east-1 (moto reads the region there).
    fn try_call(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).ok()?;
        let status = reply.get(9..12)?.parse().ok()?;
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    }

    /// Every raw message moto took, as sent.
    fn raw_messages(&self) -> Vec<String> {
        let (status, body) = self.call("GET", "/moto-api/data.json", "");
        assert_eq!(status, 200);
        let data: serde_json::Value = serde_json::from_str(&body).unwrap();
        data["ses"]["RawMessage"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["raw_data"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP proxy in front of moto: it answers the sending quota itself (moto's is 1 message a
/// second) and refuses every `throttle_every`-th SendEmail with SES's throttling answer.
struct Proxy {
    port: u16,
    throttled: Arc<AtomicUsize>,
    /// The head of every request it took.
    heads: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(upstream: u16, throttle_every: usize) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let throttled = Arc::new(AtomicUsize::new(0));
        let sends = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (counter, kept) = (Arc::clone(&throttled), Arc::clone(&heads));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (throttled, sends, heads) = (Arc::clone(&counter), Arc::clone(&sends), Arc::clone(&kept));
                std::thread::spawn(move || {
                    let _ = relay(client, upstream, throttle_every, &throttled, &sends, &heads);
                });
            }
        });
        Proxy { port, throttled, heads }
    }
}

fn respond(client: &mut TcpStream, status: &str, extra: &str, body: &str) -> std::io::Result<()> {
    write!(
        client,
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// One request: read, answered here or passed to moto, then the connection closes.
fn relay(
    mut client: TcpStream,
    upstream: u16,
    throttle_every: usize,
    throttled: &AtomicUsize,
    sends: &AtomicUsize,
    heads: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    heads.lock().unwrap().push(head.clone());
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    if request_line.starts_with("GET /v2/email/account") {
        let quota = r#"{"SendQuota":{"Max24HourSend":50000.0,"MaxSendRate":200.0,"SentLast24Hours":0.0}}"#;
        return respond(&mut client, "200 OK", "Content-Type: application/json\r\n", quota);
    }
    if request_line.starts_with("POST /v2/email/outbound-emails")
        && sends.fetch_add(1, Ordering::SeqCst) % throttle_every == throttle_every - 1
    {
        throttled.fetch_add(1, Ordering::SeqCst);
        return respond(
            &mut client,
            "429 Too Many Requests",
            "Content-Type: application/json\r\nx-amzn-ErrorType: TooManyRequestsException:\r\n",
            r#"{"message":"Maximum sending rate exceeded."}"#,
        );
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    // moto answers and closes: the reply is read to its end.
    let head = head.replace("Connection: keep-alive", "Connection: close");
    server.write_all(head.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n").as_bytes())?;
    server.write_all(&body)?;
    let mut reply = Vec::new();
    server.read_to_end(&mut reply)?;
    client.write_all(&reply)
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    support::header(message, name)
}

#[test]
fn ses_gets_our_exact_bytes_and_throttling_is_waited_out() {
    needs!(tools::MOTO, tools::PYTHON3);
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port, 10);
    let read = |name: &str| std::fs::read_to_string(root().join("tests/fixtures").join(name)).unwrap();
    let project = Project::new(
        0,
        &csv(200),
        "throttle: { rate: off, retry_delay: 50ms }\ndkim: { selector: rsa2026, ed25519_selector: ed2026 }\n",
    )
    .with_smtp(&format!(
        "{{ kind: ses, region: us-east-1, endpoint: \"http://127.0.0.1:{}\", concurrency: 4 }}",
        proxy.port
    ));
    let r = run(project
        .command()
        .args(["send", "small", "--yes"])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NEWSLETTER_DKIM_PRIVATE_KEY", read("dkim-test-rsa.pem"))
        .env("NEWSLETTER_DKIM_ED25519_PRIVATE_KEY", read("dkim-test-ed25519.pem")));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Sent 200 of 200"), "{}", r.stdout);
    assert!(
        proxy.throttled.load(Ordering::SeqCst) >= 19,
        "the proxy throttled one in ten"
    );

    let raw = moto.raw_messages();
    let mut per_reader: HashMap<String, usize> = HashMap::new();
    for message in &raw {
        *per_reader.entry(header(message, "To").unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(raw.len(), 200, "every message once");
    assert_eq!(per_reader.len(), 200, "every reader once");

    // Our Message-IDs, as the ledger recorded them.
    let db = rusqlite::Connection::open(project.dir.path().join("state/newsletter.db")).unwrap();
    let recorded: Vec<String> = db
        .prepare("SELECT message_id FROM deliveries WHERE status = 'sent' AND relay = 'ses-us-east-1'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recorded.len(), 200);
    for message in &raw {
        let id = header(message, "Message-ID").unwrap();
        let id = id.trim().trim_start_matches('<').trim_end_matches('>');
        assert!(
            recorded
                .iter()
                .any(|r| r.trim_start_matches('<').trim_end_matches('>') == id),
            "{id} is ours"
        );
    }

    // Both signatures verify in dkimpy on moto's copies.
    let dir = tempfile::tempdir().unwrap();
    let r = run(project
        .command()
        .args(["dkim", "--format", "json"])
        .env("NEWSLETTER_DKIM_PRIVATE_KEY", read("dkim-test-rsa.pem"))
        .env("NEWSLETTER_DKIM_ED25519_PRIVATE_KEY", read("dkim-test-ed25519.pem")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let records = dir.path().join("records.json");
    std::fs::write(&records, &r.stdout).unwrap();
    let files: Vec<_> = raw
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, m)| {
            let path = dir.path().join(format!("{i}.eml"));
            std::fs::write(&path, m).unwrap();
            path
        })
        .collect();
    let out = Command::new(tools::program(&tools::PYTHON3))
        .arg(root().join("tests/suite/support/dkim_verify.py"))
        .arg(&records)
        .args(&files)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report.matches(" pass").count(), 10, "{report}");
    assert!(
        report.contains("rsa-sha256 pass") && report.contains("ed25519-sha256 pass"),
        "{report}"
    );
}

#[test]
fn an_unverified_sender_is_the_relay_s_refusal_and_nobody_is_failed() {
    needs!(tools::MOTO);
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port, usize::MAX);
    let project = Project::new(0, &csv(5), "throttle: { rate: off }\n");
    let config = project.dir.path().join("newsletter.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("newsletter@openinfra.dev", "news@unverified.example"),
    )
    .unwrap();
    let project = project.with_smtp(&format!(
        "{{ kind: ses, region: us-east-1, endpoint: \"http://127.0.0.1:{}\", concurrency: 1 }}",
        proxy.port
    ));
    let r = run(project
        .command()
        .args(["send", "small", "--yes"])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("SES 400 MessageRejected"),
        "SES's words: {}",
        r.stderr
    );
    assert!(moto.raw_messages().is_empty());
    let status = project.status("small");
    assert_eq!(status["failed"], 0, "nobody failed for the relay's refusal: {status}");
}

/// EC2's instance metadata service (IMDSv2) as far as credentials go: a session token, the
/// role's name, its temporary keys.
fn imds() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let mut reader = BufReader::new(client.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let lower = head.to_ascii_lowercase();
            let with_token = lower.contains("x-aws-ec2-metadata-token: imds-session\r\n");
            let (status, body) = match head.lines().next().unwrap_or_default() {
                l if l.starts_with("PUT /latest/api/token ") && lower.contains("x-aws-ec2-metadata-token-ttl-seconds") => {
                    ("200 OK", "imds-session".to_owned())
                }
                l if !with_token => ("401 Unauthorized", format!("no token: {l}")),
                l if l.starts_with("GET /latest/meta-data/iam/security-credentials/ ") => ("200 OK", "newsletter-role".to_owned()),
                l if l.starts_with("GET /latest/meta-data/iam/security-credentials/newsletter-role ") => (
                    "200 OK",
                    r#"{"Code":"Success","AccessKeyId":"ASIAIMDSTEST","SecretAccessKey":"imds-secret","Token":"imds-session-token","Expiration":"2099-01-01T00:00:00Z"}"#.to_owned(),
                ),
                _ => ("404 Not Found", String::new()),
            };
            let _ = respond(&mut client, status, "", &body);
        }
    });
    port
}

#[test]
fn without_keys_in_the_environment_the_instance_role_signs() {
    needs!(tools::MOTO);
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port, usize::MAX);
    let metadata = imds();
    let home = tempfile::tempdir().unwrap();
    let project = Project::new(0, &csv(3), "throttle: { rate: off }\n").with_smtp(&format!(
        "{{ kind: ses, region: us-east-1, endpoint: \"http://127.0.0.1:{}\", concurrency: 1 }}",
        proxy.port
    ));
    let mut command = project.command();
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
    ] {
        command.env_remove(var);
    }
    let r = run(command.args(["send", "small", "--yes"]).env("HOME", home.path()).env(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        format!("http://127.0.0.1:{metadata}"),
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(moto.raw_messages().len(), 3);
    let heads = proxy.heads.lock().unwrap();
    let sends: Vec<&String> = heads
        .iter()
        .filter(|h| h.starts_with("POST /v2/email/outbound-emails"))
        .collect();
    assert_eq!(sends.len(), 3);
    for head in sends {
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("credential=asiaimdstest/"),
            "signed with the role's key: {head}"
        );
        assert!(lower.contains("x-amz-security-token: imds-session-token"), "{head}");
    }
}
