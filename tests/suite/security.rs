//! The open door holds (issue 32): each attack as an attacker or a careless operator would
//! make it, with curl against `newsletter serve`, smtp-sink as the relay and the ledger file
//! read back with SQLite.

use crate::support;
use crate::support::tools;

use std::time::Duration;

use support::serve::{Server, curl};
use support::{Project, Sink, run, wait_until};

pub(crate) const CONFIG: &str = "throttle: { rate: off }\n\
    unsubscribe: { url: https://openinfra.dev/newsletter/unsubscribe }\n\
    archive: { url: https://openinfra.dev/newsletter/archive }\n\
    serve: { request_timeout: 5s }\n";

fn project(sink: &Sink, csv: &str, extra: &str) -> Project {
    Project::new(sink.port, csv, &format!("{CONFIG}{extra}"))
}

/// The list every sign-up test starts from.
pub(crate) const OLIVE: &str = "email,first_name\nolive@example.org,Olive\n";

/// A project whose relay is `sink`, sign-ups limited to `per_hour` per client.
fn readers_project(sink: &Sink, per_hour: u32) -> Project {
    readers_project_on(sink.port, per_hour)
}

fn readers_project_on(port: u16, per_hour: u32) -> Project {
    Project::new(
        port,
        OLIVE,
        &format!("{CONFIG}subscribe: {{ per_client_per_hour: {per_hour} }}\n"),
    )
}

/// Posts the sign-up form with `email` as typed; returns the status and the page.
fn sign_up(server: &Server, email: &str) -> (u16, String) {
    sign_up_with(server, &[], email)
}

/// The same with more request headers (`Origin: ...`, `X-Forwarded-For: ...`).
fn sign_up_with(server: &Server, headers: &[&str], email: &str) -> (u16, String) {
    let mut args: Vec<String> = headers
        .iter()
        .flat_map(|h| ["-H".to_owned(), (*h).to_owned()])
        .collect();
    args.extend([
        "--data-urlencode".to_owned(),
        format!("email={email}"),
        format!("{}/newsletter/subscribe", server.base),
    ]);
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
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
    needs!(tools::SMTP_SINK, tools::CURL);
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
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = readers_project(&sink, 100000);
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
                std::process::Command::new(tools::program(&tools::CURL))
                    .args(&all)
                    .output()
                    .unwrap();
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

#[test]
fn the_form_puts_no_free_text_in_the_foundations_mail() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = readers_project(&sink, 500);
    let server = Server::start(&project);
    let form = format!("{}/newsletter/subscribe", server.base);
    let post = |email: &str, name: &str| {
        curl(&[
            "--data-urlencode",
            &format!("email={email}"),
            "--data-urlencode",
            &format!("name={name}"),
            &form,
        ])
    };
    for (name, why) in [
        (
            "Your account will be closed. Verify it at https://evil.example/login",
            "web or email address",
        ),
        ("Kate\r\nBcc: everyone@example.org", "line break"),
        ("Kate\nReader", "line break"),
    ] {
        let (code, page) = post("kate@example.org", name);
        assert_eq!(code, 400, "{name:?}: {page}");
        assert!(page.contains(why) && page.contains("name=\"email\""), "{page}");
    }
    // Refused, the address is not locked out: the next, plain sign-up gets its email.
    let (code, _) = post("kate@example.org", "Kate Reader");
    assert_eq!(code, 200);
    wait_until("kate's confirmation", || {
        sink.received().contains_key("kate@example.org")
    });
    let (_, mail) = sink.messages().pop().unwrap();
    assert!(!mail.contains("Kate"), "the name is not echoed: {mail}");
    assert!(
        mail.contains("\nTo: kate@example.org\r\n") || mail.contains("\nTo: kate@example.org\n"),
        "{mail}"
    );
    assert_eq!(sink.received().get("kate@example.org"), Some(&1));
    // The name is kept for later issues.
    assert_eq!(
        ledger_rows(&project, "SELECT name FROM signups WHERE email = 'kate@example.org'"),
        ["Kate Reader"]
    );
}

