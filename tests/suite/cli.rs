//! The binary as a user runs it: preview, new, --as, --format json, and every error with its
//! message and exit code.

use crate::support;

use std::path::PathBuf;

use assert_cmd::Command;
use support::{root, run};
use tempfile::TempDir;

/// The binary in the checkout, writing into a temporary out folder, with a pinned date and
/// a known unsubscribe secret.
fn newsletter(out: &TempDir) -> Command {
    let mut cmd = Command::cargo_bin("newsletter").unwrap();
    cmd.current_dir(support::project_copy(out.path()))
        .env_remove("NEWSLETTER_RECIPIENTS")
        .env("NEWSLETTER_OUT", out.path())
        .env("NEWSLETTER_UNSUBSCRIBE_SECRET", support::SECRET)
        .env("SOURCE_DATE_EPOCH", "1751400000");
    cmd
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

#[test]
fn preview_prints_summary_text_and_warnings_and_writes_three_files() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).args(["preview", "2025-07"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Subject:   Inside Open Infrastructure: July 2025"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("Preheader: Meet the OpenInfra Summit Europe planning committee"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("From:      OpenInfra Foundation <newsletter@openinfra.dev>")
    );
    assert!(
        r.stdout
            .contains("To:        Alice Example <alice@example.org> (recipients.example.csv line 2)")
    );
    assert!(
        r.stdout.contains("OpenStack [project] Open source software"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("Zuul [project] Stop merging broken code                      2 items   6 links"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("text part"));
    assert!(r.stdout.contains("* Diskimage-builder 3.39.0 has been released."));
    assert_eq!(r.stderr, "", "the bundled July issue is a good example: no warnings");
    // The issue as the website published it: an image without alt text, an http:// link and a
    // link without text.
    let published = fixture("published/2025-07.md");
    let r = run(newsletter(&out).arg("preview").arg(&published));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("published/2025-07.md:23: link http://summit2025.openinfra.org/a/schedule uses http://"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.ends_with("3 warnings\n"), "{}", r.stderr);
    let r = run(newsletter(&out)
        .arg("preview")
        .arg(&published)
        .args(["--format", "json"]));
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let kinds: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["image-without-alt", "insecure-link", "empty-link-text"]);

    let dir = out.path().join("2025-07");
    let html = std::fs::read_to_string(dir.join("email.html")).unwrap();
    let text = std::fs::read_to_string(dir.join("email.txt")).unwrap();
    let eml = std::fs::read_to_string(dir.join("email.eml")).unwrap();
    assert!(html.to_ascii_lowercase().starts_with("<!doctype html>"));
    assert!(
        html.contains("https://openinfra.dev/newsletter/unsubscribe?token="),
        "the preview is personalized"
    );
    assert!(!html.contains("{{"), "no placeholder is left");
    assert!(text.contains("Unsubscribe: https://openinfra.dev/newsletter/unsubscribe?token="));
    assert!(eml.contains("To: \"Alice Example\" <alice@example.org>"), "{eml}");
    assert!(eml.contains("Date: Tue, 01 Jul 2025 20:00:00 +0000"));
}

#[test]
fn preview_as_a_recipient_by_path() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).args(["preview", "newsletters/2025-01.md", "--as", "BOB@example.com", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "--quiet prints no summary");
    let eml = std::fs::read_to_string(out.path().join("2025-01/email.eml")).unwrap();
    assert!(eml.contains("To: \"Bob Builder\" <bob@example.com>"), "{eml}");
}

#[test]
fn preview_as_someone_not_on_the_list() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).args(["preview", "2025-07", "--as", "zoe@example.org"]));
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: zoe@example.org is not in recipients.example.csv; add a row for it or pick an address from the list\n"
    );
    let r = run(newsletter(&out).args(["preview", "2025-07", "--as", "carol@example.net"]));
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: carol@example.net is on line 4 of recipients.example.csv, marked unsubscribed: the issue is not sent to this address; preview --as another one\n"
    );
}

