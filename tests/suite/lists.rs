//! Lists as spreadsheets save them (issue 37, item 8): a `;`-separated file (Excel's "CSV"
//! where the decimal mark is a comma) is read; a Latin-1 file is refused before anything is
//! sent, naming the encoding and the fix; and a list none of whose rows can be read fails.

use crate::support;
use crate::support::tools;
use support::{Project, Sink, run, scheduled_issue};

#[test]
fn semicolons_latin_1_and_a_list_of_unreadable_rows() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        "email,first_name\nx@example.org,X\n",
        "throttle: { rate: off }\n",
    )
    .with_issues(&[("2025-06", scheduled_issue(None)), ("2025-07", scheduled_issue(None))]);
    let lists = project.dir.path();

    let european = lists.join("european.csv");
    std::fs::write(
        &european,
        "Email;First Name\r\nzoe@example.org;Zoë\r\n\"ann@example.org\";\"Ann; Ph.D.\"\r\n",
    )
    .unwrap();
    let r = run(project
        .command()
        .args(["send", "2025-06", "--yes", "-q", "--recipients"])
        .arg(&european));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut to: Vec<String> = sink.received().into_keys().collect();
    to.sort();
    assert_eq!(to, ["ann@example.org", "zoe@example.org"]);

    let latin1 = lists.join("latin1.csv");
    std::fs::write(&latin1, b"email,first_name\nzoe@example.org,Zo\xeb\n").unwrap();
    let r = run(project
        .command()
        .args(["send", "2025-07", "--yes", "--recipients"])
        .arg(&latin1));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("latin1.csv: the file is not UTF-8")
            && r.stderr.contains("Windows-1252")
            && r.stderr.contains("CSV UTF-8"),
        "{}",
        r.stderr
    );

    let broken = lists.join("broken.csv");
    std::fs::write(&broken, "email,first_name\nnot an address,A\nalso@@wrong,B\n").unwrap();
    let r = run(project
        .command()
        .args(["send", "2025-07", "--yes", "--recipients"])
        .arg(&broken));
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("none of its 2 rows could be read"), "{}", r.stderr);
    assert_eq!(sink.count(), 2, "nothing more sent");
}
