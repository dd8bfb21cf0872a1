//! The July issue as a reader's browser draws it: headless Chromium (Debian `chromium`,
//! installed by scripts/test) at desktop and phone width. Screenshots are kept under
//! out/browser/ for review by eye.
//!
//! This machine has no internet, so remote images do not load; the layout still holds because
//! every image carries its width, which is what a mail client with images blocked sees too.

use crate::support;
use crate::support::tools;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{root, run};

/// Headless Chromium's window is at least 500px wide, so the email is drawn in a frame of
/// the exact width (its media queries see that width, as on a phone), and measured from
/// outside once it has loaded. The result is written into the DOM for --dump-dom.
const FRAME: &str = r#"<!doctype html><html><body style="margin:0">
<iframe id="email" width="{width}" height="3000" style="border:0;display:block" srcdoc="{srcdoc}"></iframe>
<script>
const frame = document.getElementById("email");
frame.addEventListener("load", () => {
  const doc = frame.contentDocument;
  const win = frame.contentWindow;
  const wide = [...doc.querySelectorAll("body *")]
    .filter(e => e.getBoundingClientRect().right > win.innerWidth + 1)
    .map(e => e.tagName + (e.className ? "." + e.className : ""));
  const images = [...doc.images].map(i => ({ src: i.getAttribute("src"), alt: i.getAttribute("alt") }));
  // WCAG contrast of every visible text against the background it is drawn on.
  const channels = c => c.match(/[\d.]+/g).map(Number);
  const lum = c => {
    const [r, g, b] = channels(c).slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = e => {
    for (let n = e; n; n = n.parentElement) {
      const c = win.getComputedStyle(n).backgroundColor;
      const parts = channels(c);
      if (parts.length < 4 || parts[3] > 0) return c;
    }
    return "rgb(255, 255, 255)";
  };
  const low = [...doc.querySelectorAll("body *")]
    .filter(e => [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
    .filter(e => e.getClientRects().length && e.getBoundingClientRect().height > 2 && win.getComputedStyle(e).opacity !== "0")
    .map(e => {
      const f = lum(win.getComputedStyle(e).color), b = lum(background(e));
      return [e.tagName, e.textContent.trim().slice(0, 40), Math.round((Math.max(f, b) + 0.05) / (Math.min(f, b) + 0.05) * 100) / 100];
    })
    .filter(x => x[2] < 4.5);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    width: win.innerWidth,
    scroll_width: doc.documentElement.scrollWidth,
    wide: wide.slice(0, 10),
    images,
    low_contrast: low.slice(0, 20),
    dark: win.matchMedia("(prefers-color-scheme: dark)").matches,
    page_luminance: Math.round(lum(background(doc.body)) * 1000) / 1000,
  });
  document.body.appendChild(out);
});
</script></body></html>"#;

/// The email in a frame `width` pixels wide, written beside it.
fn framed(html: &Path, width: u32) -> PathBuf {
    let email = std::fs::read_to_string(html).unwrap();
    let srcdoc = email.replace('&', "&amp;").replace('"', "&quot;");
    let page = FRAME
        .replace("{width}", &width.to_string())
        .replace("{srcdoc}", &srcdoc);
    let path = html.with_file_name(format!("framed-{width}.html"));
    std::fs::write(&path, page).unwrap();
    path
}

const MIN_WINDOW: u32 = 500;

fn chromium() -> std::path::PathBuf {
    tools::program(&tools::CHROMIUM)
}

/// Runs headless Chromium with `args` on `url` in a window `width` wide (at least its
/// minimum), killed after 60 s; returns its stdout.
fn headless(width: u32, args: &[String], url: &str) -> String {
    let profile = tempfile::TempDir::new().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={},3000", width.max(MIN_WINDOW)))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read while it runs: a DOM larger than the pipe's buffer would otherwise block it.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// What the frame's script measured; `extra`: more Chromium flags (`--force-dark-mode`).
fn probe(html: &Path, width: u32, extra: &[&str]) -> Value {
    let mut args: Vec<String> = vec!["--dump-dom".into(), "--virtual-time-budget=5000".into()];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let dom = headless(width, &args, &format!("file://{}", framed(html, width).display()));
    let start = dom.find("<pre id=\"probe\">").expect("the probe ran") + "<pre id=\"probe\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let json = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap()
}

#[test]
fn july_fits_a_phone_and_every_image_has_alt_text() {
    needs!(tools::CHROMIUM);
    let out: PathBuf = root().join("out/browser");
    std::fs::create_dir_all(&out).unwrap();
    let r = run(assert_cmd::Command::cargo_bin("newsletter")
        .unwrap()
        .current_dir(support::project_copy(&out))
        .env_remove("NEWSLETTER_RECIPIENTS")
        .env("NEWSLETTER_OUT", &out)
        .env("NEWSLETTER_UNSUBSCRIBE_SECRET", support::SECRET)
        .env("SOURCE_DATE_EPOCH", "1751400000")
        .args(["preview", "2025-07", "--format", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary: Value = serde_json::from_str(&r.stdout).unwrap();
    let html = out.join("2025-07/email.html");

    for width in [600, 375] {
        let shot = out.join(format!("2025-07-{width}.png"));
        let _ = std::fs::remove_file(&shot);
        headless(
            width,
            &[format!("--screenshot={}", shot.display())],
            &format!("file://{}", framed(&html, width).display()),
        );
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
            "no screenshot at {width}px"
        );
    }

    let phone = probe(&html, 375, &[]);
    assert_eq!(phone["width"], 375, "the window is phone-sized: {phone}");
    assert!(
        phone["scroll_width"].as_u64().unwrap() <= 375,
        "the page scrolls sideways at 375px; too wide: {}",
        phone["wide"]
    );
    let desktop = probe(&html, 600, &[]);
    assert!(desktop["scroll_width"].as_u64().unwrap() <= 600, "{}", desktop["wide"]);

    // Every image has an alt attribute, and a non-empty one except where the Markdown gave
    // none: those are exactly the ones `check` flags (image-without-alt), none lost on the way.
    let images = phone["images"].as_array().unwrap();
    assert!(!images.is_empty(), "{phone}");
    let mut without: Vec<&str> = images
        .iter()
        .filter(|i| i["alt"].as_str().is_none_or(|a| a.trim().is_empty()))
        .map(|i| i["src"].as_str().unwrap())
        .collect();
    assert!(
        images.iter().all(|i| i["alt"].is_string()),
        "an <img> without alt: {images:?}"
    );
    let mut flagged: Vec<&str> = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "image-without-alt")
        .map(|w| {
            let m = w["message"].as_str().unwrap();
            m.trim_start_matches("image ").split(' ').next().unwrap()
        })
        .collect();
    without.sort();
    flagged.sort();
    assert_eq!(without, flagged);

    // Every text readable (WCAG AA, 4.5:1) in the light scheme and in the dark one, where the
    // layout's dark styles take over (prefers-color-scheme: dark); the dark look is kept as a
    // screenshot beside the others.
    assert_eq!(
        desktop["low_contrast"],
        serde_json::json!([]),
        "light: {}",
        desktop["low_contrast"]
    );
    let dark = probe(&html, 600, &["--force-dark-mode"]);
    assert_eq!(dark["dark"], true, "{dark}");
    assert!(
        desktop["page_luminance"].as_f64().unwrap() > 0.5,
        "light page: {desktop}"
    );
    assert!(
        dark["page_luminance"].as_f64().unwrap() < 0.05,
        "the dark styles apply: {dark}"
    );
    assert_eq!(
        dark["low_contrast"],
        serde_json::json!([]),
        "dark: {}",
        dark["low_contrast"]
    );
    let shot = out.join("2025-07-600-dark.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        600,
        &[format!("--screenshot={}", shot.display()), "--force-dark-mode".into()],
        &format!("file://{}", framed(&html, 600).display()),
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "no dark screenshot"
    );
}
