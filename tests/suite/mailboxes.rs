//! The bounce mailbox as each kind is read: an mbox from its cursor, an IMAP folder read once
//! (marked seen, never emptied, again after a new UIDVALIDITY), and a maildir read by a run
//! killed with SIGKILL and run again: each report acts once.

use crate::return_path::PERSON;
use crate::return_path::dsn;
use crate::return_path::json;
use crate::return_path::sent;
use crate::support;
use crate::support::tools;
use support::{Project, Sink, csv, maildir, python_mbox_add, run, scheduled_issue, wait_until};

#[test]
fn an_mbox_is_read_from_where_the_last_run_stopped() {
    needs!(tools::SMTP_SINK, tools::PYTHON3);
    let sink = Sink::start();
    // No VERP: reports are mapped by the returned Message-ID.
    let project = Project::new(sink.port, &csv(4), "")
        .with_issues(&[("2025-01", scheduled_issue(None)), ("2025-02", scheduled_issue(None))]);
    let r = run(project.command().args(["send", "2025-01", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ids = sent(&sink, "2025-01");
    let mbox = project.dir.path().join("bounces.mbox");
    // Written by Python's mailbox module, with a "From " line in a body that it must quote
    // and we must read past.
    let report = |i: usize, id: &str| {
        let rcpt = format!("user{i}@example.org");
        dsn(
            id,
            "newsletter@openinfra.dev",
            &rcpt,
            "5.1.1",
            "550 5.1.1 unknown",
            &ids[&rcpt].1,
        )
        .replace(
            "Your message could not be delivered.",
            "From the relay: your message could not be delivered.",
        )
    };
    python_mbox_add(&mbox, &report(0, "m0"));
    python_mbox_add(&mbox, &report(1, "m1"));
    assert!(std::fs::read_to_string(&mbox).unwrap().contains("\n>From the relay"));
    let r = run(project
        .command()
        .args(["bounces", "--format", "json", "--mbox"])
        .arg(&mbox));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = json(&r.stdout);
    assert_eq!(first.len(), 2, "{}", r.stdout);
    assert_eq!(first[0]["file"], "@0");
    // Mail arrives at the end of the file; only that is read next time.
    python_mbox_add(&mbox, &report(2, "m2"));
    let r = run(project
        .command()
        .args(["bounces", "--format", "json", "--mbox"])
        .arg(&mbox));
    let second = json(&r.stdout);
    assert_eq!(second.len(), 1, "{}", r.stdout);
    assert_eq!(second[0]["recipient"], "user2@example.org");
    assert_eq!(second[0]["action"], "suppressed (bounce)");
    let r = run(project.command().args(["bounces", "--mbox"]).arg(&mbox));
    assert!(r.stdout.contains("0 message(s)"), "{}", r.stdout);
    let status = project.status("2025-01");
    assert_eq!(status["bounces"]["hard"], 3);
    assert!(
        status["warnings"].to_string().contains("bounce rate 75.00% is over 5%"),
        "{status}"
    );
    // The next issue reaches the one reader left.
    let before = sink.count();
    let r = run(project.command().args(["send", "2025-02", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count() - before, 1);
    let to_user3 = sink
        .messages()
        .iter()
        .filter(|(rcpts, _)| rcpts == &["user3@example.org"])
        .count();
    assert_eq!(to_user3, 2);
}

#[test]
fn an_imap_folder_is_read_once_marked_seen_and_never_emptied() {
    needs!(tools::OPENSSL, tools::DOVECOT, tools::SMTP_SINK);
    use support::dovecot::{self, Dovecot};
    let pki = support::smtpd::Pki::new();
    let imap = Dovecot::start(&pki);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(3),
        &format!(
            "bounces: {{ source: \"imaps://{}@localhost:{}/INBOX\" }}\n",
            dovecot::USER,
            imap.port
        ),
    )
    .with_smtp(&format!(
        "{{ host: 127.0.0.1, port: {}, security: none, timeout: 5s, ca_file: {} }}",
        sink.port,
        pki.ca().display()
    ));
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ids = sent(&sink, "small");
    let deliver = |name: &str, i: usize| {
        let text = dsn(
            name,
            "newsletter@openinfra.dev",
            &format!("user{i}@example.org"),
            "5.1.1",
            "550 5.1.1 unknown",
            &ids[&format!("user{i}@example.org")].1,
        );
        imap.deliver(&format!("{name}.eml"), &text);
    };
    deliver("r0", 0);
    deliver("r1", 1);
    // A person's mail stays unread for a person.
    imap.deliver("p0.eml", PERSON);
    let bounces = || {
        let r = run(project
            .command()
            .env("NEWSLETTER_BOUNCES_PASSWORD", dovecot::PASSWORD)
            .args(["bounces", "--format", "json"]));
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, imap.log());
        json(&r.stdout)
    };
    // A wrong password is one line naming the user.
    let r = run(project
        .command()
        .env("NEWSLETTER_BOUNCES_PASSWORD", "wrong")
        .args(["bounces"]));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("login as bounces@openinfra.dev refused"),
        "{}",
        r.stderr
    );

    let first = bounces();
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|v| v["action"] == "suppressed (bounce)"), "{first:?}");
    // Every message is still there, each marked seen.
    let seen = || {
        let mut names: Vec<String> = ["new", "cur"]
            .iter()
            .flat_map(|d| std::fs::read_dir(imap.maildir().join(d)).unwrap())
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let after_first = seen();
    assert_eq!(after_first.len(), 3, "{after_first:?}");
    let is_seen = |n: &String| n.contains(":2,") && n.rsplit(":2,").next().unwrap().contains('S');
    assert_eq!(
        after_first
            .iter()
            .filter(|n| is_seen(n))
            .map(|n| &n[..2])
            .collect::<Vec<_>>(),
        ["r0", "r1"],
        "{after_first:?}"
    );
    // The second run reads nothing already read; a new report is read alone.
    assert!(bounces().is_empty());
    deliver("r2", 2);
    let third = bounces();
    assert_eq!(third.len(), 1, "{third:?}");
    assert_eq!(third[0]["recipient"], "user2@example.org");
    let r = run(project.command().args(["suppress", "list"]));
    for i in 0..3 {
        assert!(r.stdout.contains(&format!("user{i}@example.org")), "{}", r.stdout);
    }
    // A new UIDVALIDITY: the folder is read again from the start, and what was handled stays
    // handled; only the report that came with it acts.
    imap.reset_uids();
    deliver("r3", 2);
    let again = bounces();
    assert_eq!(again.len(), 4, "{again:?}\n{}", imap.log());
    let acted: Vec<&serde_json::Value> = again
        .iter()
        .filter(|v| v["action"] != "none: handled by an earlier run")
        .collect();
    assert_eq!(acted.len(), 1, "{again:?}");
    assert_eq!(acted[0]["action"], "recorded; already suppressed (hard-bounce)");
    assert!(bounces().is_empty());
}

#[test]
fn killed_with_sigkill_and_run_again_each_report_acts_once() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let readers = 300;
    // Every reader is at one test domain and bounces alike: the mass guard is not what this
    // tests (a_mass_of_hard_bounces_at_one_domain_is_held_for_the_operator does).
    let project = Project::new(
        sink.port,
        &csv(readers),
        "throttle: { rate: off, concurrency: 4 }\nbounces: { mass_guard: 100000 }\n",
    );
    let r = run(project.command().args(["send", "small", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let md = project.dir.path().join("bounces");
    let n = 3000;
    let reports: Vec<(String, String)> = (0..n)
        .map(|i| {
            let rcpt = format!("user{}@example.org", i % readers);
            (
                format!("{i:05}"),
                dsn(
                    &format!("k{i}"),
                    "newsletter@openinfra.dev",
                    &rcpt,
                    "5.1.1",
                    "550 5.1.1 unknown",
                    "<x@y>",
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, String)> = reports.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    maildir(&md, &refs);
    let handled = || std::fs::read_dir(md.join("cur")).unwrap().count();
    for at in [400, 1600] {
        let mut child = project
            .std_command()
            .args(["bounces", "-q", "--maildir"])
            .arg(&md)
            .spawn()
            .unwrap();
        wait_until("reports to be handled", || handled() >= at);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(handled() < n, "the runs finished before they were killed");
    let r = run(project.command().args(["bounces", "-q", "--maildir"]).arg(&md));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(handled(), n);
    assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 0);
    let db = rusqlite::Connection::open(project.dir.path().join("state/newsletter.db")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM reports"), n as i64);
    assert_eq!(
        count("SELECT count(*) FROM bounce_events"),
        n as i64,
        "an event recorded twice or lost"
    );
    assert_eq!(
        count("SELECT count(*) FROM bounce_events WHERE action = 'suppressed (bounce)'"),
        readers as i64
    );
    assert_eq!(
        count("SELECT count(*) FROM suppressions WHERE source = 'bounce'"),
        readers as i64
    );
}
