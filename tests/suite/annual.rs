//! The figures an annual report quotes (issue 34): twelve issues sent, clicked and moved into
//! their months of 2025 (the ledger's dates moved, as `reputation.rs` moves them), one of 2024
//! beside them; `report --year 2025` as text, JSON and CSV; and `report --html` for the year and
//! for one issue, opened in Chromium: axe-core finds nothing, light and dark screenshots kept in
//! target/report-shots for review.

use crate::a11y::{axe_source, violations};
use crate::support;
use crate::support::tools;
use support::serve::{Server, curl};
use support::webdriver::Browser;
use support::{Project, Sink, root, run, wait_until};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn issue(month: &str) -> String {
    format!(
        "---\ntitle: Inside Open Infrastructure {month}\nsubject: Inside Open Infrastructure {month}\npreheader: The month's news\n---\n\n\
         # OpenStack\n\nRead [the release notes](https://releases.openstack.org/{month}).\n\n\
         # Zuul\n\nSee [the new pipeline](https://zuul-ci.org/{month}).\n"
    )
}

/// The counted link numbered `n` of `rcpt`'s message of `issue`, pointed at `server`.
fn link(sink: &Sink, rcpt: &str, issue: &str, n: u32, server: &Server) -> String {
    let (_, raw) = sink
        .messages()
        .into_iter()
        .find(|(r, m)| r[0] == rcpt && m.contains(&format!("Message-ID: <{issue}.")))
        .unwrap();
    let html = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap()
        .body_html(0)
        .unwrap()
        .into_owned();
    let needle = format!("/newsletter/r/{issue}/{n}/");
    html.split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|u| u.contains(&needle))
        .unwrap()
        .replace("https://openinfra.dev", &server.base)
}

fn click(url: &str, client: &str) {
    let forwarded = format!("X-Forwarded-For: {client}");
    let (status, _) = curl(&["-A", FIREFOX, "-H", &forwarded, url]);
    assert!(status == 302, "{url}: {status}");
}

fn json(project: &Project, args: &[&str]) -> serde_json::Value {
    let r = run(project.command().arg("report").args(args).args(["--format", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn a_year_of_issues_adds_up_as_an_annual_report_quotes_it() {
    needs!(tools::SMTP_SINK, tools::CURL, tools::CHROMEDRIVER, tools::AXE);
    let sink = Sink::start();
    let readers = "email,first_name\nada@example.org,Ada\nbob@example.org,Bob\ncy@example.org,Cy\n";
    let mut issues: Vec<(String, String)> = (1..=12)
        .map(|m| {
            let name = format!("2025-{m:02}");
            let text = issue(&name);
            (name, text)
        })
        .collect();
    issues.push(("2024-12".into(), issue("2024-12")));
    let named: Vec<(&str, String)> = issues.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let project = Project::new(
        sink.port,
        readers,
        "throttle: { rate: off }\nserve: { trusted_proxies: [127.0.0.1] }\n",
    )
    .with_issues(&named);
    for (name, _) in &issues {
        let r = run(project.command().args(["send", name, "--yes", "-q"]));
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
    }
    let server = Server::start(&project);
    // Month m: m % 4 + 1 readers click OpenStack's link, one Zuul's; 2024-12 gets five clicks.
    let mut client = 0;
    let mut next_client = || {
        client += 1;
        format!("198.51.{}.{}", client / 200, client % 200 + 1)
    };
    let (mut openstack, mut zuul) = (0, 0);
    for (name, _) in &issues {
        let month: u32 = name[5..].parse().unwrap();
        let (os, z) = if name.starts_with("2024") {
            (5, 0)
        } else {
            (month % 4 + 1, 1)
        };
        for _ in 0..os {
            click(&link(&sink, "ada@example.org", name, 1, &server), &next_client());
        }
        for _ in 0..z {
            click(&link(&sink, "bob@example.org", name, 2, &server), &next_client());
        }
        if name.starts_with("2025") {
            openstack += os;
            zuul += z;
        }
    }
    wait_until("every click is written", || {
        json(&project, &["--since", "2000-01-01"])["clicks"] == openstack + zuul + 5
    });
    // Two readers join, in March.
    let joining = project.dir.path().join("joining.csv");
    std::fs::write(&joining, "email\ndee@example.org\neve@example.org\n").unwrap();
    let r = run(project
        .command()
        .args(["subscribers", "import"])
        .arg(&joining)
        .args(["--consent", "Signed up at the summit booth"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The clock moved: each issue went out in its own month.
    let ledger = rusqlite::Connection::open(project.dir.path().join("state/newsletter.db")).unwrap();
    ledger
        .execute(
            "UPDATE reader_events SET created_at = '2025-03-20T10:00:00.000Z' WHERE kind = 'subscribed'",
            [],
        )
        .unwrap();
    for (name, _) in &issues {
        ledger
            .execute(
                "UPDATE issues SET started_at = ?1 || '-15T09:00:00.000Z' WHERE issue = ?1",
                [name],
            )
            .unwrap();
    }
    drop(ledger);

    let year = json(&project, &["--year", "2025"]);
    assert_eq!(year["issues_sent"], 12, "{year:#}");
    assert_eq!(year["delivered"], 36);
    assert_eq!(year["clicks"], openstack + zuul);
    assert_eq!(year["subscribers_start"], 3);
    assert_eq!(year["subscribers_end"], 3);
    assert_eq!(year["new_subscribers"], 2);
    assert_eq!(
        year["issues"][2]["new_subscribers"], 2,
        "March's issue was the latest when they joined"
    );
    assert_eq!(json(&project, &["2025-03"])["new_subscribers"], 2);
    assert_eq!(year["issues"][0]["issue"], "2025-01");
    assert_eq!(year["issues"][11]["issue"], "2025-12");
    assert_eq!(
        year["clicks_by_project"],
        serde_json::json!([{ "project": "openstack", "clicks": openstack }, { "project": "zuul", "clicks": zuul }])
    );
    let csv = run(project.command().args(["report", "--year", "2025", "--format", "csv"]));
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    let rows: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(rows.len(), 1 + 12 + 1, "{}", csv.stdout);
    assert!(rows[13].starts_with("total,12 issues,"), "{}", rows[13]);
    let text = run(project.command().args(["report", "--year", "2025"]));
    assert!(
        text.stdout.contains("issues sent                 12"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("Clicks per project"), "{}", text.stdout);

    // The pages: no script, nothing fetched, nothing axe-core finds, in light and in dark.
    let shots = root().join("target/report-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let year_page = shots.join("2025.html");
    let issue_page = shots.join("2025-07.html");
    for (args, page) in [(vec!["--year", "2025"], &year_page), (vec!["2025-07"], &issue_page)] {
        let r = run(project.command().arg("report").args(&args).arg("--html").arg(page));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let html = std::fs::read_to_string(page).unwrap();
        assert!(
            !html.contains("<script") && !html.contains("src=") && !html.contains("url("),
            "self-contained"
        );
        assert!(html.contains("<svg") && html.contains("role=\"img\""), "charts");
    }
    let axe = axe_source();
    for (scheme, flags) in [("light", vec![]), ("dark", vec!["--force-dark-mode"])] {
        let browser = Browser::start_with(900, &flags);
        for page in [&year_page, &issue_page] {
            browser.open(&format!("file://{}", page.display()));
            assert_eq!(violations(&browser, &axe), Vec::new(), "{} ({scheme})", page.display());
            let name = page.file_stem().unwrap().to_string_lossy();
            browser.screenshot(&shots.join(format!("{name}-{scheme}.png")));
        }
    }
}
