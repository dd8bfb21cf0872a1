//! DMARC reports where they arrive: the bounce mailbox (read by `bounces`, beside a person's
//! letter), a `dmarc.mailbox` mbox read from its cursor, and Dovecot's IMAP; each read once,
//! and the status line.

use std::path::Path;

use crate::support::aggregate::{dmarc_json, email, gzip, ours, project, report, stranger, zip};
use crate::support::{self, maildir, python_mbox_add, run, tools};

/// The names of a maildir's messages marked seen, and not.
fn flags(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut seen = Vec::new();
    let mut unseen = Vec::new();
    for folder in ["new", "cur"] {
        for e in std::fs::read_dir(dir.join(folder)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            let is_seen = name.rsplit_once(":2,").is_some_and(|(_, f)| f.contains('S'));
            let base = name.split(':').next().unwrap().to_owned();
            if is_seen { seen.push(base) } else { unseen.push(base) }
        }
    }
    seen.sort();
    unseen.sort();
    (seen, unseen)
}

#[test]
fn the_bounce_mailbox_and_a_dmarc_mbox_are_read_once_and_status_says_how_aligned() {
    needs!(tools::PYTHON3);
    // In the bounce mailbox, beside a person's letter: `bounces` reads the reports.
    let project = project("");
    let bounces = project.dir.path().join("bounces");
    let yahoo = report(
        "yahoo.com",
        "y1",
        1,
        vec![ours("192.0.2.1", 300), stranger("203.0.113.5", 4)],
    );
    let google = report("google.com", "g1", 2, vec![ours("192.0.2.2", 700)]);
    maildir(
        &bounces,
        &[
            (
                "1-yahoo",
                email(
                    &yahoo,
                    "application/zip",
                    "y.zip",
                    &zip("y.xml", yahoo.xml().as_bytes()),
                ),
            ),
            (
                "2-google",
                email(&google, "application/gzip", "g.xml.gz", &gzip(google.xml().as_bytes())),
            ),
            ("3-person", crate::return_path::PERSON.to_owned()),
        ],
    );
    let r = run(project.command().args(["bounces", "--maildir"]).arg(&bounces));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("2 DMARC aggregate report(s) read (2 new)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("1 message(s) that are no report left unread"),
        "{}",
        r.stdout
    );
    assert_eq!(
        flags(&bounces),
        (vec!["1-yahoo".into(), "2-google".into()], vec!["3-person".into()])
    );
    let held = dmarc_json(&project, &[]);
    assert_eq!(held["all"]["messages"], 1004);
    assert_eq!(held["ours"]["messages"], 1000);
    let r = run(project.command().arg("dmarc"));
    assert!(r.stdout.contains("2 report(s) from 2 reporter(s)"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("203.0.113.5 is not one of our sources and sent 4 messages"),
        "{}",
        r.stdout
    );
    let r = run(project.command().arg("status"));
    assert!(
        r.stdout.contains(
            "DMARC, last 7 days: 100.0% of 1,000 messages from our sources aligned; 1 warning(s) (newsletter dmarc)"
        ),
        "{}",
        r.stdout
    );

    // dmarc.mailbox as an mbox: read from where the last reading stopped.
    let mbox = project.dir.path().join("dmarc.mbox");
    let config = project.dir.path().join("newsletter.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "{ our_sources",
            &format!("{{ mailbox: \"mbox:{}\", our_sources", mbox.display()),
        ),
    )
    .unwrap();
    let ms = report("Microsoft Corporation", "ms-1", 1, vec![ours("192.0.2.3", 50)]);
    python_mbox_add(
        &mbox,
        &email(&ms, "application/gzip", "ms.xml.gz", &gzip(ms.xml().as_bytes())),
    );
    // The google report again (a reporter resending): kept once.
    python_mbox_add(
        &mbox,
        &email(&google, "application/gzip", "g.xml.gz", &gzip(google.xml().as_bytes())),
    );
    let r = run(project.command().arg("dmarc"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Read 2 message(s) or file(s) from mbox:"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(": 2 report(s), 1 new; 0 unreadable"), "{}", r.stdout);
    let r = run(project.command().arg("dmarc"));
    assert!(r.stdout.contains("Read 0 message(s)"), "{}", r.stdout);
    let broken = "From: dmarc@broken.example\r\nSubject: Report Domain: openinfra.dev Submitter: broken.example Report-ID: 9\r\nMIME-Version: 1.0\r\nContent-Type: application/gzip; name=r.xml.gz\r\nContent-Transfer-Encoding: base64\r\n\r\nH4sIAAAAAAAAA/////8=\r\n";
    python_mbox_add(&mbox, broken);
    let held = dmarc_json(&project, &[]);
    assert_eq!(held["reports"].as_array().unwrap().len(), 3, "{held:#}");
    assert_eq!(held["all"]["messages"], 1054);
    let unreadable = held["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{held:#}");
    assert!(
        unreadable[0]["why"].as_str().unwrap().contains("gzip data is broken"),
        "{held:#}"
    );
    // Named on the command line, a maildir and an mbox are read whole, without a cursor, and
    // summed up alone.
    let whole = dmarc_json(&project, &["--mbox", mbox.to_str().unwrap()]);
    assert_eq!(whole["reports"].as_array().unwrap().len(), 2, "{whole:#}");
    assert_eq!(whole["unreadable"].as_array().unwrap().len(), 1, "{whole:#}");
    let whole = dmarc_json(&project, &["--maildir", bounces.to_str().unwrap()]);
    assert_eq!(whole["all"]["messages"], 1004, "{whole:#}");
    assert_eq!(
        whole["unreadable"].as_array().unwrap().len(),
        1,
        "the person's letter: {whole:#}"
    );
    // `bounces` reading its mailbox again finds nothing new.
    let r = run(project.command().args(["bounces", "--maildir"]).arg(&bounces));
    assert!(r.stdout.contains("0 message(s) read"), "{}", r.stdout);
}

#[test]
fn dmarc_mailbox_over_imap_is_read_once() {
    needs!(tools::OPENSSL, tools::DOVECOT);
    use support::dovecot::{self, Dovecot};
    let pki = support::smtpd::Pki::new();
    let imap = Dovecot::start(&pki);
    let project = project(&format!(
        ", mailbox: \"imaps://{}@localhost:{}/INBOX\" ",
        dovecot::USER,
        imap.port
    ))
    .with_smtp(&format!(
        "{{ host: 127.0.0.1, port: 2525, security: none, timeout: 5s, ca_file: {} }}",
        pki.ca().display()
    ));
    let bis = report("bis.example", "imap-1", 1, vec![ours("192.0.2.1", 20)]);
    imap.deliver(
        "r1.eml",
        &email(
            &bis,
            "application/octet-stream",
            "bis.xml",
            bis.xml_with(true, "openinfra.dev").as_bytes(),
        ),
    );
    imap.deliver("p1.eml", crate::return_path::PERSON);
    let dmarc = || {
        let r = run(project
            .command()
            .env("NEWSLETTER_DMARC_PASSWORD", dovecot::PASSWORD)
            .arg("dmarc"));
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, imap.log());
        r.stdout
    };
    let first = dmarc();
    assert!(first.contains("Read 2 message(s) or file(s) from imaps://"), "{first}");
    assert!(first.contains(": 1 report(s), 1 new; 1 unreadable"), "{first}");
    assert!(first.contains("20 message(s) as our domain"), "{first}");
    let (seen, unseen) = flags(&imap.maildir());
    assert_eq!((seen.len(), unseen.len()), (1, 1), "{seen:?} {unseen:?}");
    assert!(dmarc().contains("Read 0 message(s)"));
}