#[test]
fn confirmations_arrive_after_the_relay_closed_the_idle_connection() {
    needs!(tools::SMTP_SINK, tools::CURL);
    // smtp-sink -t 3 drops a session idle for 3 s, as Postfix and Exim do after minutes.
    let sink = Sink::start_with(support::free_port(), &["-t", "3"]);
    let project = readers_project(&sink, 500);
    let server = Server::start(&project);
    // 20 sign-ups in pairs 3.5 s apart: over 30 s, the connection goes idle past the limit
    // nine times.
    for pair in 0..10 {
        if pair > 0 {
            std::thread::sleep(Duration::from_millis(3500));
        }
        for one in 0..2 {
            let (code, _) = sign_up(&server, &format!("reader{pair}-{one}@example.org"));
            assert_eq!(code, 200);
        }
    }
    wait_until("20 confirmations", || sink.received().len() == 20);
    std::thread::sleep(Duration::from_millis(300));
    let received = sink.received();
    assert!(received.values().all(|n| *n == 1), "{received:?}");
    assert_eq!(received.len(), 20);
}

#[test]
fn a_confirmation_the_relay_could_not_take_is_sent_later_and_shown_meanwhile() {
    needs!(tools::CURL, tools::SMTP_SINK);
    let port = support::free_port();
    // No relay listening yet.
    let project = Project::new(port, OLIVE, &format!("{CONFIG}subscribe: {{ retry_after: 1s }}\n"));
    let server = Server::start(&project);
    assert_eq!(sign_up(&server, "late@example.org").0, 200);
    wait_until("the three tries at once", || {
        ledger_rows(&project, "SELECT attempts || ' ' || ifnull(retry_at, '-') FROM signups")
            .first()
            .is_some_and(|r| r.starts_with("3 ") && !r.ends_with('-'))
    });
    let status = run(project.command().arg("status"));
    assert!(
        status
            .stdout
            .contains("confirmation emails not sent: 1 to be tried again by serve, 0 given up"),
        "{}",
        status.stdout
    );
    let show = run(project.command().args(["subscribers", "show", "late@example.org"]));
    assert!(show.stdout.contains("email not sent after 3 tries"), "{}", show.stdout);
    // The relay comes back; serve's next try delivers, once.
    let sink = Sink::start_on(port);
    wait_until("the later try", || sink.received().contains_key("late@example.org"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.received().get("late@example.org"), Some(&1));
    assert_eq!(
        ledger_rows(
            &project,
            "SELECT ifnull(retry_at, 'none') || ' ' || (message_id IS NOT NULL) FROM signups"
        ),
        ["none 1"]
    );
}

#[test]
fn a_ledger_without_its_key_fails_closed_but_still_unsubscribes() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = project(
        &sink,
        "email,first_name\nolive@example.org,Olive\ngone@example.org,Gone\n",
        "subscribe: { per_client_per_hour: 500 }\n",
    );
    let forget = run(project
        .command()
        .args(["subscribers", "forget", "gone@example.org", "--yes"]));
    assert_eq!(forget.code, 0, "{}", forget.stderr);
    // The ledger copied without its key.
    std::fs::remove_file(project.dir.path().join("state/newsletter.key")).unwrap();

    let server = Server::start(&project);
    let (code, body) = curl(&[&format!("{}/healthz", server.base)]);
    assert_eq!(code, 503);
    assert!(
        body.contains("newsletter.key is missing") && body.contains("restore it"),
        "{body}"
    );
    let (code, page) = sign_up(&server, "gone@example.org");
    assert_eq!(code, 503, "{page}");
    let (code, _) = support::serve::one_click(&format!(
        "{}/newsletter/unsubscribe?token={}",
        server.base,
        project.unsubscribe_token("olive@example.org", "small")
    ));
    assert_eq!(code, 200, "one-click still works for everyone");
    std::thread::sleep(Duration::from_millis(300));
    assert!(sink.received().is_empty(), "{:?}", sink.received());
    assert!(ledger_rows(&project, "SELECT email FROM signups").is_empty());
    assert_eq!(
        ledger_rows(&project, "SELECT email || ' ' || kind FROM suppressions"),
        ["olive@example.org unsubscribed"]
    );
    let show = run(project.command().args(["subscribers", "show", "gone@example.org"]));
    assert_ne!(show.code, 0, "{}", show.stdout);
    assert!(show.stderr.contains("restore it from the backup"), "{}", show.stderr);
    let send = run(project.command().args(["send", "small", "--yes"]));
    assert_ne!(send.code, 0, "{}", send.stdout);
    assert!(send.stderr.contains("newsletter.key is missing"), "{}", send.stderr);
    assert!(sink.received().is_empty(), "{:?}", sink.received());
}

