//! `newsletter init`: a project of one's own, whose messages name its sender and no one else;
//! `new` scaffolds its sections; `check` warns a project that still sends as OpenInfra.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

use crate::support::{self, Sink, decode_qp, header, run, tools};

/// The binary in a copy of the project, with OpenInfra's defaults.
fn newsletter(out: &TempDir) -> Command {
    newsletter_in(&support::project_copy(out.path()))
}

/// The binary in `dir`, as someone starting there would run it.
pub fn newsletter_in(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("newsletter").unwrap();
    cmd.current_dir(dir)
        .env_remove("NEWSLETTER_RECIPIENTS")
        .env("NEWSLETTER_UNSUBSCRIBE_SECRET", support::SECRET)
        .env("SOURCE_DATE_EPOCH", "1751400000");
    cmd
}

pub const KATA: &[&str] = &[
    "--name",
    "Kata News",
    "--sender",
    "Kata Containers community",
    "--from",
    "news@example.org",
    "--postal-address",
    "1 Main St, Austin, TX 78701, USA",
    "--site",
    "https://news.example.org",
    "--projects",
    "Kata Containers, Confidential Containers",
];

/// A project made by `init` in a new folder `kata` under `out`.
pub fn kata_project(out: &TempDir) -> PathBuf {
    let r = run(newsletter_in(out.path()).args(["init", "kata"]).args(KATA));
    assert_eq!(r.code, 0, "{}", r.stderr);
    out.path().join("kata")
}

const ISSUE: &str = "---\ntitle: \"Kata News: December 2026\"\ndate: 2026-12-01\nseo:\n  description: What happened in December.\n---\nHello {{first_name}}, the year in review.\n\n# News from the community\n\n* The [community call](https://news.example.org/calls/) moved to Thursdays.\n\n# Kata Containers\n\n* Kata Containers 3.20 [was released](https://news.example.org/kata/3.20/).\n\n# Confidential Containers\n\n* A [new guide](https://news.example.org/coco/guide/) for attestation.\n";

