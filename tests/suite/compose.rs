//! Both real issues through the whole compose pipeline: snapshots of the MJML, HTML and text,
//! and the personalized message as a recipient receives it.

use crate::support::tools;
use std::path::Path;
use std::time::{Duration, SystemTime};

use newsletter::config::Config;
use newsletter::issue::Issue;
use newsletter::personalize::Personalizer;
use newsletter::recipients::Recipient;
use newsletter::unsubscribe::Secret;

/// The defaults with the checkout's layouts.
fn config() -> Config {
    Config {
        layouts: root().join("layouts"),
        ..Config::default()
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compose(name: &str) -> newsletter::compile::Rendered {
    let issue = Issue::load(&root().join("newsletters").join(format!("{name}.md"))).unwrap();
    newsletter::compose(&issue, &config()).unwrap()
}

fn recipient(fields: &[(&str, &str)]) -> Recipient {
    Recipient {
        line: 2,
        email: "alice@example.org".into(),
        fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[test]
fn july_sections_are_recognised_with_colour_and_tagline() {
    let r = compose("2025-07");
    let projects: Vec<(&str, &str)> = r
        .sections
        .iter()
        .filter(|s| s.kind == "project")
        .map(|s| (s.project.as_deref().unwrap(), s.tagline.as_deref().unwrap()))
        .collect();
    assert_eq!(
        projects,
        vec![
            (
                "openstack",
                "Open source software for creating private and public clouds"
            ),
            ("kata-containers", "The speed of containers, the security of VMs"),
            ("opendev", "Free software needs free tools"),
            ("starlingx", "A fully featured cloud for the distributed edge"),
            ("zuul", "Stop merging broken code"),
        ]
    );
    let plain: Vec<&str> = r
        .sections
        .iter()
        .filter(|s| s.kind == "section")
        .map(|s| s.title.as_str())
        .collect();
    assert_eq!(
        plain,
        vec![
            "OpenInfra Summit Schedule: For the Community, by the Community",
            "OpenInfra Foundation News",
            "OpenInfra Summit Europe",
            "OpenInfra University Partnership Program",
            "Upcoming OpenInfra and Community Events",
        ]
    );
    for color in ["#da1a32", "#b8451e", "#5b3f8c", "#2b4c9b", "#0b6e5f"] {
        assert!(r.html.contains(color), "project colour {color} missing from the HTML");
    }
    assert!(r.html.len() < newsletter::compile::GMAIL_CLIP_BYTES);
    assert!(r.html.contains("lang=\"en\""));
}

#[test]
fn january_lead_has_hero_intro_and_button() {
    let r = compose("2025-01");
    assert_eq!(r.sections[0].kind, "lead");
    assert_eq!(r.sections[0].images, 1);
    assert!(
        r.mjml
            .contains("<mj-button href=\"https://openinfra.org/annual-report/2024\"")
    );
    assert!(
        r.sections
            .iter()
            .any(|s| s.title == "Community Events" && s.kind == "section")
    );
    assert_eq!(r.sections.iter().filter(|s| s.kind == "project").count(), 4);
}

#[test]
fn snapshots_of_both_issues() {
    for name in ["2025-01", "2025-07"] {
        let r = compose(name);
        insta::assert_snapshot!(format!("{name}.mjml"), r.mjml);
        insta::assert_snapshot!(format!("{name}.html"), r.html);
        insta::assert_snapshot!(format!("{name}.txt"), r.text);
        // Paths relative to the checkout, so the snapshot holds wherever it is cloned.
        let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
        let warnings: Vec<String> = r.warnings.iter().map(|w| w.to_string().replace(&root, "")).collect();
        insta::assert_snapshot!(format!("{name}.warnings"), warnings.join("\n"));
    }
}

#[test]
fn the_message_a_recipient_receives() {
    let r = compose("2025-07");
    let config = Config {
        reply_to: Some("community@openinfra.dev".into()),
        ..Config::default()
    };
    let p = Personalizer::new(&r, &config, Secret::new("test-secret"))
        .unwrap()
        .with_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_751_400_000));
    let alice = recipient(&[("first_name", "Alice <b>"), ("name", "Alice\r\nBcc: eve@evil.example")]);
    let eml = String::from_utf8(p.mime(&alice, false).unwrap().bytes).unwrap();
    let (head, body) = eml.split_once("\r\n\r\n").unwrap();
    let head = head.replace("\r\n ", " "); // unfold long headers

    assert!(
        head.contains("From: \"OpenInfra Foundation\" <newsletter@openinfra.dev>"),
        "{head}"
    );
    assert!(head.contains("Reply-To: community@openinfra.dev"), "{head}");
    // The CRLF in the name is folded into a space: no Bcc header can be injected.
    let to = head.lines().find(|l| l.starts_with("To: ")).unwrap();
    assert_eq!(
        to,
        "To: =?utf-8?b?QWxpY2UgQmNjOiBldmVAZXZpbC5leGFtcGxl?= <alice@example.org>"
    ); // "Alice Bcc: eve@evil.example"
    assert!(!head.lines().any(|l| l.starts_with("Bcc:")), "{head}");
    assert!(
        head.contains("Subject: Inside Open Infrastructure: July 2025"),
        "{head}"
    );
    assert!(head.contains("Date: Tue, 01 Jul 2025 20:00:00 +0000"), "{head}");
    assert!(
        head.contains("List-Id: Inside Open Infrastructure <newsletter.openinfra.dev>"),
        "{head}"
    );
    assert!(
        head.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{head}"
    );
    let unsubscribe = p.unsubscribe_url("alice@example.org");
    let token = unsubscribe.split("token=").nth(1).unwrap();
    // The mailto carries the same token, so that a request by mail proves it came from here.
    assert!(
        head.contains(&format!(
            "List-Unsubscribe: <{unsubscribe}>, <mailto:newsletter-unsubscribe@openinfra.dev?subject=unsubscribe%20{token}>"
        )),
        "{head}"
    );
    let claim = Secret::new("test-secret").verify(token).unwrap();
    assert_eq!(claim.email, "alice@example.org");

    let message_id = p.message_id("alice@example.org");
    assert!(head.contains(&format!("Message-ID: {message_id}")), "{head}");
    assert_eq!(
        message_id,
        p.message_id("ALICE@example.org"),
        "Message-ID is deterministic per issue and recipient"
    );
    assert!(message_id.starts_with("<2025-07.") && message_id.ends_with("@openinfra.dev>"));

    // multipart/alternative: text first, HTML last.
    assert!(head.contains("Content-Type: multipart/alternative"), "{head}");
    let text_at = body.find("Content-Type: text/plain; charset=utf-8").unwrap();
    let html_at = body.find("Content-Type: text/html; charset=utf-8").unwrap();
    assert!(text_at < html_at);

    // The same message twice is byte for byte the same (pinned date, derived boundary).
    assert_eq!(eml, String::from_utf8(p.mime(&alice, false).unwrap().bytes).unwrap());
}

/// The message is one splice of pieces encoded once per issue and fields encoded per
/// recipient: Python's email package, decoding it as a mail client does, must find exactly
/// the personalized text and HTML in it, for a reader with and without fields that need
/// encoding, and the HTML's title must be the subject as sent.
#[test]
fn the_spliced_message_decodes_to_the_personalized_parts() {
    needs!(tools::PYTHON3);
    use std::io::Write;
    let r = compose("2025-07");
    let p = Personalizer::new(&r, &Config::default(), Secret::new("k"))
        .unwrap()
        .for_test_send();
    let script = "import email, email.policy, json, sys\nm = email.message_from_binary_file(sys.stdin.buffer, policy=email.policy.default)\nprint(json.dumps({'subject': m['subject'], 'text': m.get_body(('plain',)).get_content(), 'html': m.get_body(('html',)).get_content()}))\n";
    for fields in [
        &[("first_name", "Alice")][..],
        &[("first_name", ".Zoë  =?x?= \t"), ("name", "Zoë Ünal")][..],
    ] {
        let reader = recipient(fields);
        let parts = p.parts(&reader).unwrap();
        let mime = p.mime(&reader, false).unwrap();
        let mut child = std::process::Command::new(tools::program(&tools::PYTHON3))
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child.stdin.take().unwrap().write_all(&mime.bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let decoded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(decoded["subject"], parts.subject);
        assert!(parts.subject.starts_with("[TEST] "));
        // Python gives the text with \n line ends, as the parts have them.
        assert_eq!(decoded["text"].as_str().unwrap(), parts.text);
        assert_eq!(decoded["html"].as_str().unwrap(), parts.html);
        assert!(
            parts.html.contains(&format!("<title>{}</title>", parts.subject)),
            "the title is the subject as sent"
        );
        let text = String::from_utf8(mime.bytes).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let long: Vec<&str> = body.split("\r\n").filter(|line| line.len() > 76).collect();
        assert!(long.is_empty(), "{long:?}");
    }
}

#[test]
fn fields_are_escaped_in_html_and_literal_in_text() {
    let mut r = compose("2025-01");
    r.html = r
        .html
        .replacen("2024 — A Year in Review", "2024 — A Year in Review, {{first_name}}", 1);
    r.text = format!("Hi {{{{first_name}}}}\n{}", r.text);
    r.subject = "News for {{first_name}}".into();
    let p = Personalizer::new(&r, &Config::default(), Secret::new("k")).unwrap();
    let parts = p
        .parts(&recipient(&[("first_name", "<script>Al & Co</script>")]))
        .unwrap();
    assert!(
        parts
            .html
            .contains("A Year in Review, &lt;script&gt;Al &amp; Co&lt;/script&gt;")
    );
    assert!(parts.text.starts_with("Hi <script>Al & Co</script>\n"));
    assert_eq!(parts.subject, "News for <script>Al & Co</script>");
}

#[test]
fn a_missing_field_names_the_field_and_the_recipient() {
    let mut r = compose("2025-01");
    r.subject = "Hello {{first_name}}".into();
    let p = Personalizer::new(&r, &Config::default(), Secret::new("k")).unwrap();
    let err = p.parts(&recipient(&[])).unwrap_err().to_string();
    assert_eq!(
        err,
        "recipient alice@example.org (line 2): the issue uses {{first_name}} but this recipient has no `first_name` field: add the column to the CSV or remove it from the issue"
    );
}

/// Every `href` and `src` of the HTML, and every URL of the text part, is a valid URI
/// (RFC 3986): no space, no non-ASCII, no Rust escape.
#[test]
fn every_url_sent_is_percent_encoded() {
    let (root, config) = (root(), config());
    let valid = |url: &str| {
        !url.is_empty()
            && url
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b))
    };
    for path in [
        root.join("newsletters/2025-07.md"),
        root.join("newsletters/2025-01.md"),
        root.join("tests/fixtures/non-ascii-urls.md"),
    ] {
        let issue = Issue::load(&path).unwrap();
        let rendered = newsletter::compose(&issue, &config).unwrap();
        let personalizer = Personalizer::new(&rendered, &config, Secret::new("k")).unwrap();
        let parts = personalizer.parts(&recipient(&[("first_name", "Zoë")])).unwrap();
        let html = parts.html.replace("&amp;", "&");
        let mut urls = 0;
        for attr in ["href=\"", "src=\""] {
            for piece in html.split(attr).skip(1) {
                let url = piece.split('"').next().unwrap();
                assert!(valid(url), "{}: {attr}{url}", path.display());
                urls += 1;
            }
        }
        assert!(urls > 5, "{}", path.display());
        for url in parts
            .text
            .split_whitespace()
            .filter(|w| w.contains("://") || w.starts_with("mailto:"))
        {
            let url = url.trim_matches(|c| "()<>[],.".contains(c));
            assert!(valid(url), "{}: text part: {url}", path.display());
        }
        assert!(!html.contains("\\u{"), "{}", path.display());
    }
    let issue = Issue::load(&root.join("tests/fixtures/non-ascii-urls.md")).unwrap();
    let html = newsletter::compose(&issue, &config).unwrap().html;
    for expected in [
        "https://openinfra.dev/img/screenshot-2025-12-16-at-9.44.38%E2%80%AFam.png",
        "https://openinfra.dev/files/annual%20report%202025.pdf",
        "https://openinfra.dev/caf%C3%A9/r%C3%A9sum%C3%A9?q=a%20b%7Cc",
        "mailto:%C3%A9quipe@openinfra.dev",
    ] {
        assert!(html.contains(expected), "{expected}");
    }
}

/// The text part of every list shape keeps every item, its number and its nesting.
#[test]
fn every_list_shape_keeps_its_items_in_the_text_part() {
    let (root, config) = (root(), config());
    let issue = Issue::load(&root.join("tests/fixtures/lists.md")).unwrap();
    let rendered = newsletter::compose(&issue, &config).unwrap();
    let start = rendered.text.find("## A heading inside").unwrap();
    let end = rendered.text.find("* bullet again").unwrap() + "* bullet again".len();
    insta::assert_snapshot!("lists.txt", &rendered.text[start..end]);
}

/// A reader who chose Kata Containers gets the lead, the foundation's sections and the Kata
/// section; the other projects are one line of links to their sections on the web.
#[test]
fn an_edition_for_one_project_keeps_the_rest_as_links() {
    use newsletter::choice::Choice;
    let root = root();
    let config = Config {
        archive: newsletter::config::Archive {
            url: Some("https://openinfra.dev/newsletter/archive".into()),
            ..Default::default()
        },
        ..config()
    };
    let issue = Issue::load(&root.join("newsletters/2025-07.md")).unwrap();
    let prepared = newsletter::prepare(&issue, &config).unwrap();
    let editions = prepared.editions(&issue, &config).unwrap();
    let (kata, unknown) = Choice::parse("kata-containers", editions.registry());
    assert!(unknown.is_empty());
    let r = editions.compile(&kata).unwrap();
    let whole = editions.compile(&Choice::Everything).unwrap();
    for text in [&r.html, &r.text] {
        assert!(text.contains("rust-vmm"), "the Kata section is there");
        assert!(text.contains("OpenInfra Summit Europe"), "sections of no project stay");
        assert!(!text.contains("Kolla-Ansible"), "the OpenStack section is not");
        assert!(!text.contains("starlingx_user_survey"), "nor StarlingX's");
        assert!(text.contains("https://openinfra.dev/newsletter/archive/2025-07/#openstack"));
    }
    assert!(
        r.text.contains(
            "Also in this issue:\n- OpenStack: https://openinfra.dev/newsletter/archive/2025-07/#openstack\n"
        )
    );
    assert!(whole.html.contains("Kolla-Ansible") && !whole.html.contains("Also in this issue"));
    // The archive page's sections carry the anchors the links point to.
    assert!(whole.html.contains("id=\"openstack\""));
}

/// A paragraph holding a reader's value is wrapped once the value is in: a long name does not
/// run past 72 columns, and a short one leaves no ragged hole.
#[test]
fn the_text_part_wraps_after_the_readers_values_are_filled_in() {
    let (root, config) = (root(), config());
    let source = "---\ntitle: Wrapping\npreheader: p\n---\nDear {{first_name}}, this paragraph is long enough to need wrapping at least twice in the text part of the message.\n\n* An item for {{first_name}} that is also long enough to be wrapped under its own marker here.\n";
    let issue = Issue::parse(&root.join("newsletters/wrap.md"), source).unwrap();
    let rendered = newsletter::compose(&issue, &config).unwrap();
    let p = Personalizer::new(&rendered, &config, Secret::new("k")).unwrap();
    for name in ["Al", "Bartholomew-Alexandros Konstantinopoulos"] {
        let text = p.parts(&recipient(&[("first_name", name)])).unwrap().text;
        let paragraph: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("Dear ")).take(3).collect();
        // Only a link, one long word, may run past the line.
        assert!(
            text.lines().all(|l| l.chars().count() <= 72 || l.contains("://")),
            "{name}:\n{text}"
        );
        assert!(
            paragraph[0].chars().count() > 60,
            "{name}: the first line is filled: {paragraph:?}"
        );
        let item = text.lines().position(|l| l.starts_with("* An item for")).unwrap();
        let next = text.lines().nth(item + 1).unwrap();
        assert!(
            next.starts_with("  ") && !next.trim().is_empty(),
            "{name}: under its marker: {next:?}"
        );
        assert!(!text.contains("{{"), "{name}: no template left");
    }
}
