//! Readers join and choose, through `newsletter serve` with curl and Chromium as clients and
//! smtp-sink as the relay: the sign-up form, the confirmation email as the relay received
//! it, a GET of its link that confirms nothing and the button's POST that does, the consent
//! record, the preference centre, then a real send in which each reader gets the projects
//! they chose; and the abuse cases.

use crate::support;
use crate::support::tools;

use std::time::{Duration, Instant};

use mail_parser::MessageParser;
use support::serve::{Server, curl};
use support::{Project, Sink, run};

const CONFIG: &str = "throttle: { rate: off }\n\
    unsubscribe: { url: https://openinfra.dev/newsletter/unsubscribe }\n\
    archive: { url: https://openinfra.dev/newsletter/archive }\n\
    serve: { request_timeout: 5s }\n";

fn project(sink: &Sink, csv: &str, extra: &str) -> Project {
    let july = std::fs::read_to_string(support::root().join("newsletters/2025-07.md")).unwrap();
    Project::new(sink.port, csv, &format!("{CONFIG}{extra}")).with_issues(&[("2025-07", july)])
}

/// The messages `rcpt` received, waiting up to `wait` for at least one.
fn mail_to(sink: &Sink, rcpt: &str, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let found: Vec<String> = sink
            .messages()
            .into_iter()
            .filter(|(r, _)| r.iter().any(|r| r == rcpt))
            .map(|(_, text)| text)
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A message's text and HTML parts, decoded.
fn parts(raw: &str) -> (String, String) {
    let message = MessageParser::default().parse(raw.as_bytes()).unwrap();
    (
        message.body_text(0).unwrap().into_owned(),
        message.body_html(0).unwrap().into_owned(),
    )
}

fn header(raw: &str, name: &str) -> String {
    let message = MessageParser::default().parse(raw.as_bytes()).unwrap();
    message
        .header_raw(name)
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// The confirmation link of the email `rcpt` received, pointed at `server`.
fn confirmation_link(sink: &Sink, rcpt: &str, server: &Server) -> String {
    let mail = mail_to(sink, rcpt, Duration::from_secs(15));
    assert_eq!(mail.len(), 1, "one confirmation email to {rcpt}");
    let (text, _) = parts(&mail[0]);
    let url = text
        .split_whitespace()
        .find(|w| w.contains("/newsletter/confirm?token="))
        .unwrap_or_else(|| panic!("no link in {text}"));
    url.replace("https://openinfra.dev", &server.base)
}

fn subscribers(project: &Project) -> String {
    let r = run(project.command().args(["subscribers", "list"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
}

fn export(project: &Project, email: &str) -> serde_json::Value {
    let r = run(project.command().args(["subscribers", "export", email]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn a_reader_signs_up_confirms_with_the_button_and_gets_only_the_projects_chosen() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = project(
        &sink,
        "email,first_name,projects\nolive@example.org,Olive,\nzoe@example.org,Zoe,zuul\n",
        "",
    );
    let server = Server::start(&project);
    let form = format!("{}/newsletter/subscribe", server.base);

    let (code, page) = curl(&[&form]);
    assert_eq!(code, 200);
    assert!(
        page.contains("name=\"email\"") && page.contains("value=\"kata-containers\""),
        "{page}"
    );
    assert!(
        page.contains("Yes, send me Inside Open Infrastructure"),
        "the consent wording: {page}"
    );

    let (code, page) = curl(&[
        "--data",
        "email=Kate%40Example.org&name=Kate+Reader&projects=kata-containers&form=newsletter&website=",
        &form,
    ]);
    assert_eq!(code, 200);
    assert!(page.contains("id=\"sent\""), "{page}");

    // The confirmation email as the relay received it.
    let mail = mail_to(&sink, "kate@example.org", Duration::from_secs(15));
    assert_eq!(mail.len(), 1);
    assert!(header(&mail[0], "Subject").contains("Confirm your subscription to Inside Open Infrastructure"));
    assert!(
        header(&mail[0], "Message-ID").starts_with("<signup."),
        "its own Message-ID"
    );
    let (text, html) = parts(&mail[0]);
    assert!(
        !text.contains("Kate Reader") && text.contains("Kata Containers"),
        "{text}"
    );
    assert!(html.contains("Yes, subscribe me"), "{html}");
    let link = confirmation_link(&sink, "kate@example.org", &server);
    assert!(!subscribers(&project).contains("kate@"), "not before confirming");

    // A link scanner opens the link: a page with one button, nothing confirmed.
    for _ in 0..3 {
        let (code, page) = curl(&[&link]);
        assert_eq!(code, 200);
        assert!(page.contains("id=\"confirm\""), "{page}");
    }
    assert!(!subscribers(&project).contains("kate@"), "a GET confirms nothing");

    // The button.
    let token = link.split("token=").nth(1).unwrap();
    let confirm = format!("{}/newsletter/confirm", server.base);
    let (code, page) = curl(&["--data", &format!("token={token}"), &confirm]);
    assert_eq!(code, 200);
    assert!(page.contains("id=\"confirmed\""), "{page}");
    let list = subscribers(&project);
    assert!(list.contains("kate@example.org,Kate Reader,kata-containers,"), "{list}");

    // The consent record.
    let dossier = export(&project, "kate@example.org");
    let consent = &dossier["consents"][0]["evidence"];
    assert_eq!(dossier["consents"][0]["kind"], "confirmed");
    assert_eq!(consent["form"], "newsletter");
    assert!(
        consent["wording"]
            .as_str()
            .unwrap()
            .starts_with("Yes, send me Inside Open Infrastructure")
    );
    assert_eq!(consent["projects"], "kata-containers");
    assert_eq!(consent["posted_from"]["remote"], "127.0.0.1");
    assert!(consent["posted_at"].as_str().unwrap() <= consent["confirmed_at"].as_str().unwrap());
    assert!(
        consent["layout_version"].as_str().is_some_and(|v| v.len() == 12),
        "{consent}"
    );

    // A reader of the list chooses OpenStack and Zuul in the preference centre.
    let r = run(project
        .command()
        .args(["unsubscribe-url", "olive@example.org", "--issue", "2025-07"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let preferences = r
        .stdout
        .trim()
        .replace("https://openinfra.dev", &server.base)
        .replace("/unsubscribe?", "/preferences?");
    let (code, page) = curl(&[&preferences]);
    assert_eq!(code, 200);
    assert!(
        page.contains("id=\"everything\" type=\"checkbox\" name=\"projects\" value=\"everything\" checked"),
        "{page}"
    );
    let token = preferences.split("token=").nth(1).unwrap();
    let (code, page) = curl(&[
        "--data",
        &format!("token={token}&projects=openstack&projects=zuul"),
        &format!("{}/newsletter/preferences", server.base),
    ]);
    assert_eq!(code, 200);
    assert!(
        page.contains("id=\"saved\"") && page.contains("OpenStack") && page.contains("Zuul"),
        "{page}"
    );
    assert_eq!(export(&project, "olive@example.org")["projects"], "openstack;zuul");

    // The send: the list's reader and the confirmed subscriber, each with their projects.
    let r = run(project.command().args(["send", "2025-07", "--yes", "--force"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let kate = mail_to(&sink, "kate@example.org", Duration::ZERO);
    assert_eq!(kate.len(), 2, "the confirmation, then the issue");
    let issue = kate
        .iter()
        .find(|m| !header(m, "Message-ID").starts_with("<signup."))
        .unwrap();
    let (text, html) = parts(issue);
    for part in [&text, &html] {
        assert!(part.contains("rust-vmm"), "the Kata section");
        assert!(!part.contains("Kolla-Ansible"), "not the OpenStack section");
        // In the HTML, as a counted link to it (tests/suite/clicks.rs follows them).
        assert!(
            part.contains("/newsletter/archive/2025-07/#openstack") || part.contains("/newsletter/r/2025-07/"),
            "OpenStack as a link"
        );
        assert!(
            part.contains("/newsletter/preferences?token="),
            "the preference centre's link"
        );
    }
    let olive = mail_to(&sink, "olive@example.org", Duration::ZERO);
    assert_eq!(olive.len(), 1);
    let (text, html) = parts(&olive[0]);
    for part in [&text, &html] {
        assert!(part.contains("Kolla-Ansible") && part.contains("workload federation") && !part.contains("rust-vmm"));
    }
    // The list's `projects` column: Zuul only.
    let zoe = mail_to(&sink, "zoe@example.org", Duration::ZERO);
    assert_eq!(zoe.len(), 1);
    let (text, html) = parts(&zoe[0]);
    for part in [&text, &html] {
        assert!(part.contains("workload federation") && !part.contains("Kolla-Ansible") && !part.contains("rust-vmm"));
    }
    assert_eq!(sink.count(), 4, "one confirmation and three issues");
}

#[test]
fn a_list_from_elsewhere_is_imported_with_its_consent_wording_once() {
    needs!(tools::SMTP_SINK);
    let sink = Sink::start();
    let project = project(&sink, "email\nolive@example.org\n", "");
    assert_eq!(
        run(project.command().args(["suppress", "add", "gone@example.org"])).code,
        0
    );
    let file = project.dir.path().join("old-list.csv");
    std::fs::write(
        &file,
        "email,name,projects\nann@example.org,Ann Lee,starlingx\ngone@example.org,Gone,\nnot-an-address,X,\n",
    )
    .unwrap();
    let consent = "Sign me up for the OpenInfra newsletter (old website, 2023)";
    let import = || {
        run(project
            .command()
            .args(["subscribers", "import"])
            .arg(&file)
            .args(["--consent", consent]))
    };
    let r = import();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Imported 1 subscriber(s)") && r.stdout.contains("1 not added"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("old-list.csv:4: invalid address"), "{}", r.stderr);
    assert!(
        import().stdout.contains("Imported 0 subscriber(s)"),
        "a second import adds no one"
    );
    let r = run(project.command().args(["subscribers", "list", "--format", "json"]));
    let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["email"], "ann@example.org");
    assert_eq!(list[0]["projects"], "starlingx");
    assert_eq!(list[0]["how"], "subscribed");
    let dossier = export(&project, "ann@example.org");
    assert_eq!(dossier["consents"][0]["evidence"]["wording"], consent);
    // The send reaches the imported reader too, once, with her project.
    let r = run(project.command().args(["send", "2025-07", "--yes", "--force"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let received = sink.received();
    assert_eq!(received.get("ann@example.org"), Some(&1), "{received:?}");
    assert_eq!(received.get("gone@example.org"), None);
    let (text, _) = parts(&mail_to(&sink, "ann@example.org", Duration::ZERO)[0]);
    assert!(text.contains("starlingx_user_survey") && !text.contains("rust-vmm"));
}

#[test]
fn abuse_is_answered_without_a_500_and_without_a_second_email() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = project(
        &sink,
        "email\nolive@example.org\n",
        "subscribe: { per_client_per_hour: 500 }\n",
    );
    assert_eq!(
        run(project.command().args(["suppress", "add", "victim@example.org"])).code,
        0
    );
    let server = Server::start(&project);
    let form = format!("{}/newsletter/subscribe", server.base);

    // A bot fills the honeypot: the same answer, nothing stored, nothing sent.
    let (code, page) = curl(&["--data", "email=bot%40example.org&website=http%3A%2F%2Fspam", &form]);
    assert_eq!((code, page.contains("id=\"sent\"")), (200, true));
    // A 1 MB body.
    let big = format!("email=big%40example.org&name={}", "x".repeat(1 << 20));
    let body = std::env::temp_dir().join(format!("signup-body-{}", std::process::id()));
    std::fs::write(&body, big).unwrap();
    let (code, _) = curl(&["--data-binary", &format!("@{}", body.display()), &form]);
    std::fs::remove_file(&body).unwrap();
    assert_eq!(code, 413);
    // A long field under the body cap, and a bad address: the form again, saying what to fix.
    let (code, page) = curl(&[
        "--data",
        &format!("email=a%40example.org&name={}", "x".repeat(400)),
        &form,
    ]);
    assert_eq!(code, 400);
    assert!(page.contains("too long"), "{page}");
    let (code, page) = curl(&["--data", "email=not-an-address", &form]);
    assert_eq!(code, 400);
    assert!(
        page.contains("is not an email address") && page.contains("name=\"email\""),
        "{page}"
    );
    // JSON for a client that asks for it.
    let (code, body) = curl(&[
        "-H",
        "Accept: application/json",
        "--data",
        "email=victim%40example.org",
        &form,
    ]);
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["state"],
        "sent"
    );

    // 500 sign-ups for one address: all answered alike, one email.
    let mut args = vec!["-s".to_owned()];
    for _ in 0..500 {
        args.extend(
            [
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}\n",
                "--data",
                "email=flood%40example.org",
            ]
            .map(str::to_owned),
        );
        args.push(form.clone());
    }
    let out = std::process::Command::new(tools::program(&tools::CURL))
        .args(&args)
        .output()
        .unwrap();
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    let answered = |code: &str| codes.lines().filter(|l| *l == code).count();
    // The per-client limit (500 an hour here; the bad address and the JSON request counted)
    // turns away the last two.
    assert_eq!((answered("200"), answered("429")), (498, 2), "{codes}");
    assert!(!codes.lines().any(|l| l.starts_with('5')), "{codes}");
    assert_eq!(mail_to(&sink, "flood@example.org", Duration::from_secs(15)).len(), 1);

    // Give any late email time to arrive, then count everything the relay got.
    std::thread::sleep(Duration::from_millis(500));
    let received = sink.received();
    assert_eq!(received.get("flood@example.org"), Some(&1), "{received:?}");
    assert_eq!(
        received.get("victim@example.org"),
        None,
        "no email to a suppressed address"
    );
    assert_eq!(received.get("bot@example.org"), None);
    assert_eq!(received.get("big@example.org"), None);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        export(&project, "bot@example.org")["signups"].as_array().unwrap().len(),
        0
    );
    assert_eq!(
        export(&project, "victim@example.org")["signups"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn a_browser_signs_up_through_the_form_page_and_confirms_with_the_button() {
    needs!(tools::SMTP_SINK, tools::CHROMEDRIVER);
    let sink = Sink::start();
    let project = project(&sink, "email\nolive@example.org\n", "");
    let server = Server::start(&project);
    let browser = support::webdriver::Browser::start(375);
    browser.open(&format!("{}/newsletter/subscribe", server.base));
    browser.script(
        "document.getElementById('email').value = 'zed@example.org';\
         document.querySelector('input[value=zuul]').checked = true; return 1",
    );
    browser.click("#subscribe");
    wait_for(&browser, "#sent");
    let link = confirmation_link(&sink, "zed@example.org", &server);
    browser.open(&link);
    assert!(browser.has("#confirm"));
    assert!(
        !subscribers(&project).contains("zed@"),
        "opening the link confirms nothing"
    );
    browser.click("#confirm");
    wait_for(&browser, "#confirmed");
    assert!(
        subscribers(&project).contains("zed@example.org,,zuul,"),
        "{}",
        subscribers(&project)
    );
}

fn wait_for(browser: &support::webdriver::Browser, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.has(css) {
        assert!(Instant::now() < deadline, "{css} never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn confirmation_links_expire_and_no_other_token_confirms() {
    needs!(tools::SMTP_SINK, tools::CURL);
    use newsletter::unsubscribe::Secret;
    let sink = Sink::start();
    let project = project(&sink, "email\nolive@example.org\n", "");
    let server = Server::start(&project);
    let (code, _) = curl(&[
        "--data",
        "email=late%40example.org",
        &format!("{}/newsletter/subscribe", server.base),
    ]);
    assert_eq!(code, 200);
    let link = confirmation_link(&sink, "late@example.org", &server);
    let confirm = format!("{}/newsletter/confirm", server.base);
    // The same sign-up's token, made with the service's secret, but a second past its expiry.
    let past = chrono::Utc::now().timestamp() - 1;
    let expired = Secret::new(support::SECRET).token("late@example.org", &format!("signup 1 {past}"));
    let (code, page) = curl(&[&format!("{confirm}?token={expired}")]);
    assert_eq!(code, 410);
    assert!(page.contains("id=\"expired\""), "{page}");
    let (code, _) = curl(&["--data", &format!("token={expired}"), &confirm]);
    assert_eq!(code, 410);
    // An unsubscribe link's token is no confirmation, and a confirmation no preference key.
    let r = run(project
        .command()
        .args(["unsubscribe-url", "late@example.org", "--issue", "2025-07"]));
    let unsubscribe_token = r.stdout.trim().split("token=").nth(1).unwrap().to_owned();
    let (code, _) = curl(&["--data", &format!("token={unsubscribe_token}"), &confirm]);
    assert_eq!(code, 400);
    let token = link.split("token=").nth(1).unwrap();
    let (code, _) = curl(&[&format!("{}/newsletter/preferences?token={token}", server.base)]);
    assert_eq!(code, 400);
    assert!(!subscribers(&project).contains("late@"), "nothing confirmed");
    // The link itself still works.
    let (code, page) = curl(&["--data", &format!("token={token}"), &confirm]);
    assert_eq!(code, 200, "{page}");
    assert!(subscribers(&project).contains("late@example.org"));
}

/// A sign-up reader's edition before it goes out (issue 37, item 11): `preview --projects`,
/// and the preference centre's link of an address, `preferences-url`, beside `unsubscribe-url`.
#[test]
fn a_chosen_edition_previews_and_the_preference_link_is_printed() {
    needs!(tools::SMTP_SINK, tools::CURL);
    let sink = Sink::start();
    let project = project(&sink, "email,first_name\nkate@example.org,Kate\n", "");
    let r = run(project
        .command()
        .args(["preview", "2025-07", "--projects", "kata-containers,zuul", "-q"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(project.dir.path().join("out/2025-07/email.txt")).unwrap();
    assert!(text.contains("rust-vmm"), "the Kata section");
    assert!(!text.contains("Kolla-Ansible"), "not the OpenStack section");
    let r = run(project
        .command()
        .args(["preview", "2025-07", "--projects", "kata,zuul"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`kata` is not a project of the layout; its projects: ")
            && r.stderr.contains("kata-containers"),
        "{}",
        r.stderr
    );

    let r = run(project
        .command()
        .args(["preferences-url", "Kate@Example.org", "--issue", "2025-07"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let url = r.stdout.trim();
    assert!(
        url.starts_with("https://openinfra.dev/newsletter/preferences?token="),
        "{url}"
    );
    let server = Server::start(&project);
    let (status, page) = curl(&[&url.replace("https://openinfra.dev", &server.base)]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("k****@example.org"), "the reader's own page: {page}");
}