/// Median of curl's time_total (seconds) for sign-ups of each address in `emails`.
fn median_time(server: &Server, emails: &[String]) -> f64 {
    let mut times: Vec<f64> = emails
        .iter()
        .map(|email| {
            let out = std::process::Command::new(tools::program(&tools::CURL))
                .args(["-s", "-o", "/dev/null", "-w", "%{time_total}", "--data-urlencode"])
                .arg(format!("email={email}"))
                .arg(format!("{}/newsletter/subscribe", server.base))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[test]
fn a_sign_up_takes_the_same_work_whatever_the_addresss_standing() {
    needs!(tools::SMTP_SINK, tools::STRACE, tools::CURL);
    let sink = Sink::start();
    let project = readers_project(&sink, 100000);
    for i in 0..20 {
        let email = format!("complained{i}@example.org");
        assert_eq!(run(project.command().args(["suppress", "add", &email])).code, 0);
        let email = format!("forgotten{i}@example.org");
        assert_eq!(
            run(project.command().args(["subscribers", "forget", &email, "--yes"])).code,
            0
        );
    }
    let server = Server::start(&project);
    let syncs = support::serve::Syncs::attach(&server, project.dir.path());
    let mut counts = Vec::new();
    for email in ["new@example.org", "complained0@example.org", "forgotten0@example.org"] {
        let before = syncs.count();
        assert_eq!(sign_up(&server, email).0, 200);
        counts.push((email, syncs.count() - before));
    }
    assert!(counts.iter().all(|(_, n)| *n >= 1), "syncs per sign-up: {counts:?}");
    drop(syncs);
    let addresses = |kind: &str| (0..20).map(|i| format!("{kind}{i}@example.org")).collect::<Vec<_>>();
    let new = median_time(&server, &addresses("fresh"));
    let complained = median_time(&server, &addresses("complained"));
    let forgotten = median_time(&server, &addresses("forgotten"));
    eprintln!("median sign-up answer: new {new:.4}s, complained {complained:.4}s, forgotten {forgotten:.4}s");
    // Before: 3 ms against 0.6 ms. A generous bound: this machine's noise is not the point.
    for refused in [complained, forgotten] {
        assert!(
            refused > new / 3.0 && refused < new * 3.0,
            "new {new}, refused {refused}"
        );
    }
}

#[test]
fn the_sign_up_limit_believes_only_trusted_proxies_and_other_sites_cannot_post() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = readers_project(&sink, 5);
    let server = Server::start(&project);
    let post_as = |forwarded: &str, i: usize| {
        sign_up_with(
            &server,
            &[&format!("X-Forwarded-For: {forwarded}")],
            &format!("rotate{i}@example.org"),
        )
        .0
    };
    // From loopback, rotating the header's last entry no longer makes a new client.
    let codes: Vec<u16> = (0..35).map(|i| post_as(&format!("198.51.100.{i}"), i)).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 30, "{codes:?}");

    // Another site's page posting in its visitor's name is refused; the site's own and a
    // client without Origin are taken.
    let other = Sink::start();
    let project = readers_project_on(other.port, 500);
    let server = Server::start(&project);
    let with_origin = |origin: &str, email: &str| sign_up_with(&server, &[&format!("Origin: {origin}")], email);
    let (code, page) = with_origin("https://evil.example", "csrf@example.org");
    assert_eq!(code, 403, "{page}");
    assert!(page.contains("id=\"forbidden\""), "{page}");
    assert_eq!(with_origin("null", "csrf@example.org").0, 403);
    assert_eq!(with_origin("https://openinfra.dev", "site@example.org").0, 200);
    assert_eq!(with_origin(&server.base, "self@example.org").0, 200);
    assert_eq!(sign_up(&server, "plain@example.org").0, 200);
    wait_until("three confirmations", || other.received().len() == 3);
    assert!(!other.received().contains_key("csrf@example.org"));
}

#[test]
fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let config = CONFIG.replace(
        "serve: { request_timeout: 5s }",
        "serve: { request_timeout: 5s, trusted_proxies: [127.0.0.1] }",
    );
    let project = Project::new(
        sink.port,
        OLIVE,
        &format!("{config}subscribe: {{ per_client_per_hour: 1 }}\n"),
    );
    let server = Server::start(&project);
    let post_as =
        |forwarded: &str, email: &str| sign_up_with(&server, &[&format!("X-Forwarded-For: {forwarded}")], email).0;
    assert_eq!(post_as("198.51.100.1", "a@example.org"), 200);
    assert_eq!(post_as("198.51.100.2", "b@example.org"), 200);
    assert_eq!(post_as("198.51.100.1", "c@example.org"), 429);
    // One IPv6 /64 is one client.
    assert_eq!(post_as("2001:db8:1:2::1", "d@example.org"), 200);
    assert_eq!(post_as("2001:db8:1:2:ffff::9", "e@example.org"), 429);
}

