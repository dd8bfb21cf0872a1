//! The open door holds (issue 32): each attack as an attacker or a careless operator would
//! make it, with curl against `newsletter serve`, smtp-sink as the relay and the ledger file
//! read back with SQLite.

mod support;

use std::time::Duration;

use support::serve::{Server, curl};
use support::{Project, Sink, run, wait_until};

const CONFIG: &str = "throttle: { rate: off }\n\
    unsubscribe: { url: https://openinfra.dev/newsletter/unsubscribe }\n\
    archive: { url: https://openinfra.dev/newsletter/archive }\n\
    serve: { request_timeout: 5s }\n";

fn project(sink: &Sink, csv: &str, extra: &str) -> Project {
    Project::new(sink.port, csv, &format!("{CONFIG}{extra}"))
}

/// Posts the sign-up form with `email` as typed; returns the status and the page.
fn sign_up(server: &Server, email: &str) -> (u16, String) {
    curl(&[
        "--data-urlencode",
        &format!("email={email}"),
        &format!("{}/newsletter/subscribe", server.base),
    ])
}

fn ledger_rows(project: &Project, sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(project.dir.path().join("state/newsletter.db")).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn every_spelling_of_one_mailbox_is_that_mailbox() {
    let sink = Sink::start();
    let project = project(
        &sink,
        "email,first_name\nolive@example.org,Olive\n\"\"\"Olive\"\"@example.org\",Olive\n\"\"\"zo e\"\"@example.org\",Zoe\n",
        "subscribe: { per_client_per_hour: 500 }\n",
    );
    let suppress = run(project.command().args(["suppress", "add", "victim@example.org"]));
    assert_eq!(suppress.code, 0, "{}", suppress.stderr);
    let forget = run(project
        .command()
        .args(["subscribers", "forget", "gone@example.org", "--yes"]));
    assert_eq!(forget.code, 0, "{}", forget.stderr);
    // The operator cannot suppress a spelling that is no plain address, and is told why.
    let refused = run(project.command().args(["suppress", "add", "\"vic tim\"@example.org"]));
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("spaces, quotes"), "{}", refused.stderr);

    let server = Server::start(&project);
    for spelling in [
        "\"victim\"@example.org",
        "\"vi\\ctim\"@example.org",
        "VICTIM@Example.ORG",
        "\"gone\"@example.org",
        "\"g\\one\"@example.org",
    ] {
        let (code, page) = sign_up(&server, spelling);
        assert_eq!((code, page.contains("id=\"sent\"")), (200, true), "{spelling}: {page}");
    }
    // Five spellings of a new reader within the hour: one confirmation.
    for spelling in [
        "new@example.org",
        "\"new\"@example.org",
        "\"n\\ew\"@example.org",
        "\"\\n\\e\\w\"@example.org",
        "NEW@example.org",
    ] {
        assert_eq!(sign_up(&server, spelling).0, 200, "{spelling}");
    }
    // A quoted part holding a space is refused with the form's message.
    let (code, page) = sign_up(&server, "\"new one\"@example.org");
    assert_eq!(code, 400);
    assert!(page.contains("spaces, quotes"), "{page}");

    wait_until("the new reader's confirmation", || {
        sink.received().contains_key("new@example.org")
    });
    std::thread::sleep(Duration::from_millis(500));
    let received = sink.received();
    assert_eq!(received.get("new@example.org"), Some(&1), "{received:?}");
    assert_eq!(
        received.len(),
        1,
        "nothing to victim or gone in any spelling: {received:?}"
    );
    assert_eq!(
        ledger_rows(&project, "SELECT DISTINCT email FROM signups"),
        ["new@example.org"],
        "the forgotten address is not stored again, and only the key is"
    );
    drop(server);

    // The list's second spelling of olive is a duplicate; the spelling with a space is skipped.
    let send = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(send.code, 0, "{}\n{}", send.stdout, send.stderr);
    assert!(
        send.stdout.contains("1 duplicate: line 3; 1 invalid address: line 4"),
        "{}",
        send.stdout
    );
    assert!(send.stderr.contains("spaces, quotes"), "{}", send.stderr);
    let received = sink.received();
    assert_eq!(received.get("olive@example.org"), Some(&1), "{received:?}");
    assert!(!received.keys().any(|r| r.contains('"')), "{received:?}");
}

#[test]
fn nothing_written_while_forget_runs_brings_the_address_back() {
    let sink = Sink::start();
    let project = project(
        &sink,
        "email,first_name\nolive@example.org,Olive\n",
        "subscribe: { per_client_per_hour: 100000 }\n",
    );
    let server = Server::start(&project);
    for round in 0..5 {
        let email = format!("victim{round}@example.org");
        assert_eq!(sign_up(&server, &email).0, 200);
        let token = project.unsubscribe_token(&email, "small");
        let one_click = format!("{}/newsletter/unsubscribe?token={token}", server.base);
        let form = format!("{}/newsletter/subscribe", server.base);
        // One curl connection each, hammering while `forget` runs.
        let flood = |args: Vec<String>| {
            std::thread::spawn(move || {
                let mut all = vec!["-s".to_owned()];
                for _ in 0..150 {
                    all.extend(["-o", "/dev/null"].map(str::to_owned));
                    all.extend(args.iter().cloned());
                }
                std::process::Command::new("curl").args(&all).output().unwrap();
            })
        };
        let clicks = flood(
            ["-X", "POST", "--data", "List-Unsubscribe=One-Click", &one_click]
                .map(str::to_owned)
                .to_vec(),
        );
        let signups = flood(
            ["--data-urlencode", &format!("email={email}"), &form]
                .map(str::to_owned)
                .to_vec(),
        );
        std::thread::sleep(Duration::from_millis(30));
        let forget = run(project.command().args(["subscribers", "forget", &email, "--yes"]));
        assert_eq!(forget.code, 0, "{}", forget.stderr);
        clicks.join().unwrap();
        signups.join().unwrap();
        for table in ["reader_events", "signups", "suppressions", "subscribers"] {
            let rows = ledger_rows(&project, &format!("SELECT email FROM {table} WHERE email = '{email}'"));
            assert!(rows.is_empty(), "round {round}: {table} holds {rows:?} after forget");
        }
    }
}
