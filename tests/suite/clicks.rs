//! Clicks counted per link without knowing who (issue 34): the HTML part's links point at
//! `serve`, which redirects to the link as sent and counts a browser's GET once; HEAD, a
//! library's agent, a click too soon after the message was made and one client fetching every
//! link are taken out, each under its reason; a made-up or altered link is a 404 without a
//! Location; a test send's links work and are never counted; and nothing of a reader or a
//! request (address, token, IP, agent) is in the ledger or the log.

use crate::support;
use crate::support::tools;
use mail_parser::MessageParser;
use support::http::HttpServer;
use support::serve::{Server, curl};
use support::webdriver::Browser;
use support::{Project, Sink, run, wait_until};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// Readers behind a proxy we trust, so that each curl can be another client.
const CONFIG: &str = "throttle: { rate: off }\nserve: { trusted_proxies: [127.0.0.1] }\n";

const READERS: &str = "email,first_name\nada@example.org,Ada\nbob@example.org,Bob\n";

/// An issue whose sections link to `site` (a local page) and elsewhere.
fn issue(site: &HttpServer) -> String {
    format!(
        "---\ntitle: Clicks\nsubject: Clicks\npreheader: Links to follow\n---\n\n# OpenStack\n\n\
         Read [the release notes]({ok}) and [the summit]({moved}).\n\n\
         # Zuul\n\n[Zuul's page]({missing}), [two]({error}), [three]({slow}), [four]({busy}).\n\n\
         Write to [us](mailto:community@openinfra.dev).\n",
        ok = site.url("/ok"),
        moved = site.url("/moved"),
        missing = site.url("/missing"),
        error = site.url("/error"),
        slow = site.url("/slow"),
        busy = site.url("/busy"),
    )
}

/// The HTML and text parts of the message `rcpt` received.
fn parts(sink: &Sink, rcpt: &str) -> (String, String) {
    let (_, raw) = sink.messages().into_iter().find(|(r, _)| r[0] == rcpt).unwrap();
    let message = MessageParser::default().parse(raw.as_bytes()).unwrap();
    (
        message.body_html(0).unwrap().into_owned(),
        message.body_text(0).unwrap().into_owned(),
    )
}

/// The counted links of an HTML part, in order, pointed at `server`.
fn counted_links(html: &str, server: &Server) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|u| u.contains("/newsletter/r/"))
        .map(|u| u.replace("https://openinfra.dev", &server.base))
        .collect()
}

/// The counted link numbered `n` (the issue's links are numbered in order: /ok is 1).
fn numbered(links: &[String], issue: &str, n: u32) -> String {
    links
        .iter()
        .find(|l| l.contains(&format!("/r/{issue}/{n}/")))
        .unwrap_or_else(|| panic!("no link {n} in {links:?}"))
        .clone()
}

