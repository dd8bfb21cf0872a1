//! `newsletter serve` over HTTP, with curl as the client: one-click unsubscribe (RFC 8058)
//! from the link of a message a real SMTP server received, the page a GET shows, resubscribe,
//! hostile requests, the archive and its feed, and a send that honours unsubscribes made
//! while it runs.

use crate::support;
use crate::support::tools;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::serve::{Server, curl, link_in_message, one_click, one_click_all};
use support::{Project, Sink, csv, run, scheduled_issue};

const CONFIG: &str = "throttle: { rate: off }\n\
    unsubscribe: { url: https://openinfra.dev/newsletter/unsubscribe }\n\
    serve: { request_timeout: 2s }\n";

fn suppressed(project: &Project) -> serde_json::Value {
    let r = run(project.command().args(["suppress", "list", "--format", "json"]));
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn one_click_from_a_real_message_unsubscribes_and_a_get_changes_nothing() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(3), CONFIG);
    assert_eq!(run(project.command().args(["send", "small", "--yes"])).code, 0);
    let server = Server::start(&project);
    let url = link_in_message(&sink, "user1@example.org", &server);
    assert!(!url.contains("user1"), "the address is not in the link: {url}");

    // A scanner's GET: a page with the button, nothing recorded.
    let (code, page) = curl(&[&url]);
    assert_eq!(code, 200);
    assert!(page.contains("id=\"unsubscribe\""), "{page}");
    assert_eq!(suppressed(&project).as_array().unwrap().len(), 0);

    // The mail client's POST (RFC 8058), twice: recorded once, answered 200 without a redirect.
    for _ in 0..2 {
        let (code, page) = one_click(&url);
        assert_eq!(code, 200);
        assert!(page.contains("id=\"done\""), "{page}");
    }
    let list = suppressed(&project);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["email"], "user1@example.org");
    assert_eq!(list[0]["source"], "one-click");
    assert!(list[0]["reason"].as_str().unwrap().contains("small"), "{list}");

    // Multipart, as RFC 8058 also allows.
    let url0 = link_in_message(&sink, "user0@example.org", &server);
    let (code, _) = curl(&["-F", "List-Unsubscribe=One-Click", &url0]);
    assert_eq!(code, 200);
    assert_eq!(suppressed(&project).as_array().unwrap().len(), 2);

    // The next send skips both.
    std::fs::write(project.dir.path().join("newsletters.txt"), "").unwrap();
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count(), 3, "no one new");

    // Resubscribe lifts the reader's own unsubscribe, never an operator's.
    let resubscribe = url.replace("/unsubscribe?", "/unsubscribe/resubscribe?");
    let (code, page) = curl(&["-X", "POST", &resubscribe]);
    assert_eq!(code, 200);
    assert!(page.contains("id=\"resubscribed\""), "{page}");
    assert_eq!(suppressed(&project).as_array().unwrap().len(), 1);
    assert_eq!(
        run(project.command().args(["suppress", "add", "user2@example.org"])).code,
        0
    );
    let url2 = link_in_message(&sink, "user2@example.org", &server);
    let (code, _) = curl(&[
        "-X",
        "POST",
        &url2.replace("/unsubscribe?", "/unsubscribe/resubscribe?"),
    ]);
    assert_eq!(code, 200, "the same answer");
    let list = suppressed(&project);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|s| s["email"] == "user2@example.org" && s["source"] == "manual"),
        "{list}"
    );
}

