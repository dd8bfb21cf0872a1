//! `newsletter check` against a real HTTP server on loopback, and the offline checks that
//! gate `send`.

use crate::support;
use crate::support::tools;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::http::HttpServer;
use support::{Project, Sink, csv, run};

/// Short limits so the slow and busy cases take a second, not a minute.
const CHECK: &str = "check: { timeout: 1s, retries: 2, max_retry_after: 5s, per_host: 2 }\n";

fn issue_linking(server: &HttpServer) -> String {
    let u = |p: &str| server.url(p);
    format!(
        "---\ntitle: Links for {{{{first_name}}}}\npreheader: Every kind of link.\n---\n\
         Lead with an ![image]({img}).\n\n\
         # OpenStack: Clouds\n\n\
         * [fine]({ok}) and [moved]({moved})\n\
         * [gone]({missing}) and [failing]({error})\n\n\
         # Events\n\n\
         * [head refused]({nohead}) and [slow]({slow})\n\
         * [busy]({busy}), the [fine one again]({ok})\n\
         * ![not an image]({page}) ![big]({big})\n",
        img = u("/image.png"),
        ok = u("/ok"),
        moved = u("/moved"),
        missing = u("/missing"),
        error = u("/error"),
        nohead = u("/no-head"),
        slow = u("/slow"),
        busy = u("/busy"),
        page = u("/page.png"),
        big = u("/big.png"),
    )
}

fn check_json(project: &Project, extra: &[&str]) -> (i32, Value, String) {
    let r = run(project
        .command()
        .args(["check", "links", "--format", "json"])
        .args(extra));
    let json = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    (r.code, json, r.stderr)
}

/// url path -> (verdict, status, detail, cached, final_url)
fn results(json: &Value) -> std::collections::HashMap<String, Value> {
    json["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let url = l["url"].as_str().unwrap();
            let path = url[url.find("/127.0.0.1:").map(|i| i + 1).unwrap()..]
                .split_once('/')
                .map(|(_, p)| format!("/{p}"))
                .unwrap();
            (path, l.clone())
        })
        .collect()
}

#[test]
fn each_kind_of_link_gets_its_verdict() {
    let server = HttpServer::start();
    let project = Project::new(1, &csv(1), CHECK).with_issues(&[("links", issue_linking(&server))]);
    let started = Instant::now();
    let (code, json, stderr) = check_json(&project, &[]);
    assert_eq!(code, 1, "broken links exit 1: {stderr}");
    let r = results(&json);
    let is = |path: &str, verdict: &str, status: Option<u64>, detail: &str| {
        let l = &r[path];
        assert_eq!(l["verdict"], verdict, "{path}: {l}");
        assert_eq!(l["status"].as_u64(), status, "{path}: {l}");
        assert!(l["detail"].as_str().unwrap().contains(detail), "{path}: {l}");
    };
    is("/ok", "ok", Some(200), "200 OK");
    is("/moved", "ok", Some(200), "200 OK");
    assert_eq!(r["/moved"]["final_url"], server.url("/ok"));
    is("/missing", "broken", Some(404), "404 Not Found");
    is("/error", "broken", Some(500), "500 Internal Server Error");
    is("/no-head", "ok", Some(200), "HEAD refused, GET used");
    is("/slow", "broken", None, "timed out after 1s");
    is("/busy", "ok", Some(200), "200 OK");
    is("/image.png", "ok", Some(200), "200 OK");
    is("/page.png", "broken", Some(200), "not an image: text/html");
    is("/big.png", "warning", Some(200), "image of 1.9 MB");

    // Every use of a URL is listed with its section, text and line; the URL is asked once.
    let ok_uses = r["/ok"]["uses"].as_array().unwrap();
    let places: Vec<(&str, &str)> = ok_uses
        .iter()
        .map(|u| (u["section"].as_str().unwrap(), u["text"].as_str().unwrap()))
        .collect();
    assert_eq!(places, [("OpenStack", "fine"), ("Events", "fine one again")]);
    assert_eq!(r["/image.png"]["uses"][0]["section"], "Introduction");
    assert_eq!(server.hits("/ok"), 2, "HEAD /ok, and HEAD /ok after the redirect");

    // HEAD first; GET only where HEAD was refused.
    let methods = |path: &str| -> Vec<String> {
        server
            .requests()
            .into_iter()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m)
            .collect()
    };
    assert_eq!(methods("/no-head"), ["HEAD", "GET"]);
    assert_eq!(methods("/missing"), ["HEAD", "GET"]);
    assert_eq!(methods("/image.png"), ["HEAD"]);
    // 429 with Retry-After: 1 was waited for, then asked again.
    assert_eq!(methods("/busy"), ["HEAD", "HEAD"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        server.max_in_flight() <= 2,
        "per-host limit: {}",
        server.max_in_flight()
    );

    let s = &json["summary"];
    assert_eq!(
        (s["ok"].as_u64(), s["warning"].as_u64(), s["broken"].as_u64()),
        (Some(5), Some(1), Some(4))
    );
    assert_eq!(s["urls"], 10);
}