/// `report ISSUE --format json`.
fn report(project: &Project, issue: &str) -> serde_json::Value {
    let r = run(project.command().args(["report", issue, "--format", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// curl's status and Location for `url`, as `client` (behind the trusted proxy).
fn fetch(extra: &[&str], client: &str, url: &str) -> (u16, Option<String>) {
    let forwarded = format!("X-Forwarded-For: {client}");
    let mut args = vec!["-D", "-", "-o", "/dev/null", "-H", &forwarded];
    args.extend(extra);
    args.push(url);
    let (_, head) = curl(&args);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .map(|l| l[9..].trim().to_owned());
    (status, location)
}

#[test]
fn a_browser_click_counts_once_and_machines_are_taken_out_by_reason() {
    needs!(tools::SMTP_SINK, tools::CURL, tools::SQLITE3);
    let site = HttpServer::start();
    let sink = Sink::start();
    let project = Project::new(sink.port, READERS, CONFIG).with_issues(&[
        ("2025-07", issue(&site)),
        ("2025-08", issue(&site).replace("Clicks", "Soon")),
    ]);
    // Made on the project's pinned date, long ago: no click is too soon for it.
    let r = run(project.command().args(["send", "2025-07", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = project.dir.path().join("serve.log");
    let server = Server::start_logging(
        &project,
        &[("NEWSLETTER_LOG", "info".to_owned())],
        std::fs::File::create(&log).unwrap(),
    );

    let (html, text) = parts(&sink, "ada@example.org");
    let links = counted_links(&html, &server);
    assert!(links.len() >= 6, "the issue's six links, and the layout's: {html}");
    let (first, second) = (numbered(&links, "2025-07", 1), numbered(&links, "2025-07", 2));
    assert!(!html.contains(&site.url("/ok")), "the HTML's link points at serve");
    assert!(
        text.contains(&site.url("/ok")),
        "the text part keeps the original: {text}"
    );
    assert!(html.contains("mailto:community@openinfra.dev"), "mailto: is left alone");
    let (bob_html, _) = parts(&sink, "bob@example.org");
    assert_eq!(
        counted_links(&bob_html, &server),
        links,
        "every reader has the same links"
    );
    for link in &links {
        assert!(!link.contains("ada") && !link.contains("token"), "{link}");
    }

    // Ada's export, but its time and the deliveries of the issue sent meanwhile.
    let export = || {
        let r = run(project.command().args(["subscribers", "export", "ada@example.org"]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["exported_at"] = serde_json::Value::Null;
        v["deliveries"]
            .as_array_mut()
            .unwrap()
            .retain(|d| d["issue"] == "2025-07");
        v
    };
    let before = export();
    // A person: redirected to the link as sent, counted once.
    assert_eq!(
        fetch(&["-A", FIREFOX], "198.51.100.7", &first),
        (302, Some(site.url("/ok")))
    );
    // Machines, each under its reason; all still redirected.
    assert_eq!(
        fetch(&["-I", "-A", FIREFOX], "198.51.100.8", &second),
        (302, Some(site.url("/moved")))
    );
    assert_eq!(fetch(&[], "198.51.100.9", &second).0, 302);
    for link in &links {
        assert_eq!(fetch(&["-A", FIREFOX], "203.0.113.5", link).0, 302);
    }
    // Made up or altered: nothing, not even a Location.
    let altered = first.replace("/2025-07/1/", "/2025-07/2/");
    let forged = format!("{}/newsletter/r/2025-07/1/29000000/AAAAAAAAAAAAAAAA", server.base);
    for url in [altered, forged] {
        assert_eq!(fetch(&["-A", FIREFOX], "198.51.100.7", &url), (404, None), "{url}");
    }

    // Too soon: an issue made now, clicked at once.
    let now = chrono::Utc::now().timestamp().to_string();
    let r = run(project
        .command()
        .env("SOURCE_DATE_EPOCH", &now)
        .args(["send", "2025-08", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let soon = sink
        .messages()
        .into_iter()
        .find(|(r, m)| r[0] == "ada@example.org" && m.contains("Subject: Soon"))
        .map(|(_, raw)| {
            MessageParser::default()
                .parse(raw.as_bytes())
                .unwrap()
                .body_html(0)
                .unwrap()
                .into_owned()
        })
        .unwrap();
    assert_eq!(
        fetch(&["-A", FIREFOX], "198.51.100.10", &counted_links(&soon, &server)[0]).0,
        302
    );

    // A test send's links work and count nothing.
    let r = run(project
        .command()
        .args(["send", "2025-07", "--test", "--to", "staff@openinfra.dev"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (test_html, _) = parts(&sink, "staff@openinfra.dev");
    let test_link = numbered(&counted_links(&test_html, &server), "2025-07", 1);
    assert_ne!(test_link, first);
    assert_eq!(
        fetch(&["-A", FIREFOX], "198.51.100.11", &test_link),
        (302, Some(site.url("/ok")))
    );

    // The counts, within a flush.
    wait_until("the counts are written", || {
        let r = report(&project, "2025-07");
        r["clicks"]["counted"] == 1 && r["clicks"]["machine"]["burst"] == links.len()
    });
    let july = report(&project, "2025-07");
    assert_eq!(
        july["clicks"]["machine"],
        serde_json::json!({ "method": 1, "agent": 1, "burst": links.len() }),
        "{july:#}"
    );
    assert_eq!(july["clicks"]["by_link"][0]["url"], site.url("/ok"));
    assert_eq!(july["clicks"]["by_link"][0]["clicks"], 1);
    assert_eq!(july["clicks"]["by_section"][0]["section"], "OpenStack");
    assert_eq!(july["clicks"]["by_section"][0]["project"], "openstack");
    assert_eq!(july["delivered"], 2);
    assert!(july["reads"]["opens"].is_null(), "opens are off");
    let shown = run(project.command().args(["report", "2025-07"]));
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    for line in [
        "Clicks by section",
        "OpenStack",
        "█",
        &site.url("/ok"),
        "1 method",
        "1 agent",
    ] {
        assert!(shown.stdout.contains(line), "{line} in {}", shown.stdout);
    }
    let status = run(project.command().args(["status", "2025-07"]));
    assert!(status.stdout.contains("clicks               1 ("), "{}", status.stdout);
    wait_until("the early click is written", || {
        report(&project, "2025-08")["clicks"]["machine"]["too_soon"] == 1
    });
    assert_eq!(report(&project, "2025-08")["clicks"]["counted"], 0);

    assert_eq!(export(), before, "a reader's export is unchanged by any click");
    // Nothing of a reader or a request is kept for it: not in the ledger, not in the log.
    let dump = std::process::Command::new(tools::program(&tools::SQLITE3))
        .arg(project.dir.path().join("state/newsletter.db"))
        .args([".dump issue_links", ".dump reading_counts"])
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    let logged = std::fs::read_to_string(&log).unwrap();
    for kept in [dump.as_ref(), logged.as_str()] {
        for secret in ["198.51.100", "203.0.113", "Firefox", "curl/", "ada@", "bob@", "token="] {
            assert!(!kept.contains(secret), "{secret} in {kept}");
        }
    }
    assert!(dump.contains("reading_counts"), "{dump}");
}

#[test]
fn chromium_follows_a_link_from_a_received_message_to_the_page_counted_once() {
    needs!(tools::SMTP_SINK, tools::CHROMEDRIVER, tools::CHROMIUM);
    let site = HttpServer::start();
    let sink = Sink::start();
    let project = Project::new(sink.port, READERS, CONFIG).with_issues(&[("2025-07", issue(&site))]);
    let r = run(project.command().args(["send", "2025-07", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let server = Server::start(&project);
    let (html, _) = parts(&sink, "bob@example.org");
    let link = numbered(&counted_links(&html, &server), "2025-07", 1);
    let browser = Browser::start_with(500, &[&format!("--user-agent={FIREFOX}")]);
    browser.open(&link);
    wait_until("the browser is on the page", || {
        browser.script("return location.href").as_str() == Some(site.url("/ok").as_str())
    });
    wait_until("the click is written", || {
        report(&project, "2025-07")["clicks"]["counted"] == 1
    });
    assert_eq!(site.hits("/ok"), 1, "the page was fetched once, by the browser");
}

#[test]
fn opens_and_archive_views_are_reads_and_a_killed_serve_loses_at_most_one_flush() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let site = HttpServer::start();
    let sink = Sink::start();
    let config =
        format!("{CONFIG}analytics: {{ opens: true }}\narchive: {{ url: https://openinfra.dev/newsletter/archive }}\n");
    let project = Project::new(sink.port, READERS, &config).with_issues(&[("2025-07", issue(&site))]);
    let r = run(project.command().args(["send", "2025-07", "--yes", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut server = Server::start(&project);
    let (html, _) = parts(&sink, "ada@example.org");
    let image = html
        .split("<img src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|src| src.contains("/newsletter/r/2025-07/0/"))
        .unwrap_or_else(|| panic!("no image: {html}"))
        .replace("https://openinfra.dev", &server.base);
    let fetched = std::process::Command::new(tools::program(&tools::CURL))
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{content_type} %{size_download}",
            "-A",
            FIREFOX,
        ])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&fetched.stdout),
        "200 image/gif 43",
        "a 1x1 GIF"
    );
    let page = format!("{}/newsletter/archive/2025-07/", server.base);
    assert_eq!(fetch(&["-A", FIREFOX], "198.51.100.20", &page).0, 200);
    assert_eq!(fetch(&["-A", "Googlebot/2.1"], "198.51.100.21", &page).0, 200);

    // Ten people click; once written, a kill -9 loses nothing of them.
    let link = numbered(&counted_links(&html, &server), "2025-07", 1);
    for i in 0..10 {
        assert_eq!(fetch(&["-A", FIREFOX], &format!("198.51.100.{}", 30 + i), &link).0, 302);
    }
    wait_until("the clicks are written", || {
        report(&project, "2025-07")["clicks"]["counted"] == 10
    });
    // Three more, and serve killed at once: at most those, gathered since the last write, are lost.
    for i in 0..3 {
        assert_eq!(fetch(&["-A", FIREFOX], &format!("198.51.100.{}", 50 + i), &link).0, 302);
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let after = report(&project, "2025-07");
    let counted = after["clicks"]["counted"].as_u64().unwrap();
    assert!((10..=13).contains(&counted), "{after:#}");
    assert_eq!(after["reads"]["opens"], 1, "{after:#}");
    assert_eq!(after["reads"]["archive_views"], 1, "{after:#}");
    assert_eq!(after["reads"]["total"], 2);
    assert_eq!(after["reads"]["sources"], serde_json::json!(["archive_views", "opens"]));
    assert_eq!(after["clicks"]["machine"]["agent"], 1, "the crawler's view");
}

#[test]
fn a_preview_s_links_are_marked_lead_where_they_should_and_count_nothing() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let site = HttpServer::start();
    let sink = Sink::start();
    let project = Project::new(sink.port, READERS, CONFIG).with_issues(&[("2025-09", issue(&site))]);
    let r = run(project.command().args(["preview", "2025-09", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = std::fs::read_to_string(project.dir.path().join("out/2025-09/email.html")).unwrap();
    let server = Server::start(&project);
    let link = numbered(&counted_links(&html, &server), "2025-09", 1);
    let stamp = link.split('/').nth(7).unwrap();
    assert!(stamp.ends_with('t'), "a preview's link is marked: {link}");
    assert_eq!(
        fetch(&["-A", FIREFOX], "198.51.100.60", &link),
        (302, Some(site.url("/ok"))),
        "the issue is not sent, and its link still leads to the page"
    );
    // SIGTERM: serve writes what it counted before it ends.
    let mut server = server;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(server.child.wait().unwrap().success());
    let ledger = rusqlite::Connection::open(project.dir.path().join("state/newsletter.db")).unwrap();
    let counted: i64 = ledger
        .query_row("SELECT count(*) FROM reading_counts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(counted, 0, "nothing counted");
}
