//! A reader's standing as a history, with real parts: `serve` answering curl, the ledger file
//! read by the sqlite3 program, bounce mail written by Python's mailbox module, messages taken
//! from what smtp-sink received, and strace counting what reached the disk.

use crate::support;
use crate::support::tools;

use serde_json::Value;
use support::serve::{Server, curl, link_in_message, one_click};
use support::{Project, Sink, arf, csv, header, maildir, mailto_in_message, python_mbox_add, run, scheduled_issue};

const CONFIG: &str = "throttle: { rate: off }\n\
    unsubscribe: { url: https://openinfra.dev/newsletter/unsubscribe, mailto: unsub@lists.example.org }\n\
    serve: { request_timeout: 5s }\n";

fn project(sink: &Sink, readers: usize) -> Project {
    Project::new(sink.port, &csv(readers), CONFIG)
        .with_issues(&[("2025-01", scheduled_issue(None)), ("2025-02", scheduled_issue(None))])
}

fn send(project: &Project, issue: &str) {
    let r = run(project.command().args(["send", issue, "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Who received `issue`, sorted.
fn receivers(sink: &Sink, issue: &str) -> Vec<String> {
    let prefix = format!("<{issue}.");
    let mut out: Vec<String> = sink
        .messages()
        .into_iter()
        .filter(|(_, text)| header(text, "Message-ID").is_some_and(|id| id.starts_with(&prefix)))
        .map(|(rcpts, _)| rcpts[0].clone())
        .collect();
    out.sort();
    out
}

fn suppressions(project: &Project) -> Vec<Value> {
    let r = run(project.command().args(["suppress", "list", "--format", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str::<Value>(&r.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn kind_of(project: &Project, email: &str) -> Option<String> {
    suppressions(project)
        .iter()
        .find(|s| s["email"] == email)
        .map(|s| s["kind"].as_str().unwrap().to_owned())
}

/// The Message-ID of the message `rcpt` received.
fn message_id_of(sink: &Sink, rcpt: &str) -> String {
    sink.messages()
        .into_iter()
        .find(|(r, _)| r[0] == rcpt)
        .map(|(_, text)| header(&text, "Message-ID").unwrap().to_owned())
        .unwrap()
}

fn resubscribe_url(one_click_url: &str) -> String {
    one_click_url.replace("/unsubscribe?", "/unsubscribe/resubscribe?")
}

fn show(project: &Project, email: &str) -> Value {
    let r = run(project
        .command()
        .args(["subscribers", "show", email, "--format", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn the_strongest_reason_wins_whatever_came_last() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = project(&sink, 4);
    send(&project, "2025-01");
    let server = Server::start(&project);
    let link = |i: usize| link_in_message(&sink, &format!("user{i}@example.org"), &server);

    // One-click, then the operator: the operator's suppression decides, and the reader's old
    // link cannot lift it.
    assert_eq!(one_click(&link(0)).0, 200);
    let r = run(project
        .command()
        .args(["suppress", "add", "user0@example.org", "--reason", "GDPR objection"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("1 already suppressed for a weaker reason"),
        "{}",
        r.stdout
    );
    let (code, page) = curl(&["-X", "POST", &resubscribe_url(&link(0))]);
    assert_eq!(code, 200);
    assert!(page.contains("id=\"kept\""), "{page}");
    assert!(!page.contains("Welcome back"), "{page}");
    assert!(
        page.contains("u****@example.org"),
        "the page names the address, masked: {page}"
    );
    assert!(
        page.contains("mailto:newsletter@openinfra.dev"),
        "whom to write to: {page}"
    );
    assert_eq!(kind_of(&project, "user0@example.org").as_deref(), Some("suppressed"));

    // One-click, then a spam complaint: the complaint decides.
    assert_eq!(one_click(&link(1)).0, 200);
    let message_id = message_id_of(&sink, "user1@example.org");
    let md = project.dir.path().join("bounces");
    maildir(&md, &[("1.complaint", arf("c1", "user1@example.org", &message_id))]);
    let r = run(project
        .command()
        .args(["bounces", "--format", "json", "--maildir"])
        .arg(&md));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("suppressed (complaint; was unsubscribed)"),
        "{}",
        r.stdout
    );
    let (_, page) = curl(&["-X", "POST", &resubscribe_url(&link(1))]);
    assert!(page.contains("id=\"kept\""), "{page}");
    assert_eq!(kind_of(&project, "user1@example.org").as_deref(), Some("complaint"));

    // One-click, then resubscribe from the same page: mailed again.
    assert_eq!(one_click(&link(2)).0, 200);
    let (_, page) = curl(&["-X", "POST", &resubscribe_url(&link(2))]);
    assert!(page.contains("id=\"resubscribed\""), "{page}");
    assert!(page.contains("u****@example.org"), "{page}");
    assert_eq!(kind_of(&project, "user2@example.org"), None);

    // A resubscribe for an address that never left changes nothing and says so.
    let (_, page) = curl(&["-X", "POST", &resubscribe_url(&link(3))]);
    assert!(page.contains("id=\"subscribed\""), "{page}");

    // The next issue reaches exactly the two who may be mailed.
    send(&project, "2025-02");
    assert_eq!(receivers(&sink, "2025-02"), ["user2@example.org", "user3@example.org"]);

    // Each history holds every step with its evidence; the deciding event is named.
    let user0 = show(&project, "user0@example.org");
    let kinds: Vec<&str> = user0["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["unsubscribed", "suppressed", "resubscribed"]);
    assert_eq!(user0["standing"]["standing"], "suppressed");
    assert_eq!(user0["standing"]["kind"], "suppressed");
    assert_eq!(user0["events"][0]["evidence"]["remote"], "127.0.0.1");
    assert_eq!(user0["events"][0]["issue"], "2025-01");
    assert_eq!(user0["events"][1]["evidence"]["note"], "GDPR objection");
    assert_eq!(user0["events"][2]["answers"], user0["events"][0]["id"]);

    // Only the operator lifts a complaint, and the history says what was lifted.
    let r = run(project.command().args([
        "suppress",
        "remove",
        "user1@example.org",
        "--reason",
        "reader asked by phone",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("lifted a spam complaint"), "{}", r.stdout);
    assert_eq!(kind_of(&project, "user1@example.org"), None);
}

#[test]
fn a_mailto_unsubscribe_counts_only_with_the_token_of_a_message() {
    needs!(tools::SMTP_SINK, tools::PYTHON3);
    let sink = Sink::start();
    let project = project(&sink, 3);
    send(&project, "2025-01");
    let (address, subject) = mailto_in_message(&sink, "user1@example.org", None);
    assert_eq!(address, "unsub@lists.example.org");
    assert!(subject.starts_with("unsubscribe ") && subject.len() > 50, "{subject}");
    assert!(!subject.contains("user1"), "the address is not readable in the token");

    let mbox = project.dir.path().join("bounces.mbox");
    // Forged: anyone can write a From, on the list or not.
    python_mbox_add(
        &mbox,
        "From: Victim <victim.ceo@bigcorp.example>\nTo: unsub@lists.example.org\nSubject: unsubscribe\nMessage-ID: <f1@attacker.example>\n\nunsubscribe\n",
    );
    python_mbox_add(
        &mbox,
        "From: user0@example.org\nTo: unsub@lists.example.org\nSubject: unsubscribe\nMessage-ID: <f2@attacker.example>\n\nunsubscribe me\n",
    );
    // Genuine: the reader's client sends the message's mailto, from an alias that forwards
    // to them: the token decides, not the From.
    python_mbox_add(
        &mbox,
        &format!(
            "From: Alias <alias@forwarder.example>\nTo: unsub@lists.example.org\nSubject: {subject}\nMessage-ID: <g1@forwarder.example>\n\n\n"
        ),
    );
    let r = run(project.command().arg("bounces").arg("--mbox").arg(&mbox));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("unverified unsubscribe request from victim.ceo@bigcorp.example"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("unverified unsubscribe request from user0@example.org"),
        "{}",
        r.stdout
    );
    let list = suppressions(&project);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["email"], "user1@example.org");
    assert_eq!(list[0]["kind"], "unsubscribed");
    assert_eq!(list[0]["source"], "mailto");
    let user1 = show(&project, "user1@example.org");
    assert_eq!(user1["events"][0]["issue"], "2025-01");
    send(&project, "2025-02");
    assert_eq!(receivers(&sink, "2025-02"), ["user0@example.org", "user2@example.org"]);
}

#[test]
fn an_acknowledged_unsubscribe_is_on_disk_before_the_answer() {
    needs!(tools::STRACE, tools::CURL);
    let project = Project::new(1, &csv(5), CONFIG);
    let server = Server::start(&project);
    let syncs = support::serve::Syncs::attach(&server, project.dir.path());
    let mut counts = Vec::new();
    for i in 0..5 {
        let r = run(project
            .command()
            .args(["unsubscribe-url", &format!("user{i}@example.org"), "--issue", "2025-01"]));
        let url = r.stdout.trim().replace("https://openinfra.dev", &server.base);
        let before = syncs.count();
        assert_eq!(one_click(&url).0, 200);
        counts.push(syncs.count() - before);
    }
    drop(server);
    drop(syncs);
    // Each POST synced the write-ahead log before its 200 (strace writes a call as it returns).
    assert!(
        counts.iter().all(|&n| n >= 1),
        "syncs per acknowledged POST: {counts:?}"
    );
    assert_eq!(suppressions(&project).len(), 5);
}

#[test]
fn weak_secrets_and_first_release_tokens_are_refused() {
    needs!(tools::CURL);
    let project = Project::new(1, &csv(1), CONFIG);
    for args in [
        vec!["serve", "--listen", "127.0.0.1:1"],
        vec!["send", "small", "--yes"],
        vec!["unsubscribe-url", "user0@example.org"],
    ] {
        for weak in ["changeme", "changemechangemechangemechangeme"] {
            let r = run(project.command().env("NEWSLETTER_UNSUBSCRIBE_SECRET", weak).args(&args));
            assert_eq!(r.code, 2, "{args:?} with {weak}: {}", r.stdout);
            assert!(
                r.stderr.contains("NEWSLETTER_UNSUBSCRIBE_SECRET")
                    && r.stderr.contains("openssl rand -base64 32")
                    && r.stderr.lines().count() == 1,
                "{args:?}: {}",
                r.stderr
            );
        }
    }

    // A first-release token: the address in base64 and a 16-byte HMAC tag.
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(support::SECRET.as_bytes()).unwrap();
    mac.update(b"unsubscribe\0user0@example.org");
    let tag = mac.finalize().into_bytes();
    let token = format!("{}.{}", b64.encode("user0@example.org"), b64.encode(&tag[..16]));
    let server = Server::start(&project);
    let url = format!("{}/newsletter/unsubscribe?token={token}", server.base);
    assert_eq!(one_click(&url).0, 400, "off by default");
    assert!(suppressions(&project).is_empty());
    drop(server);
    let config = project.dir.path().join("newsletter.yaml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "mailto: unsub@lists.example.org }",
        "mailto: unsub@lists.example.org, accept_release_0_tokens: true }",
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&project);
    let url = format!("{}/newsletter/unsubscribe?token={token}", server.base);
    assert_eq!(one_click(&url).0, 200, "accepted when the configuration says so");
    assert_eq!(suppressions(&project).len(), 1);
}

#[test]
fn forget_leaves_no_trace_and_the_list_never_mails_the_address_again() {
    needs!(tools::SMTP_SINK, tools::CURL, tools::SQLITE3);
    let sink = Sink::start();
    let project = project(&sink, 3);
    send(&project, "2025-01");
    let server = Server::start(&project);
    assert_eq!(one_click(&link_in_message(&sink, "user1@example.org", &server)).0, 200);
    drop(server);
    let message_id = message_id_of(&sink, "user1@example.org");
    // A complaint about them, and another reader's bounce whose text names them.
    let md = project.dir.path().join("bounces");
    let other =         "Return-Path: <>\nFrom: MAILER-DAEMON@relay.example.net\nTo: newsletter@openinfra.dev\nSubject: Undelivered Mail\nMessage-ID: <d1@relay.example.net>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nforwarding loop via User1@Example.org\n\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example.net\n\nFinal-Recipient: rfc822; user2@example.org\nAction: failed\nStatus: 5.2.2\nDiagnostic-Code: smtp; 552 5.2.2 mailbox full (forwarded to User1@Example.org)\n\n--B--\n".to_owned();
    maildir(
        &md,
        &[
            ("1.complaint", arf("c1", "user1@example.org", &message_id)),
            ("2.other", other),
        ],
    );
    let r = run(project.command().arg("bounces").arg("--maildir").arg(&md));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A run selected by the address: its selection names them too.
    let r = run(project
        .command()
        .args(["send", "2025-02", "--yes", "--where", "email=user1@example.org"]));
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Export lists every event and record first, and every record naming them.
    let r = run(project
        .command()
        .args(["subscribers", "export", "user1@example.org", "--format", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let export: Value = serde_json::from_str(&r.stdout).unwrap();
    let kinds: Vec<&str> = export["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["unsubscribed", "complaint"]);
    assert_eq!(export["deliveries"][0]["issue"], "2025-01");
    assert_eq!(export["deliveries"][0]["status"], "sent");
    assert_eq!(export["bounce_records"][0]["class"], "complaint");
    assert_eq!(export["recipient_rows"][0]["line"], 3);
    assert_eq!(export["recipient_rows"][0]["fields"]["first_name"], "User1");
    let mut mentions: Vec<String> = export["mentions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}.{}", m["table"].as_str().unwrap(), m["column"].as_str().unwrap()))
        .collect();
    mentions.sort();
    mentions.dedup();
    assert_eq!(
        mentions,
        ["bounce_events.diagnostic", "runs.selection"],
        "{}",
        export["mentions"]
    );

    let r = run(project.command().args(["subscribers", "forget", "user1@example.org"]));
    assert_eq!(r.code, 2, "asks for --yes off a terminal");
    let r = run(project
        .command()
        .args(["subscribers", "forget", "User1@Example.org", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Forgot user1@example.org"), "{}", r.stdout);
    assert!(r.stdout.contains("recipients.csv:3: delete the row"), "{}", r.stdout);

    // Nothing in a dump of the database, nor in the file's bytes (deleted pages are overwritten).
    let db = project.dir.path().join("state/newsletter.db");
    let dump = std::process::Command::new(tools::program(&tools::SQLITE3))
        .arg(&db)
        .arg(".dump")
        .output()
        .expect("sqlite3");
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout).to_lowercase();
    assert!(dump.contains("user2@example.org"), "the other reader's records stay");
    assert_eq!(dump.matches("user1@example.org").count(), 0, "{dump}");
    for file in ["state/newsletter.db", "state/newsletter.db-wal"] {
        let bytes = std::fs::read(project.dir.path().join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes)
                .to_lowercase()
                .contains("user1@example.org"),
            "{file} still holds the address"
        );
    }
    let shown = show(&project, "user1@example.org");
    assert_eq!(shown["standing"]["standing"], "forgotten");
    assert!(shown["events"].as_array().unwrap().is_empty());

    // The list still holds the row: the send skips it and says which row to delete.
    let r = run(project.command().args(["send", "2025-02", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("recipients.csv:3: the address was forgotten"),
        "{}",
        r.stderr
    );
    assert_eq!(receivers(&sink, "2025-02"), ["user0@example.org", "user2@example.org"]);
    // Nothing can bring it back in: a suppression or an unsubscribe stores nothing.
    let r = run(project.command().args(["suppress", "remove", "user1@example.org"]));
    assert!(r.stderr.contains("forgotten"), "{}", r.stderr);
    let dump = std::process::Command::new(tools::program(&tools::SQLITE3))
        .arg(&db)
        .arg(".dump")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&dump.stdout)
            .to_lowercase()
            .contains("user1@example.org")
    );
}

#[test]
fn a_ledger_from_the_first_release_keeps_its_list_as_history() {
    let project = Project::new(1, &csv(1), CONFIG);
    project.write_release_0_ledger();
    let list = suppressions(&project);
    assert!(!list.is_empty());
    for s in &list {
        let shown = show(&project, s["email"].as_str().unwrap());
        let events = shown["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{shown}");
        assert_eq!(
            events[0]["evidence"]["note"],
            s["reason"].as_str().unwrap().split(": ").last().unwrap()
        );
        assert_eq!(shown["standing"]["event"]["id"], events[0]["id"]);
        assert_eq!(s["kind"], events[0]["kind"]);
    }
}

/// Publication is a fact of the issue (issue 37, item 13): forgetting the only reader who
/// got it, whose delivery was all that said a message went out, leaves its archive page up.
#[test]
fn forgetting_the_only_reader_of_an_issue_leaves_it_published() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        "email,first_name\nsolo@example.org,Solo\n",
        "throttle: { rate: off }\narchive: { url: https://openinfra.dev/newsletter/archive }\n",
    )
    .with_issues(&[("2025-11", scheduled_issue(None))]);
    let r = run(project.command().args(["send", "2025-11", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(project
        .command()
        .args(["subscribers", "forget", "solo@example.org", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let server = Server::start(&project);
    let (status, page) = curl(&[&format!("{}/newsletter/archive/2025-11/", server.base)]);
    assert_eq!(status, 200, "{page}");
    let (_, index) = curl(&[&format!("{}/newsletter/archive/", server.base)]);
    assert!(index.contains("2025-11"), "{index}");
}