#[test]
fn send_mistakes_say_what_to_do() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).args(["send", "--test"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("name the issue: `newsletter send ISSUE --test`"),
        "{}",
        r.stderr
    );
    let r = run(newsletter(&out)
        .args(["send", "2025-07", "--dry-run"])
        .env("NEWSLETTER_RECIPIENTS", out.path().join("recipients.csv")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("No such file"), "{}", r.stderr);
    assert!(
        r.stderr.contains("copy recipients.example.csv to start one"),
        "{}",
        r.stderr
    );
}

#[test]
fn preview_json_summary() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).args(["preview", "2025-07", "--format", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(json["subject"], "Inside Open Infrastructure: July 2025");
    assert_eq!(json["to"], "Alice Example <alice@example.org>");
    let sections = json["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 11);
    let openstack = sections.iter().find(|s| s["project"] == "openstack").unwrap();
    assert_eq!(openstack["kind"], "project");
    assert_eq!(openstack["links"], 11);
    assert_eq!(openstack["line"], 56);
    assert_eq!(json["warnings"].as_array().unwrap().len(), 0);
    assert!(json["html_bytes"].as_u64().unwrap() > 10_000);
}

#[test]
fn preview_open_hands_the_html_to_the_browser() {
    let out = TempDir::new().unwrap();
    let log = out.path().join("opened.txt");
    let browser = out.path().join("browser.sh");
    std::fs::write(&browser, format!("#!/bin/sh\necho \"$@\" > {}\n", log.display())).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&browser)
        .status()
        .unwrap();
    let r = run(newsletter(&out)
        .arg("preview")
        .arg(fixture("published/2025-07.md"))
        .args(["--open", "-q"])
        .env("BROWSER", &browser));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let opened = std::fs::read_to_string(&log).unwrap();
    assert!(opened.trim().ends_with("2025-07/email.html"), "{opened}");
    // -q: errors only (the published issue has warnings and no errors).
    assert_eq!(r.stderr, "", "{}", r.stderr);

    // $BROWSER with arguments, with %s for the file, and a list to try in turn.
    let with_args = format!("/nonexistent/browser:{} --new-window %s --private", browser.display());
    let r = run(newsletter(&out)
        .args(["preview", "2025-07", "--open", "-q"])
        .env("BROWSER", &with_args));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let opened = std::fs::read_to_string(&log).unwrap();
    assert!(
        opened.starts_with("--new-window /") && opened.trim().ends_with("email.html --private"),
        "{opened}"
    );
}

#[test]
fn unknown_issue_lists_the_available_ones() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).args(["preview", "2025-02"]));
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: no issue `2025-02` in newsletters; available: 2025-01, 2025-07\n"
    );
}

#[test]
fn bad_front_matter_names_file_line_and_column() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).arg("preview").arg(fixture("bad-yaml.md")));
    assert_eq!(r.code, 2);
    let expected = format!("error: {}:", fixture("bad-yaml.md").display());
    assert!(r.stderr.starts_with(&expected), "{}", r.stderr);
    assert!(r.stderr.contains(": invalid front matter: "), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line, no debug dump: {}", r.stderr);
}

#[test]
fn a_field_missing_from_the_list_names_field_and_recipient() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).arg("preview").arg(fixture("unknown-field.md")));
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: recipient alice@example.org (line 2): the issue uses {{nickname}} but this recipient has no `nickname` field: add the column to the CSV or remove it from the issue\n"
    );
}

#[test]
fn edge_cases_warn_with_their_lines() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).arg("preview").arg(fixture("edge-cases.md")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let file = fixture("edge-cases.md").display().to_string();
    for expected in [
        format!("{file}:3: front matter key `banner` is not used by the newsletter"),
        format!("{file}:7: Markdown left as literal text: `![](/img/screenshot-2025-12-16-at-9.44.3"),
        format!("{file}:9: raw HTML <script> removed"),
        format!("{file}:9: raw HTML attribute onmouseover removed"),
        format!("{file}:13: link to https://zuul-ci.org/ has no text"),
        format!("{file}:14: relative link `docs/index.html` cannot be resolved"),
        "no preheader".to_owned(),
    ] {
        assert!(r.stderr.contains(&expected), "missing {expected:?} in\n{}", r.stderr);
    }
    let html = std::fs::read_to_string(out.path().join("edge-cases/email.html")).unwrap();
    assert!(html.contains("Hi Alice!"), "personalized from the first row");
    assert!(!html.contains("alert(") && !html.contains("onmouseover"));
}

/// A copy of the bundled layout with one template changed.
fn broken_layout(out: &TempDir, file: &str, from: &str, to: &str) -> PathBuf {
    let target = support::copy_layouts(out.path()).join("inside-openinfra").join(file);
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains(from));
    std::fs::write(&target, text.replacen(from, to, 1)).unwrap();
    out.path().join("layouts")
}

