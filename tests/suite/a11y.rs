//! Accessibility checked by axe-core (npm, installed by scripts/test into target/axe), run in
//! headless Chromium over the pages `serve` answers and the email's HTML: the web pages have
//! no violation at all; the email only landmark rules (an email is not a web page).

use crate::support;
use crate::support::tools;

use serde_json::Value;
use support::serve::Server;
use support::webdriver::Browser;
use support::{Project, Sink, csv, root, run, scheduled_issue};

pub(crate) fn axe_source() -> String {
    std::fs::read_to_string(tools::program(&tools::AXE)).unwrap()
}

/// axe's violations on the page the browser shows: (rule, impact, a target).
pub(crate) fn violations(browser: &Browser, axe: &str) -> Vec<(String, String, String)> {
    browser.script(&format!("{axe}\n;return true;"));
    let result: Value = browser.script_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document).then(r => done(r.violations.map(v => [v.id, v.impact || '', JSON.stringify(v.nodes[0] && v.nodes[0].target)])));",
    );
    result
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v[0].as_str().unwrap().to_owned(),
                v[1].as_str().unwrap().to_owned(),
                v[2].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn axe_finds_nothing_on_the_web_pages_and_only_landmarks_in_the_email() {
    needs!(tools::AXE, tools::SMTP_SINK, tools::CHROMEDRIVER);
    let axe = axe_source();
    let sink = Sink::start();
    let config = "throttle: { rate: off }\nunsubscribe: { url: https://openinfra.dev/newsletter/unsubscribe }\narchive: { url: https://openinfra.dev/newsletter/archive }\n";
    let july = std::fs::read_to_string(root().join("newsletters/2025-07.md")).unwrap();
    let project = Project::new(sink.port, &csv(1), config).with_issues(&[
        ("2025-07", july),
        ("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z"))),
    ]);
    assert_eq!(
        run(project.command().args(["send", "2025-07", "--yes", "--force"])).code,
        0
    );
    let r = run(project.command().args(["preview", "2025-07", "--quiet"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let token = project.unsubscribe_token("user0@example.org", "2025-07");
    let server = Server::start(&project);
    let base = format!("{}/newsletter", server.base);
    let browser = Browser::start(1024);
    let mut found = Vec::new();
    for (name, url) in [
        ("archive index", format!("{base}/archive/")),
        ("archive page", format!("{base}/archive/2025-07/")),
        ("unsubscribe page", format!("{base}/unsubscribe?token={token}")),
        ("sign-up page", format!("{base}/subscribe")),
    ] {
        browser.open(&url);
        for v in violations(&browser, &axe) {
            found.push(format!("{name}: {v:?}"));
        }
    }
    // After the button: the page that offers to subscribe again.
    browser.open(&format!("{base}/unsubscribe?token={token}"));
    browser.click("form button");
    for v in violations(&browser, &axe) {
        found.push(format!("resubscribe page: {v:?}"));
    }
    assert!(found.is_empty(), "violations:\n{}", found.join("\n"));

    // The email as a mail client shows it: landmark rules only.
    let email = project.dir.path().join("out/2025-07/email.html");
    browser.open(&format!("file://{}", email.display()));
    let landmarks = ["region", "landmark-one-main", "landmark-complementary-is-top-level"];
    let others: Vec<_> = violations(&browser, &axe)
        .into_iter()
        .filter(|(rule, _, _)| !landmarks.contains(&rule.as_str()))
        .collect();
    assert!(others.is_empty(), "email: {others:?}");
}