#[test]
fn the_text_report_groups_links_by_section() {
    let server = HttpServer::start();
    let project = Project::new(1, &csv(1), CHECK).with_issues(&[("links", issue_linking(&server))]);
    let r = run(project.command().args(["check", "links"]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let openstack = r.stdout.find("\nOpenStack\n").expect(&r.stdout);
    let events = r.stdout.find("\nEvents\n").expect(&r.stdout);
    assert!(openstack < events);
    let gone = r
        .stdout
        .lines()
        .find(|l| l.starts_with("  ") && l.contains("/missing"))
        .unwrap();
    assert!(
        gone.contains("gone") && gone.contains("BROKEN: 404 Not Found"),
        "{gone}"
    );
    let moved = r
        .stdout
        .lines()
        .find(|l| l.starts_with("  ") && l.contains("/moved"))
        .unwrap();
    assert!(
        moved.contains(&format!("ok: 200 OK -> {}", server.url("/ok"))),
        "{moved}"
    );
    assert!(
        r.stdout
            .contains("10 URLs: 5 ok, 1 warning, 4 broken (0 from the cache)"),
        "{}",
        r.stdout
    );
}

#[test]
fn results_are_cached_until_they_expire_or_no_cache() {
    let server = HttpServer::start();
    let project = Project::new(1, &csv(1), CHECK).with_issues(&[("links", issue_linking(&server))]);
    let (_, first, _) = check_json(&project, &[]);
    assert_eq!(first["summary"]["cached"], 0);
    let asked = server.requests().len();

    // Again at once: only what no server answered (the timeout) is asked again.
    let (code, second, _) = check_json(&project, &[]);
    assert_eq!(code, 1);
    assert_eq!(second["summary"]["cached"], 9);
    let again: Vec<_> = server.requests()[asked..].to_vec();
    assert_eq!(again, [("HEAD".to_owned(), "/slow".to_owned())]);
    let r = results(&second);
    assert_eq!(r["/missing"]["verdict"], "broken");
    assert_eq!(r["/missing"]["cached"], true);
    assert_eq!(r["/moved"]["final_url"], server.url("/ok"), "cached with its redirect");

    // --no-cache asks everything again.
    let before = server.requests().len();
    let (_, third, _) = check_json(&project, &["--no-cache"]);
    assert_eq!(third["summary"]["cached"], 0);
    assert!(server.hits("/ok") > 2 && server.requests().len() - before >= 10);

    // An expired result is asked again.
    let before = server.hits("/image.png");
    let r = run(project
        .command()
        .env("NEWSLETTER_CHECK_CACHE_FOR", "0s")
        .args(["check", "links", "--format", "json"]));
    let fourth: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(fourth["summary"]["cached"], 0);
    assert_eq!(server.hits("/image.png"), before + 1);
}

#[test]
fn at_most_two_requests_at_a_time_to_one_host() {
    let server = HttpServer::start();
    let links: String = (0..12)
        .map(|i| format!("* [page {i}]({}?{i})\n", server.url("/pause")))
        .collect();
    let issue = format!("---\ntitle: Many links\npreheader: p\n---\n# Events\n\n{links}");
    let project = Project::new(1, &csv(1), CHECK).with_issues(&[("many", issue)]);
    let r = run(project.command().args(["check", "many"]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(server.requests().len(), 12);
    assert_eq!(server.max_in_flight(), 2);
}

#[test]
fn offline_skips_the_network_and_finds_the_offline_errors() {
    let server = HttpServer::start();
    let issue = format!(
        "---\ntitle: {long}\n---\nHi {{{{frist_name}}}}, write to [us](mailto:events@openinfra.dev.) \
         and see [the page]({url}) or [this](/relative/page).\n",
        long = "A subject that goes on and on ".repeat(6),
        url = server.url("/ok"),
    );
    let project = Project::new(1, &csv(1), CHECK).with_issues(&[("bad", issue)]);
    let r = run(project
        .command()
        .args(["check", "bad", "--offline", "--format", "json"]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(server.requests().is_empty());
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    let found: Vec<(String, String)> = json["offline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().into(),
                f["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    let has = |sev: &str, kind: &str| found.contains(&(sev.to_owned(), kind.to_owned()));
    assert!(has("error", "invalid-mailto"), "{found:?}");
    assert!(has("error", "unresolved-link"), "{found:?}");
    assert!(has("error", "unknown-template-variable"), "{found:?}");
    assert!(has("warning", "subject-too-long"), "{found:?}");
    assert!(has("warning", "missing-preheader"), "{found:?}");
    assert!(json["links"].is_null());
    let variable = &json["offline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "unknown-template-variable")
        .unwrap();
    assert_eq!(variable["line"], 4);
    assert!(variable["message"].as_str().unwrap().contains(
        "{{frist_name}} is not a column of the recipient list (columns: email, first_name); did you mean `first_name`?"
    ));
}

#[test]
fn send_refuses_an_issue_with_errors_unless_forced_but_test_sends_go_out() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let issue = "---\ntitle: Broken mailto\npreheader: p\n---\nWrite to [us](mailto:events@openinfra.dev.).\n";
    let project = Project::new(
        sink.port,
        &csv(3),
        "throttle: { rate: off }\ntest_recipients: [staff@openinfra.dev]\n",
    )
    .with_issues(&[("broken", issue.to_owned())]);

    let r = run(project.command().args(["send", "broken", "--yes"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("error: ") && r.stderr.contains("[invalid-mailto]"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("not sent: the offline checks found 1 error (above); fix it, or send anyway with --force"),
        "{}",
        r.stderr
    );
    assert_eq!(sink.count(), 0);

    let r = run(project.command().args(["send", "broken", "--test"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("[invalid-mailto]"), "{}", r.stderr);
    assert_eq!(sink.received().get("staff@openinfra.dev"), Some(&1));

    let r = run(project.command().args(["send", "broken", "--yes", "--force"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sink.count(), 4);
}

#[test]
fn with_no_site_reachable_check_says_the_network_looks_down() {
    // Nothing listens on these ports: every connection is refused, as with no network.
    let issue = format!(
        "---\ntitle: Offline\npreheader: p\n---\nLead.\n\n# Events\n\n* [a](https://127.0.0.1:{a}/a) and [b](https://127.0.0.1:{b}/b)\n",
        a = support::free_port(),
        b = support::free_port()
    );
    let project = Project::new(1, &csv(1), CHECK).with_issues(&[("offline", issue)]);
    let r = run(project.command().args(["check", "offline", "--no-cache"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("error: the network looks unreachable: none of the 2 URLs could be connected to"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("or run `newsletter check offline --offline`"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("BROKEN"), "{}", r.stdout);
    assert!(
        r.stdout.contains("2 URLs not checked (the network looks unreachable)"),
        "{}",
        r.stdout
    );
    // Quiet: nothing on success, not even the summary.
    let r = run(project.command().args(["check", "offline", "--offline", "-q"]));
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
}