#[test]
fn hostile_requests_get_plain_refusals_that_reveal_nothing() {
    needs!(tools::CURL);
    let project = Project::new(1, &csv(1), CONFIG);
    let server = Server::start(&project);
    let path = format!("{}/newsletter/unsubscribe", server.base);
    let good = run(project.command().args(["unsubscribe-url", "user0@example.org"]));
    let token = good.stdout.trim().split("token=").nth(1).unwrap().to_owned();
    let foreign = newsletter::unsubscribe::Secret::new("another site").token("user0@example.org", "x");
    let unknown = newsletter::unsubscribe::Secret::new(support::SECRET).token("nobody@example.org", "x");
    let mut bodies = Vec::new();
    for bad in [
        &token[..token.len() - 5],
        foreign.as_str(),
        "garbage",
        &"A".repeat(3000),
    ] {
        let (code, body) = one_click(&format!("{path}?token={bad}"));
        assert_eq!(code, 400, "{bad}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the same answer for every bad token"
    );
    // A valid token for an address never on the list is answered like any other.
    let (code, _) = one_click(&format!("{path}?token={unknown}"));
    assert_eq!(code, 200);
    // A POST without the one-click body does nothing.
    let (code, _) = curl(&["-X", "POST", &format!("{path}?token={token}")]);
    assert_eq!(code, 400);

    let (code, _) = curl(&["-X", "PUT", "--data", "x", &format!("{path}?token={token}")]);
    assert_eq!(code, 405);
    let (code, _) = curl(&["-X", "DELETE", &format!("{path}?token={token}")]);
    assert_eq!(code, 405);
    let (code, _) = curl(&["--path-as-is", &format!("{}/archive/../../etc/passwd", server.base)]);
    assert_eq!(code, 404);
    let (code, _) = curl(&[&format!("{}/archive/..%2F..%2Fetc%2Fpasswd/", server.base)]);
    assert_eq!(code, 404);
    let big = "List-Unsubscribe=One-Click&".to_owned() + &"x".repeat(1 << 20);
    let body_file = project.dir.path().join("big.txt");
    std::fs::write(&body_file, big).unwrap();
    let (code, _) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", body_file.display()),
        &format!("{path}?token={token}"),
    ]);
    assert_eq!(code, 413);
    let (code, _) = curl(&[
        "-H",
        &format!("X-Big: {}", "y".repeat(40_000)),
        &format!("{}/healthz", server.base),
    ]);
    assert_eq!(code, 431);
    let (code, body) = curl(&[&format!("{}/healthz", server.base)]);
    assert_eq!((code, body.trim()), (200, "ok"));

    // A slow client: half a request line, then silence; cut off after the request timeout.
    let mut slow = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "closed after the 2 s limit: {:?}",
        started.elapsed()
    );
    let list = suppressed(&project);
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "only the valid token's address: {list}"
    );
    assert_eq!(list[0]["email"], "nobody@example.org");
}

#[test]
fn the_archive_lists_sent_issues_only_with_neutral_fields_and_no_unsubscribe_link() {
    needs!(tools::SMTP_SINK, tools::CURL, tools::PYTHON3);
    let sink = Sink::start();
    let config = format!("{CONFIG}archive: {{ url: https://openinfra.dev/newsletter/archive }}\n");
    let project = Project::new(sink.port, &csv(1), &config).with_issues(&[
        ("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z"))),
        ("draft", scheduled_issue(None)),
    ]);
    assert_eq!(run(project.command().arg("send")).code, 0);
    // The message's "View in browser" points to its archive page.
    let (_, text) = &sink.messages()[0];
    assert!(
        text.contains("https://openinfra.dev/newsletter/archive/2025-06/"),
        "web_url"
    );

    let server = Server::start(&project);
    let archive = format!("{}/newsletter/archive", server.base);
    let (code, index) = curl(&[&format!("{archive}/")]);
    assert_eq!(code, 200);
    assert!(
        index.contains("href=\"2025-06/\"") && index.contains("Small issue for reader"),
        "{index}"
    );
    assert!(!index.contains("draft"), "drafts never appear: {index}");
    let (code, page) = curl(&[&format!("{archive}/2025-06/")]);
    assert_eq!(code, 200);
    assert!(page.contains("Hello reader"), "neutral fields");
    assert!(
        !page.contains(">Unsubscribe<") && !page.contains("token="),
        "no unsubscribe link"
    );
    // A web page, not the email: no "View in browser", no dead per-reader link, a footer that
    // says how to subscribe and where the feed is.
    assert!(
        !page.contains("View in browser") && !page.contains("href=\"\""),
        "{page}"
    );
    assert!(!page.contains("You are receiving this email"));
    assert!(
        page.contains("href=\"https://openinfra.dev/newsletter/subscribe\"")
            && page.contains("href=\"https://openinfra.dev/newsletter/archive/feed.xml\""),
        "{page}"
    );
    assert!(page.contains("<h1 ") && page.matches("<h2 ").count() >= 1, "headings");
    // The email keeps its own footer.
    assert!(text.contains("You are receiving this email"));
    let (code, _) = curl(&[&format!("{archive}/draft/")]);
    assert_eq!(code, 404);
    let (code, feed) = curl(&[&format!("{archive}/feed.xml")]);
    assert_eq!(code, 200);
    // Python's XML parser reads it as an Atom feed with one entry.
    let out = Command::new(tools::program(&tools::PYTHON3))
        .args(["-c", "import sys, xml.etree.ElementTree as E; f = E.fromstring(sys.stdin.read()); a = '{http://www.w3.org/2005/Atom}'; print(len(f.findall(a + 'entry')), f.find(a + 'entry/' + a + 'link').get('href'))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(feed.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 https://openinfra.dev/newsletter/archive/2025-06/"
    );

    // The same pages as static files.
    let out_dir = project.dir.path().join("public");
    let r = run(project.command().args(["archive", "--out"]).arg(&out_dir));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for file in ["index.html", "feed.xml", "2025-06/index.html"] {
        assert!(out_dir.join(file).is_file(), "{file}");
    }
    assert_eq!(
        std::fs::read_to_string(out_dir.join("2025-06/index.html")).unwrap(),
        page
    );
}