#[test]
fn init_writes_a_project_whose_messages_name_its_sender_and_no_one_else() {
    needs!(tools::SMTP_SINK);
    let out = TempDir::new().unwrap();
    let dir = kata_project(&out);
    for file in [
        "newsletter.yaml",
        "layouts/inside-openinfra/projects.yaml",
        "recipients.csv",
        ".gitignore",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    // Nothing is asked off a terminal: the missing flags are named.
    let r = run(newsletter_in(out.path()).args(["init", "other", "--name", "X"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("not on a terminal")
            && r.stderr
                .contains("--sender, --from, --postal-address, --site, --projects"),
        "{}",
        r.stderr
    );
    // A project is never written over.
    let r = run(newsletter_in(out.path()).args(["init", "kata"]).args(KATA));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("kata/newsletter.yaml, ") && r.stderr.contains("already exist:"),
        "{}",
        r.stderr
    );

    // `new` scaffolds this project's sections, none of OpenInfra's.
    let r = run(newsletter_in(&dir).args(["new", "2026-12", "--author", "Ana"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let scaffold = std::fs::read_to_string(dir.join("newsletters/2026-12.md")).unwrap();
    assert!(scaffold.contains("title: \"Kata News: December 2026\""), "{scaffold}");
    assert!(scaffold.contains("# News from Kata Containers community"), "{scaffold}");
    assert!(scaffold.contains("# Kata Containers\n") && scaffold.contains("# Confidential Containers\n"));
    assert!(!scaffold.to_lowercase().contains("openinfra"), "{scaffold}");

    std::fs::write(dir.join("newsletters/2026-12.md"), ISSUE).unwrap();
    std::fs::write(
        dir.join("recipients.csv"),
        "email,first_name,projects\nana@example.net,Ana,\nbo@example.net,Bo,kata-containers\n",
    )
    .unwrap();
    let r = run(newsletter_in(&dir).args(["check", "2026-12", "--offline", "--format", "json"]));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("borrowed-identity"), "{}", r.stdout);

    let sink = Sink::start();
    let r = run(newsletter_in(&dir)
        .args(["send", "2026-12", "--yes"])
        .env("NEWSLETTER_SMTP_HOST", "127.0.0.1")
        .env("NEWSLETTER_SMTP_PORT", sink.port.to_string())
        .env("NEWSLETTER_SMTP_SECURITY", "none"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    for (rcpt, text) in &messages {
        assert_eq!(
            header(text, "From"),
            Some("\"Kata Containers community\" <news@example.org>"),
            "{rcpt:?}"
        );
        assert_eq!(header(text, "List-Id"), Some("Kata News <newsletter.example.org>"));
        let unsubscribe = header(text, "List-Unsubscribe").unwrap_or_default();
        assert!(
            unsubscribe.contains("<https://news.example.org/newsletter/unsubscribe?token="),
            "{unsubscribe}"
        );
        let head = text.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n ", " ");
        assert!(
            head.contains("mailto:newsletter-unsubscribe@example.org?subject="),
            "{head}"
        );
        let body = decode_qp(text);
        assert!(body.contains("1 Main St, Austin, TX 78701, USA"), "the postal address");
        assert!(
            body.contains("subscribed to news from Kata Containers community."),
            "the footer"
        );
        assert!(body.contains(">Kata News</h1>"), "the header");
        let lower = body.to_lowercase();
        for borrowed in ["openinfra", "open infrastructure", "austin, tx 78767"] {
            assert!(!lower.contains(borrowed), "{rcpt:?} carries `{borrowed}`");
        }
    }
    // Bo chose Kata Containers: his edition leaves the other project out.
    let bo = &messages.iter().find(|(r, _)| r[0] == "bo@example.net").unwrap().1;
    assert!(!decode_qp(bo).contains("attestation"), "Bo's edition");
}

/// On a terminal, `init` asks for what the flags did not give (answered here through
/// `script`, which gives it one), and an answer that cannot work is refused before anything
/// is written.
#[test]
fn init_asks_on_a_terminal_for_what_the_flags_did_not_give() {
    needs!(tools::SCRIPT);
    let out = TempDir::new().unwrap();
    let binary = assert_cmd::cargo::cargo_bin("newsletter");
    let ask = |dir: &str, answers: &str| {
        let mut child = std::process::Command::new(tools::program(&tools::SCRIPT))
            .args([
                "-qec",
                &format!("{} init {dir} --name 'Kata News'", binary.display()),
                "/dev/null",
            ])
            .current_dir(out.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(answers.as_bytes()).unwrap();
        let done = child.wait_with_output().unwrap();
        (done.status.code(), String::from_utf8_lossy(&done.stdout).into_owned())
    };
    let (code, said) = ask(
        "asked",
        "Kata Containers community\nnews@example.org\n1 Main St, Austin, TX 78701, USA\nhttps://news.example.org\nKata Containers, Zuul\n",
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("Who sends it, as the From line shows") && said.contains("Projects with sections"),
        "{said}"
    );
    assert!(!said.contains("The newsletter's name"), "--name was given: {said}");
    let registry = std::fs::read_to_string(out.path().join("asked/layouts/inside-openinfra/projects.yaml")).unwrap();
    assert!(
        registry.contains("id: kata-containers") && registry.contains("id: zuul"),
        "{registry}"
    );
    let (code, said) = ask(
        "refused",
        "Kata\nnews@example.org\nsomewhere\nhttp://news.example.org\n\n",
    );
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("--site `http://news.example.org`: write the website as https://HOST"),
        "{said}"
    );
    assert!(!out.path().join("refused").exists(), "nothing written");
}

#[test]
fn check_warns_a_project_of_another_domain_that_still_sends_as_openinfra() {
    let out = TempDir::new().unwrap();
    let dir = out.path().join("project");
    std::fs::create_dir_all(dir.join("newsletters")).unwrap();
    std::fs::write(dir.join("newsletters/2026-12.md"), ISSUE).unwrap();
    std::fs::write(
        dir.join("newsletter.yaml"),
        "unsubscribe: { url: https://news.example.org/newsletter/unsubscribe }\n",
    )
    .unwrap();
    let r = run(newsletter_in(&dir).args(["check", "2026-12", "--offline"]));
    assert_eq!(r.code, 0, "a warning, not an error: {}", r.stderr);
    assert!(
        r.stdout.contains(
            "newsletter.yaml: this project's links are at news.example.org, but it still sends as the OpenInfra Foundation: from.name, from.address, list_id, address, unsubscribe.mailto, archive.title, subscribe.forms keep OpenInfra's values"
        ) && r.stdout.contains("`newsletter init` writes a project of your own")
            && r.stdout.contains("[borrowed-identity]"),
        "{}",
        r.stdout
    );
    // Its issue has no web page (no archive.url, no seo.url): the sections an edition leaves
    // out are listed with nothing to follow.
    assert!(
        r.stdout.contains("without archive.url or the issue's seo.url") && r.stdout.contains("[unlinked-elsewhere]"),
        "{}",
        r.stdout
    );
    // The foundation's own project (the bundled July issue at openinfra.dev) is not warned.
    std::fs::remove_file(dir.join("newsletter.yaml")).unwrap();
    let july = support::root().join("newsletters/2025-07.md");
    let r = run(newsletter_in(&dir).arg("check").arg(&july).arg("--offline"));
    assert!(
        !r.stdout.contains("borrowed-identity") && !r.stdout.contains("unlinked-elsewhere"),
        "{}",
        r.stdout
    );
}

/// OpenInfra's own project: its website's fields and the foundation's sections.
#[test]
fn new_scaffolds_an_issue_that_previews() {
    let out = TempDir::new().unwrap();
    let dir = out.path().join("issues");
    let r = run(newsletter(&out)
        .args(["new", "2025-08", "--author", "Jimmy McArthur"])
        .env("NEWSLETTER_NEWSLETTERS", &dir));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let md = std::fs::read_to_string(dir.join("2025-08.md")).unwrap();
    assert!(md.contains("title: \"Inside Open Infrastructure: August 2025\""));
    assert!(md.contains("author: \"Jimmy McArthur\""), "{md}");
    assert!(md.contains("# Kata Containers: The speed of containers, the security of VMs"));

    let r = run(newsletter(&out)
        .args(["preview", "2025-08", "--format", "json"])
        .env("NEWSLETTER_NEWSLETTERS", &dir));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let projects = json["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "project")
        .count();
    assert_eq!(projects, 5);
    // Every placeholder of the scaffold is an error until written, so it cannot be sent.
    let warnings = json["warnings"].as_array().unwrap();
    assert!(warnings.len() >= 8, "{}", r.stdout);
    assert!(warnings.iter().all(|w| w["kind"] == "placeholder"), "{}", r.stdout);
    // The text summary counts them as what they are: errors, not warnings.
    let text = run(newsletter(&out)
        .args(["preview", "2025-08"])
        .env("NEWSLETTER_NEWSLETTERS", &dir));
    let tally = text.stderr.lines().last().unwrap_or_default();
    assert_eq!(tally, format!("{} errors", warnings.len()), "{}", text.stderr);
    let check = run(newsletter(&out)
        .args(["check", "2025-08", "--offline"])
        .env("NEWSLETTER_NEWSLETTERS", &dir));
    assert_eq!(check.code, 1, "{}", check.stdout);
    assert!(
        check
            .stdout
            .contains("placeholder text left: `TODO: write the introduction.`"),
        "{}",
        check.stdout
    );

    let again = run(newsletter(&out)
        .args(["new", "2025-08"])
        .env("NEWSLETTER_NEWSLETTERS", &dir));
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("2025-08.md already exists"), "{}", again.stderr);

    let bad = run(newsletter(&out)
        .args(["new", "2025-13"])
        .env("NEWSLETTER_NEWSLETTERS", &dir));
    assert_eq!(bad.code, 2);
    assert_eq!(
        bad.stderr,
        "error: `2025-13` is not a month: write it as YYYY-MM, e.g. 2025-08\n"
    );
}