#[test]
fn an_mjml_error_names_the_template() {
    let out = TempDir::new().unwrap();
    let layouts = broken_layout(
        &out,
        "partials/project.mjml.hbs",
        "font-size=\"22px\"",
        "font-size=\"22px",
    );
    let r = run(newsletter(&out)
        .args(["preview", "2025-07"])
        .env("NEWSLETTER_LAYOUTS", &layouts));
    assert_eq!(r.code, 2);
    // An unclosed quote swallows the rest of the tag: found before mrml runs, with its line.
    assert!(
        r.stderr
            .contains("partials/project.mjml.hbs:4: <mj-text> is never ended with `>`"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_misspelt_template_variable_names_the_template() {
    let out = TempDir::new().unwrap();
    let layouts = broken_layout(
        &out,
        "partials/footer.mjml.hbs",
        "{{footer.address}}",
        "{{footer.adress}}",
    );
    let r = run(newsletter(&out)
        .args(["preview", "2025-07"])
        .env("NEWSLETTER_LAYOUTS", &layouts));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("partials/footer.mjml.hbs"), "{}", r.stderr);
    assert!(r.stderr.contains("unknown variable `footer.adress`"), "{}", r.stderr);
}

#[test]
fn a_copied_layout_changes_the_email_without_rust() {
    let out = TempDir::new().unwrap();
    let layouts = broken_layout(&out, "projects.yaml", "color: \"#da1a32\"", "color: \"#123456\"");
    let r = run(newsletter(&out)
        .args(["preview", "2025-07", "-q"])
        .env("NEWSLETTER_LAYOUTS", &layouts));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = std::fs::read_to_string(out.path().join("2025-07/email.html")).unwrap();
    assert!(html.contains("#123456") && !html.contains("#da1a32"));
}

#[test]
fn an_unknown_config_key_suggests_the_nearest() {
    let out = TempDir::new().unwrap();
    let config = out.path().join("newsletter.yaml");
    std::fs::write(
        &config,
        "from: { name: X, address: x@example.org }\nreply_too: a@example.org\n",
    )
    .unwrap();
    let r = run(newsletter(&out)
        .arg("--config")
        .arg(&config)
        .args(["preview", "2025-07"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("newsletter.yaml:2:1: unknown field `reply_too`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.trim_end().ends_with("did you mean `reply_to`?"),
        "{}",
        r.stderr
    );
}

#[test]
fn help_documents_exit_codes() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).args(["preview", "--help"]));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("Exit codes:") && r.stdout.contains("--as <EMAIL>"),
        "{}",
        r.stdout
    );
}

#[test]
fn html_over_gmails_limit_is_a_warning() {
    let out = TempDir::new().unwrap();
    let mut issue = String::from(
        "---\ntitle: Long\nseo:\n  url: https://openinfra.dev/blog/long\n  description: Long.\n---\n# News\n\n",
    );
    for i in 0..1500 {
        issue.push_str(&format!(
            "* Item {i} with [a link to somewhere](https://openinfra.dev/news/{i}) and some words.\n"
        ));
    }
    let path = out.path().join("long.md");
    std::fs::write(&path, issue).unwrap();
    let r = run(newsletter(&out).arg("preview").arg(&path));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Gmail clips messages over 102 KB, hiding the footer and its unsubscribe link [html-too-large]"),
        "{}",
        r.stderr
    );
}

#[test]
fn mjml_and_handlebars_mistakes_in_a_layout_name_the_file_and_line() {
    for (file, from, to, exit, expected) in [
        (
            "partials/project.mjml.hbs",
            "<mj-column>",
            "<mj-colum>",
            2,
            "partials/project.mjml.hbs:2: <mj-colum> is not an MJML element: did you mean `mj-column`?",
        ),
        (
            "partials/project.mjml.hbs",
            "</mj-column>",
            "",
            2,
            "partials/project.mjml.hbs:7: </mj-section> closes <mj-column>, opened at line 2",
        ),
        (
            "partials/footer.mjml.hbs",
            "</mj-section>",
            "",
            2,
            "partials/footer.mjml.hbs:1: <mj-section> is never closed in this file",
        ),
        (
            "partials/project.mjml.hbs",
            "{{#if tagline}}",
            "{{#if tagline}}{{#if x}}",
            2,
            "partials/project.mjml.hbs:5: {{#if}} is never closed: add {{/if}}",
        ),
        (
            "partials/project.mjml.hbs",
            "font-weight=\"bold\"",
            "font-wieght=\"bold\"",
            0,
            "partials/project.mjml.hbs:4: <mj-text> has no attribute `font-wieght`, so it is ignored; did you mean `font-weight`?",
        ),
    ] {
        let out = TempDir::new().unwrap();
        let layouts = broken_layout(&out, file, from, to);
        let r = run(newsletter(&out)
            .args(["preview", "2025-07"])
            .env("NEWSLETTER_LAYOUTS", &layouts));
        assert_eq!(r.code, exit, "{to}: {}", r.stderr);
        assert!(r.stderr.contains(expected), "{to}: {}", r.stderr);
        if exit == 2 {
            assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        }
    }
}