#[test]
fn a_running_send_honours_unsubscribes_made_while_it_runs() {
    needs!(tools::SMTP_SINK, tools::CURL);
    // 2,000 readers at 400 a second; the last 300 unsubscribe while the first are sent.
    let sink = Sink::start();
    let project = Project::new(
        sink.port,
        &csv(2000),
        "throttle: { rate: 400/s }\nunsubscribe: { url: https://openinfra.dev/newsletter/unsubscribe }\n",
    );
    let server = Server::start(&project);
    let secret = newsletter::unsubscribe::Secret::new(support::SECRET);
    let urls: Vec<String> = (1700..2000)
        .map(|i| {
            let token = secret.token(&format!("user{i}@example.org"), "small");
            format!("{}/newsletter/unsubscribe?token={token}", server.base)
        })
        .collect();
    let send = project
        .std_command()
        .args(["send", "small", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.count() < 5 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let acked = one_click_all(&urls);
    assert_eq!(
        acked, 300,
        "every unsubscribe answered while the send writes the same ledger"
    );
    let result = send.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(!stderr.contains("locked"), "{stderr}");
    let received = sink.received();
    for i in 1700..2000 {
        assert!(
            !received.contains_key(&format!("user{i}@example.org")),
            "user{i} unsubscribed before their turn"
        );
    }
    assert_eq!(
        sink.count(),
        1700,
        "the 300 who unsubscribed during the run were not sent it"
    );
}

/// A real browser at phone width (chromedriver, headless Chromium): the unsubscribe page, its
/// button, the confirmation, the ledger; and the July issue's archive page with no sideways
/// scrolling.
#[test]
fn a_browser_at_375_px_unsubscribes_and_reads_the_archive() {
    needs!(tools::SMTP_SINK, tools::CHROMEDRIVER);
    let sink = Sink::start();
    let july = std::fs::read_to_string(support::root().join("newsletters/2025-07.md")).unwrap();
    let config = format!("{CONFIG}archive: {{ url: https://openinfra.dev/newsletter/archive }}\n");
    let project = Project::new(sink.port, &csv(2), &config).with_issues(&[("2025-07", july)]);
    assert_eq!(
        run(project.command().args(["send", "2025-07", "--yes", "--force"])).code,
        0
    );
    let server = Server::start(&project);
    let url = link_in_message(&sink, "user1@example.org", &server);

    let browser = support::webdriver::Browser::start(375);
    browser.open(&url);
    assert!(browser.has("#unsubscribe"));
    assert_eq!(browser.script("return window.innerWidth"), 375);
    assert!(
        browser
            .script("return document.documentElement.scrollWidth")
            .as_u64()
            .unwrap()
            <= 375
    );
    assert_eq!(
        suppressed(&project).as_array().unwrap().len(),
        0,
        "opening the page changes nothing"
    );
    browser.click("#unsubscribe");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.has("#done") {
        assert!(Instant::now() < deadline, "no confirmation");
        std::thread::sleep(Duration::from_millis(50));
    }
    let list = suppressed(&project);
    assert_eq!(list[0]["email"], "user1@example.org", "{list}");

    browser.open(&format!("{}/newsletter/archive/2025-07/", server.base));
    let width = browser
        .script("return document.documentElement.scrollWidth")
        .as_u64()
        .unwrap();
    assert!(width <= 375, "the archive page scrolls sideways: {width} px");
    assert!(
        browser
            .script("return document.body.innerText")
            .as_str()
            .unwrap()
            .contains("Kata Containers")
    );
}

#[test]
fn every_acknowledged_unsubscribe_survives_sigkill() {
    needs!(tools::CURL);
    let project = Project::new(1, &csv(1), CONFIG);
    let mut server = Server::start(&project);
    let secret = newsletter::unsubscribe::Secret::new(support::SECRET);
    let urls: Vec<String> = (0..300)
        .map(|i| {
            let token = secret.token(&format!("reader{i}@example.org"), "2025-07");
            format!("{}/newsletter/unsubscribe?token={token}", server.base)
        })
        .collect();
    // One curl over one connection, 300 POSTs; its codes are the acknowledgements.
    let acked = one_click_all(&urls);
    assert_eq!(acked, 300);
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    assert_eq!(suppressed(&project).as_array().unwrap().len(), acked);
}

/// curl's answer head: status line and headers, lower case.
fn head(args: &[&str]) -> String {
    let out = Command::new(tools::program(&tools::CURL))
        .args(["-s", "-o", "/dev/null", "-D", "-"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

#[test]
fn every_answer_carries_the_security_headers_and_slashless_paths_redirect() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(1), CONFIG)
        .with_issues(&[("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z")))]);
    assert_eq!(run(project.command().arg("send")).code, 0);
    let server = Server::start(&project);
    let base = &server.base;
    let token = project.unsubscribe_token("user0@example.org", "2025-06");
    let routes = [
        format!("{base}/newsletter/unsubscribe?token={token}"),
        format!("{base}/newsletter/subscribe"),
        format!("{base}/newsletter/preferences?token={token}"),
        format!("{base}/archive/"),
        format!("{base}/archive/2025-06/"),
        format!("{base}/archive/feed.xml"),
        format!("{base}/healthz"),
        format!("{base}/no/such/page"),
    ];
    for url in &routes {
        let h = head(&[url]);
        for needed in [
            "content-security-policy: default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            "x-content-type-options: nosniff",
            "x-frame-options: deny",
            // The sign-up form's page sends our origin with its post, and no more.
            if url.ends_with("/subscribe") {
                "referrer-policy: same-origin"
            } else {
                "referrer-policy: no-referrer"
            },
        ] {
            assert!(h.contains(needed), "{url}: {needed} missing in\n{h}");
        }
    }
    // Without archive.url the feed cannot have absolute ids: refused, saying why.
    let (code, body) = curl(&[&format!("{base}/archive/feed.xml")]);
    assert_eq!(code, 404);
    assert!(body.contains("the Atom feed needs archive.url"), "{body}");
    // The paths people type without the final slash.
    for (from, to) in [("/archive", "/archive/"), ("/archive/2025-06", "/archive/2025-06/")] {
        let h = head(&[&format!("{base}{from}")]);
        assert!(h.starts_with("http/1.1 308"), "{from}: {h}");
        assert!(h.contains(&format!("location: {to}\r\n")), "{from}: {h}");
    }
    // A body declared larger than allowed is refused at once, before it is sent.
    let h = head(&[
        "-X",
        "POST",
        "-H",
        "Content-Length: 10000000",
        "-H",
        "Expect: 100-continue",
        "--max-time",
        "5",
        &format!("{base}/newsletter/unsubscribe?token={token}"),
    ]);
    assert!(h.starts_with("http/1.1 413"), "{h}");
}

#[test]
fn the_archive_shows_what_was_sent_until_it_is_published_again() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let config = format!("{CONFIG}archive: {{ url: https://openinfra.dev/newsletter/archive }}\n");
    let project = Project::new(sink.port, &csv(3), &config).with_issues(&[
        ("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z"))),
        ("2030-01", scheduled_issue(Some("2030-01-01T09:00:00Z"))),
    ]);
    assert_eq!(run(project.command().args(["send", "2025-06", "--yes"])).code, 0);
    // A part of an issue due in 2030, sent early by hand: still not public.
    assert_eq!(
        run(project
            .command()
            .args(["send", "2030-01", "--yes", "--now", "--limit", "1"]))
        .code,
        0
    );
    // The file is edited after the send.
    let file = project.dir.path().join("newsletters/2025-06.md");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("this is the lead", "this is the lead, EDITED LATER"),
    )
    .unwrap();

    let server = Server::start(&project);
    let archive = format!("{}/newsletter/archive", server.base);
    let (code, page) = curl(&[&format!("{archive}/2025-06/")]);
    assert_eq!(code, 200);
    assert!(
        page.contains("this is the lead") && !page.contains("EDITED LATER"),
        "as sent"
    );
    let (_, index) = curl(&[&format!("{archive}/")]);
    assert!(index.contains("2025-06/") && !index.contains("2030-01"), "{index}");
    let (_, feed) = curl(&[&format!("{archive}/feed.xml")]);
    assert!(feed.contains("/2025-06/") && !feed.contains("2030-01"), "{feed}");
    let (code, _) = curl(&[&format!("{archive}/2030-01/")]);
    assert_eq!(code, 404, "not public before its send_at");

    // Published again on purpose: the edit shows.
    let r = run(project.command().args(["archive", "publish", "2025-06"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, page) = curl(&[&format!("{archive}/2025-06/")]);
    assert!(page.contains("EDITED LATER"), "published again");
    // An issue never sent cannot be published.
    let r = run(project.command().args(["archive", "publish", "small"]));
    assert_ne!(r.code, 0);
}