#[test]
fn the_ledger_and_the_dry_runs_messages_are_the_users_alone() {
    needs!(tools::SMTP_SINK);
    use std::os::unix::fs::PermissionsExt;
    let sink = Sink::start();
    let project = project(&sink, OLIVE, "");
    // Under a umask that would share everything.
    let under_open_umask = |args: &[&str]| {
        let mut cmd = project.std_command();
        cmd.args(args);
        let line: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect();
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("umask 000; exec {}", line.join(" "))])
            .current_dir(project.dir.path())
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    under_open_umask(&["send", "small", "--dry-run"]);
    under_open_umask(&["send", "small", "--yes"]);
    under_open_umask(&["subscribers", "forget", "gone@example.org", "--yes"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let state = project.dir.path().join("state");
    assert_eq!(mode(&state), 0o700);
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "lock") {
            continue;
        }
        assert_eq!(mode(&path), 0o600, "{path:?}");
    }
    let dry = project.dir.path().join("out/small/dry-run");
    assert_eq!(mode(&dry), 0o700);
    let emls: Vec<_> = std::fs::read_dir(&dry).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!emls.is_empty());
    for eml in emls {
        assert_eq!(mode(&eml), 0o600, "{eml:?}");
    }
}

#[test]
fn a_replayed_confirmation_after_an_unsubscribe_says_the_reader_is_not_subscribed() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = readers_project(&sink, 500);
    let server = Server::start(&project);
    assert_eq!(sign_up(&server, "kim@example.org").0, 200);
    wait_until("kim's confirmation", || sink.received().contains_key("kim@example.org"));
    let (_, mail) = sink.messages().pop().unwrap();
    let text = mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned();
    let token = text
        .split_whitespace()
        .find_map(|w| w.split_once("/newsletter/confirm?token=").map(|(_, t)| t.to_owned()))
        .unwrap();
    let confirm = format!("{}/newsletter/confirm", server.base);
    let press = || curl(&["--data-urlencode", &format!("token={token}"), &confirm]);
    let (code, page) = press();
    assert_eq!((code, page.contains("id=\"confirmed\"")), (200, true), "{page}");
    let (code, _) = support::serve::one_click(&format!(
        "{}/newsletter/unsubscribe?token={}",
        server.base,
        project.unsubscribe_token("kim@example.org", "small")
    ));
    assert_eq!(code, 200);
    let (code, page) = press();
    assert_eq!(code, 200);
    assert!(
        page.contains("id=\"left\"") && !page.contains("id=\"confirmed\""),
        "{page}"
    );
    assert_eq!(
        ledger_rows(
            &project,
            "SELECT kind FROM suppressions WHERE email = 'kim@example.org'"
        ),
        ["unsubscribed"],
        "the replay changed nothing"
    );
}