#[test]
fn completions_load_in_their_shell_and_man_pages_render() {
    let out = TempDir::new().unwrap();
    let r = run(newsletter(&out).args(["completions", "bash"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = out.path().join("newsletter.bash");
    std::fs::write(&script, &r.stdout).unwrap();
    // bash itself checks the script and registers the completion.
    let bash = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p newsletter", script.display()))
        .output()
        .unwrap();
    assert!(bash.status.success(), "{}", String::from_utf8_lossy(&bash.stderr));
    for shell in ["zsh", "fish"] {
        let r = run(newsletter(&out).args(["completions", shell]));
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("retry-failed"), "{shell}");
    }
    let dir = out.path().join("man1");
    let r = run(newsletter(&out).arg("man").arg(&dir));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let send = std::fs::read_to_string(dir.join("newsletter-send.1")).unwrap();
    assert!(send.contains(".TH newsletter-send 1"), "{send}");
    assert!(send.contains("retry\\-failed"), "{send}");
    assert!(dir.join("newsletter.1").is_file());
    // Commands of commands have pages of their own, as git's do.
    let add = std::fs::read_to_string(dir.join("newsletter-suppress-add.1")).unwrap();
    assert!(add.contains(".TH newsletter-suppress-add 1"), "{add}");
    assert!(dir.join("newsletter-subscribers-import.1").is_file());
}

#[test]
fn one_file_in_the_project_overrides_the_built_in_footer() {
    let out = TempDir::new().unwrap();
    let layouts = out.path().join("layouts");
    // `layout export` writes the built-in layout; keep only the footer, changed.
    let r = run(newsletter(&out)
        .args(["layout", "export"])
        .env("NEWSLETTER_LAYOUTS", &layouts));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = layouts.join("inside-openinfra");
    let footer = dir.join("partials/footer.mjml.hbs");
    let text = std::fs::read_to_string(&footer).unwrap();
    for entry in [
        "email.mjml.hbs",
        "email.txt.hbs",
        "inline.css",
        "projects.yaml",
        "unsubscribe.html.hbs",
        "archive.html.hbs",
        "subscribe.html.hbs",
        "confirm.mjml.hbs",
        "confirm.txt.hbs",
    ]
    .into_iter()
    .chain(
        ["header", "lead", "project", "section", "blocks"]
            .map(|p| Box::leak(format!("partials/{p}.mjml.hbs").into_boxed_str()) as &str),
    ) {
        std::fs::remove_file(dir.join(entry)).unwrap();
    }
    std::fs::write(
        &footer,
        text.replacen("</mj-text>", "Printed on recycled electrons.</mj-text>", 1),
    )
    .unwrap();
    let r = run(newsletter(&out)
        .args(["preview", "2025-07", "-q"])
        .env("NEWSLETTER_LAYOUTS", &layouts));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = std::fs::read_to_string(out.path().join("2025-07/email.html")).unwrap();
    assert!(html.contains("Printed on recycled electrons."));
    assert!(html.contains("Kata Containers"), "the rest from the binary");
    let again = run(newsletter(&out)
        .args(["layout", "export"])
        .env("NEWSLETTER_LAYOUTS", &layouts));
    assert_eq!(again.code, 2);
    assert!(
        again
            .stderr
            .contains("footer.mjml.hbs already exists: edit it, or pass --force"),
        "{}",
        again.stderr
    );
}

/// `newsletter preview 2025-07 | head -1`: the rest of the output has no reader, and the
/// command ends quietly, without a panic.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let out = TempDir::new().unwrap();
    let err = out.path().join("stderr");
    let bin = assert_cmd::cargo::cargo_bin("newsletter");
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "'{}' preview 2025-07 2>'{}' | head -1 >/dev/null",
            bin.display(),
            err.display()
        ))
        .current_dir(support::project_copy(out.path()))
        .env("NEWSLETTER_OUT", out.path())
        .env("NEWSLETTER_UNSUBSCRIBE_SECRET", support::SECRET)
        .status()
        .unwrap();
    assert!(status.success());
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
