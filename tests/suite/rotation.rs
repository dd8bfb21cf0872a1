//! The unsubscribe secret kept (issue 37, item 3): a `send` or `serve` with another secret than
//! the one that signed the issues already sent is refused, saying how to rotate; a rotation
//! (the old secret as the previous one) goes through, and the old issues' links still work.
//! Every secret may come from a file too.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::tools;
use support::serve::{Server, one_click};
use support::{Project, Sink, csv, run, scheduled_issue};

/// Another secret, as a new shell's `openssl rand -base64 32` would make.
const OTHER: &str = "c2Vjb25kLXNlY3JldC1tYWRlLWJ5LWEtbmV3LXNoZWxs";

#[test]
fn a_changed_secret_is_refused_until_it_is_a_rotation() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(2), "throttle: { rate: off }\n")
        .with_issues(&[("2025-06", scheduled_issue(None)), ("2025-07", scheduled_issue(None))]);
    let r = run(project.command().args(["send", "2025-06", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count(), 2);

    // A new secret by mistake: nothing is sent, and the line says what to do.
    let r = run(project
        .command()
        .env("NEWSLETTER_UNSUBSCRIBE_SECRET", OTHER)
        .args(["send", "2025-07", "--yes"]));
    assert_ne!(r.code, 0);
    for words in [
        "NEWSLETTER_UNSUBSCRIBE_SECRET is not the secret",
        "2025-06",
        "NEWSLETTER_UNSUBSCRIBE_SECRET_PREVIOUS",
    ] {
        assert!(r.stderr.contains(words), "{words}: {}", r.stderr);
    }
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(sink.count(), 2, "nothing sent");
    // serve too refuses to start with it.
    let mut serve = project
        .std_command()
        .env("NEWSLETTER_UNSUBSCRIBE_SECRET", OTHER)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", support::free_port())])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = serve.kill();
            panic!("serve started with another secret");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());

    // The rotation: the new secret, the old one as the previous.
    let rotated = |cmd: &mut assert_cmd::Command| {
        cmd.env("NEWSLETTER_UNSUBSCRIBE_SECRET", OTHER)
            .env("NEWSLETTER_UNSUBSCRIBE_SECRET_PREVIOUS", support::SECRET);
    };
    let mut send = project.command();
    rotated(&mut send);
    let r = run(send.args(["send", "2025-07", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count(), 4);
    let server = Server::start_with_env(
        &project,
        &[
            ("NEWSLETTER_UNSUBSCRIBE_SECRET", OTHER.to_owned()),
            ("NEWSLETTER_UNSUBSCRIBE_SECRET_PREVIOUS", support::SECRET.to_owned()),
        ],
    );
    // June's link, signed with the old secret, still unsubscribes.
    let (_, text) = sink
        .messages()
        .into_iter()
        .find(|(r, m)| r[0] == "user0@example.org" && m.contains("Message-ID: <2025-06."))
        .unwrap();
    let unfolded = text.replace("\r\n ", " ").replace("\n ", " ");
    let header = unfolded.lines().find(|l| l.starts_with("List-Unsubscribe:")).unwrap();
    let june = header.split('<').nth(1).unwrap().split('>').next().unwrap();
    let june = june.replace("https://openinfra.dev", &server.base);
    assert_eq!(one_click(&june).0, 200);
    drop(server);
    // From now on the new secret alone is the one kept.
    let r = run(project
        .command()
        .env("NEWSLETTER_UNSUBSCRIBE_SECRET", OTHER)
        .args(["send", "2025-07", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Every secret may come from a file, `NAME_FILE` (issue 37, item 14): a DKIM key spans lines,
/// which a secrets file of one variable per line cannot hold. The records `dkim` prints and a
/// send signed and made with secrets read from files are the same as with the values; a file
/// that cannot be read, or a secret set both ways, stops before anything else.
#[test]
fn secrets_may_come_from_files() {
    needs!(tools::SMTP_SINK, tools::DKIMPY);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(1),
        "throttle: { rate: off }\ndkim: { selector: rsa2026 }\n",
    )
    .with_issues(&[("2025-06", scheduled_issue(None))]);
    let key = support::root().join("tests/fixtures/dkim-test-rsa.pem");
    let pem = std::fs::read_to_string(&key).unwrap();
    let secret_file = project.dir.path().join("unsubscribe.secret");
    std::fs::write(&secret_file, format!("{}\n", support::SECRET)).unwrap();

    let by_value = run(project
        .command()
        .env("NEWSLETTER_DKIM_PRIVATE_KEY", &pem)
        .args(["dkim", "--format", "json"]));
    let by_file = run(project
        .command()
        .env("NEWSLETTER_DKIM_PRIVATE_KEY_FILE", &key)
        .args(["dkim", "--format", "json"]));
    assert_eq!(by_file.code, 0, "{}", by_file.stderr);
    assert_eq!(by_file.stdout, by_value.stdout);

    let r = run(project
        .command()
        .env_remove("NEWSLETTER_UNSUBSCRIBE_SECRET")
        .env("NEWSLETTER_UNSUBSCRIBE_SECRET_FILE", &secret_file)
        .env("NEWSLETTER_DKIM_PRIVATE_KEY_FILE", &key)
        .args(["send", "2025-06", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Signed with the key from its file: dkimpy verifies it against the records printed.
    let (_, dump) = sink.messages().remove(0);
    let received = project.dir.path().join("received.eml");
    std::fs::write(&received, support::as_received(&dump)).unwrap();
    let records: serde_json::Value = serde_json::from_str(&by_file.stdout).unwrap();
    let (ok, report) = support::dkimpy(project.dir.path(), &records, &[received]);
    assert!(ok && report.contains(" pass"), "{report}");
    // The ledger kept the secret read from the file: the same one the tests use.
    let r = run(project
        .command()
        .env("NEWSLETTER_DKIM_PRIVATE_KEY_FILE", &key)
        .args(["send", "2025-06", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let missing = project.dir.path().join("nowhere.pem");
    let r = run(project
        .command()
        .env("NEWSLETTER_DKIM_PRIVATE_KEY_FILE", &missing)
        .args(["dkim"]));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("NEWSLETTER_DKIM_PRIVATE_KEY_FILE: cannot read") && r.stderr.contains("nowhere.pem"),
        "{}",
        r.stderr
    );
    let r = run(project
        .command()
        .env("NEWSLETTER_UNSUBSCRIBE_SECRET_FILE", &secret_file)
        .args(["send", "2025-06", "--yes"]));
    assert!(
        r.code != 0 && r.stderr.contains("are both set: keep one of them"),
        "{}",
        r.stderr
    );
}
