//! DMARC aggregate reports as receivers send them, written here from the schema and from how
//! real reporters break it: bare files and emails, XML, gzip and zip, base64 and
//! quoted-printable, DMARC 1 and DMARCbis, and the broken forms. Totals are checked against
//! parsedmarc reading the same files; each warning is caused by a report and only by one;
//! reading again changes nothing; the bounce mailbox, an mbox and Dovecot's IMAP are read.

use std::path::Path;

use serde_json::Value;

use crate::support::aggregate::{Rec, Report, dmarc_json, email, email_qp, gzip, ours, project, report, stranger, zip};
use crate::support::{Project, run, tools};

/// The reports in `json` by file name (the last path segment).
fn by_file(json: &Value) -> std::collections::BTreeMap<String, Value> {
    json["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let file = r["file"].as_str().unwrap();
            (file.rsplit('/').next().unwrap().to_owned(), r.clone())
        })
        .collect()
}

fn totals_of(v: &Value) -> (u64, u64, u64, u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    (n("messages"), n("dkim_pass"), n("spf_pass"), n("rows"), n("sources"))
}

/// parsedmarc's totals for each file it can read, and the files it cannot.
fn parsedmarc(dir: &Path) -> Value {
    let script = r#"
import email, json, os, sys, parsedmarc
out = {}
for name in sorted(os.listdir(sys.argv[1])):
    path = os.path.join(sys.argv[1], name)
    try:
        r = parsedmarc.parse_report_file(path, offline=True)["report"]
    except Exception as e:
        # parsedmarc reads no quoted-printable XML part: Python's email module decodes the
        # message's parts, parsedmarc reads their XML.
        r = None
        if name.endswith(".eml"):
            with open(path, "rb") as f:
                message = email.message_from_binary_file(f)
            for part in message.walk():
                body = part.get_payload(decode=True)
                if body and b"<feedback" in body:
                    r = parsedmarc.parse_aggregate_report_xml(body, offline=True)
        if r is None:
            out[name] = {"error": str(e)[:200]}
            continue
    recs = r["records"]
    out[name] = {
        "org": r["report_metadata"]["org_name"], "report_id": r["report_metadata"]["report_id"],
        "messages": sum(x["count"] for x in recs),
        "dkim_pass": sum(x["count"] for x in recs if x["policy_evaluated"]["dkim"] == "pass"),
        "spf_pass": sum(x["count"] for x in recs if x["policy_evaluated"]["spf"] == "pass"),
        "rows": len(recs), "sources": len({x["source"]["ip_address"] for x in recs}),
    }
print(json.dumps(out))
"#;
    let out = std::process::Command::new(tools::program(&tools::PARSEDMARC))
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_form_is_read_and_its_totals_agree_with_parsedmarc() {
    needs!(tools::PARSEDMARC);
    let project = project("");
    let dir = project.dir.path().join("reports");
    std::fs::create_dir_all(&dir).unwrap();
    let mut expected = std::collections::BTreeMap::new();
    let mut write = |name: &str, r: &Report, bytes: Vec<u8>| {
        std::fs::write(dir.join(name), bytes).unwrap();
        expected.insert(name.to_owned(), (r.id.clone(), r.totals()));
    };
    let mixed = |n: u64| {
        vec![
            ours("192.0.2.1", 10 * n),
            Rec {
                dkim: "fail",
                sig: Some(("openinfra.dev", "s1", "fail")),
                ..ours("192.0.2.2", n)
            },
            stranger("203.0.113.9", 2),
            ours("2001:db8::5", 3),
        ]
    };
    let r = report("google.com", "a-xml", 2, mixed(1));
    write("a.xml", &r, r.xml().into_bytes());
    let r = report("google.com", "b-gz", 3, mixed(2));
    write("b.xml.gz", &r, gzip(r.xml().as_bytes()));
    let r = report("yahoo.com", "c-zip", 2, mixed(3));
    write("c.zip", &r, zip("yahoo.com!openinfra.dev!1!2.xml", r.xml().as_bytes()));
    let r = report("google.com", "d-mail-gz", 4, mixed(4));
    write(
        "d.eml",
        &r,
        email(
            &r,
            "application/gzip",
            "google.com!openinfra.dev.xml.gz",
            &gzip(r.xml().as_bytes()),
        )
        .into_bytes(),
    );
    let r = report("yahoo.com", "e-mail-zip", 4, mixed(5));
    write(
        "e.eml",
        &r,
        email(&r, "application/zip", "r.zip", &zip("r.xml", r.xml().as_bytes())).into_bytes(),
    );
    let r = report("mail.example", "f-mail-xml-qp", 5, mixed(6));
    write("f.eml", &r, email_qp(&r, "text/xml", true).into_bytes());
    let r = report("mail.example", "g-inline-qp", 5, mixed(7));
    write("g.eml", &r, email_qp(&r, "text/plain", false).into_bytes());
    let r = report("bis.example", "h-dmarcbis", 6, mixed(8));
    write("h.xml", &r, r.xml_with(true, "openinfra.dev").into_bytes());
    // Broken, as real reporters break them.
    let r = report("wrapped.example", "i-wrapper", 6, mixed(9));
    write(
        "i.xml",
        &r,
        r.xml()
            .replacen("<feedback>", "<reports><feedback>", 1)
            .replace("</feedback>", "</feedback></reports>")
            .into_bytes(),
    );
    let r = report("latin1.example", "j-not-utf8", 7, mixed(10));
    let mut latin1 = r.xml().into_bytes();
    let at = r.xml().find("noreply-dmarc@").unwrap();
    latin1.splice(at..at, b"Z\xfcrich ".iter().copied());
    write("j.xml", &r, latin1);
    let r = report("lt.example", "k-unescaped-lt", 7, mixed(11));
    write(
        "k.xml",
        &r,
        r.xml_with(false, "Foo <newsletter@openinfra.dev>").into_bytes(),
    );
    let r = report("trailing.example", "l-gzip-trailing", 8, mixed(12));
    let mut padded = gzip(r.xml().as_bytes());
    padded.extend_from_slice(&[0; 512]);
    write("l.xml.gz", &r, padded);
    let r = report("labels.example", "m-gzip-as-zip", 8, mixed(13));
    write(
        "m.eml",
        &r,
        email(&r, "application/zip", "report.zip", &gzip(r.xml().as_bytes())).into_bytes(),
    );
    let r = report("labels.example", "n-zip-as-gz", 9, mixed(14));
    write("n.xml.gz", &r, zip("report.xml", r.xml().as_bytes()));
    // Not readable: a bomb and a letter.
    std::fs::write(dir.join("x-bomb.zip"), zip("bomb.xml", &vec![b' '; 110 << 20])).unwrap();
    std::fs::write(dir.join("y-letter.txt"), "Dear postmaster, thanks.\n").unwrap();

    let ours_read = dmarc_json(&project, &[dir.to_str().unwrap(), "--since", "2000-01-01"]);
    let ours_by_file = by_file(&ours_read);
    for (name, (id, totals)) in &expected {
        let got = ours_by_file
            .get(name)
            .unwrap_or_else(|| panic!("{name} not read: {ours_read:#}"));
        assert_eq!(got["report_id"], id.as_str(), "{name}");
        assert_eq!(totals_of(got), *totals, "{name}");
    }
    let unreadable: Vec<(String, String)> = ours_read["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let file = u["file"].as_str().unwrap();
            (
                file.rsplit('/').next().unwrap().to_owned(),
                u["why"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(unreadable.len(), 2, "{unreadable:?}");
    assert_eq!(unreadable[0].0, "x-bomb.zip");
    assert!(unreadable[0].1.contains("more than 100 MB"), "{unreadable:?}");
    assert_eq!(unreadable[1].0, "y-letter.txt");
    assert!(unreadable[1].1.contains("no DMARC aggregate report"), "{unreadable:?}");

    // parsedmarc, reading the same files, counts the same for every report it can read; it
    // must read at least every well-formed one (and it reads some of the broken ones).
    let theirs = parsedmarc(&dir);
    let mut compared = Vec::new();
    for (name, t) in theirs.as_object().unwrap() {
        if t.get("error").is_some() || !expected.contains_key(name) {
            continue;
        }
        assert_eq!(totals_of(t), totals_of(&ours_by_file[name]), "{name}: parsedmarc {t}");
        assert_eq!(t["report_id"], ours_by_file[name]["report_id"], "{name}");
        compared.push(name.as_str());
    }
    for well_formed in ["a.xml", "b.xml.gz", "c.zip", "d.eml", "e.eml", "f.eml", "h.xml"] {
        assert!(
            compared.contains(&well_formed),
            "parsedmarc did not read {well_formed}: {theirs:#}"
        );
    }
    eprintln!("compared with parsedmarc: {compared:?}");
    assert!(compared.len() >= 10, "{compared:?}");

    // Reading the same files again keeps nothing twice.
    let r = run(project.command().arg("dmarc").arg(&dir));
    assert!(r.stdout.contains(": 14 report(s), 0 new; 2 unreadable"), "{}", r.stdout);
    let held = dmarc_json(&project, &["--since", "2000-01-01"]);
    assert_eq!(held["reports"].as_array().unwrap().len(), 14);
    assert_eq!(held["all"], ours_read["all"]);
}

/// The warnings in `json`: (kind, what it says).
fn warnings(json: &Value) -> Vec<(String, String)> {
    json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["kind"].as_str().unwrap().to_owned(),
                w["says"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn read_reports(project: &Project, name: &str, reports: &[Report]) -> Value {
    let dir = project.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for r in reports {
        std::fs::write(dir.join(format!("{}.xml", r.id)), r.xml()).unwrap();
    }
    dmarc_json(project, &[dir.to_str().unwrap()])
}

#[test]
fn each_warning_appears_for_its_cause_and_not_without() {
    let project = project("");
    // All ours, aligned, under p=quarantine: nothing to say.
    let clean = read_reports(
        &project,
        "clean",
        &[report("google.com", "c1", 1, vec![ours("192.0.2.1", 500)])],
    );
    assert_eq!(warnings(&clean), vec![]);

    // DKIM alignment: 2% failing at yahoo.com warns, naming it, the source and the signature;
    // 0.5% at google.com does not.
    let failing = |ip, n| Rec {
        dkim: "fail",
        sig: Some(("openinfra.dev", "s1", "fail")),
        ..ours(ip, n)
    };
    let w = warnings(&read_reports(
        &project,
        "dkim",
        &[
            report(
                "yahoo.com",
                "d1",
                1,
                vec![ours("192.0.2.1", 98), failing("192.0.2.3", 2)],
            ),
            report(
                "google.com",
                "d2",
                1,
                vec![ours("192.0.2.1", 995), failing("192.0.2.3", 5)],
            ),
        ],
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "dkim_alignment");
    for part in ["yahoo.com: 2 of 100", "2.0%", "192.0.2.3", "d=openinfra.dev s=s1 fail"] {
        assert!(w[0].1.contains(part), "{part}: {w:?}");
    }

    // SPF alignment: ours passing DKIM with the relay's MAIL FROM warns, naming that domain.
    let ses = Rec {
        spf: "fail",
        spf_domain: "amazonses.com",
        ..ours("192.0.2.4", 40)
    };
    let w = warnings(&read_reports(
        &project,
        "spf",
        &[report("google.com", "s1", 1, vec![ses])],
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "spf_alignment");
    assert!(
        w[0].1.contains("192.0.2.4") && w[0].1.contains("amazonses.com"),
        "{w:?}"
    );

    // A stranger sending as us warns with its address and count; a forwarder outside our
    // ranges whose mail still carries our signature is ours and does not.
    let forwarder = Rec {
        spf: "fail",
        spf_domain: "lists.university.example",
        ..ours("198.51.100.20", 12)
    };
    let w = warnings(&read_reports(
        &project,
        "strangers",
        &[report(
            "google.com",
            "n1",
            1,
            vec![ours("192.0.2.1", 50), stranger("203.0.113.66", 9), forwarder],
        )],
    ));
    let kinds: Vec<&str> = w.iter().map(|(k, _)| k.as_str()).collect();
    assert!(kinds.contains(&"not_ours"), "{w:?}");
    let stranger_line = &w.iter().find(|(k, _)| k == "not_ours").unwrap().1;
    assert!(
        stranger_line.contains("203.0.113.66") && stranger_line.contains("sent 9 messages"),
        "{w:?}"
    );
    assert!(!w.iter().any(|(_, s)| s.contains("198.51.100.20 is not")), "{w:?}");

    // p=none with 30 days of aligned mail: quarantine is safe. Not with 20 days, nor when
    // one message in the 30 days failed.
    let month = |prefix: &str, days: i64, bad_day: Option<i64>| -> Vec<Report> {
        (0..days)
            .map(|d| {
                let mut recs = vec![ours("192.0.2.1", 100)];
                if Some(d) == bad_day {
                    recs.push(Rec {
                        dkim: "fail",
                        spf: "fail",
                        ..ours("192.0.2.1", 1)
                    });
                }
                Report {
                    policy: "none",
                    ..report("google.com", &format!("{prefix}{d}"), d + 1, recs)
                }
            })
            .collect()
    };
    let v = read_reports(&project, "month", &month("m", 30, None));
    let w = warnings(&v);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "policy_none");
    assert!(w[0].1.contains("all 3,000 messages"), "{w:?}");
    let v = read_reports(&project, "short", &month("s", 20, None));
    assert_eq!(warnings(&v), vec![]);
    let v = read_reports(&project, "spoilt", &month("b", 30, Some(11)));
    let w = warnings(&v);
    assert!(!w.iter().any(|(k, _)| k == "policy_none"), "{w:?}");
}
