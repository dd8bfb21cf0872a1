//! A headless Chromium driven through WebDriver (Debian's chromedriver), for the tests where a
//! real browser must press a button. The W3C protocol is JSON over HTTP, spoken here over a
//! plain TCP stream: a few calls are all the tests need.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::free_port;
use super::tools;

/// The key W3C WebDriver gives element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if line.trim().is_empty() {
            break;
        }
    }
    let mut text = Vec::new();
    match length {
        Some(n) => {
            text.resize(n, 0);
            reader.read_exact(&mut text).unwrap();
        }
        None => {
            reader.read_to_end(&mut text).unwrap();
        }
    }
    let value: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
    assert!(value["value"]["error"].is_null(), "{method} {path}: {value}");
    value["value"].clone()
}

impl Browser {
    /// A phone-sized browser (`width` CSS pixels), headless.
    pub fn start(width: u32) -> Browser {
        Browser::start_with(width, &[])
    }

    /// With more Chromium flags: `--user-agent=...` for a person's browser (headless
    /// Chromium's own agent names it `HeadlessChrome`, as scanners' browsers do),
    /// `--force-dark-mode` for the dark scheme.
    pub fn start_with(width: u32, flags: &[&str]) -> Browser {
        let port = free_port();
        let driver = Command::new(tools::program(&tools::CHROMEDRIVER))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver: run scripts/test, which installs Debian's chromium-driver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap().keep();
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
                "mobileEmulation": { "deviceMetrics": { "width": width, "height": 800, "pixelRatio": 2 } }
            }
        }}});
        let session = http(port, "POST", "/session", Some(&capabilities))["sessionId"]
            .as_str()
            .unwrap()
            .to_owned();
        Browser { driver, port, session }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        http(self.port, method, &format!("/session/{}{path}", self.session), body)
    }

    /// A PNG of the window.
    pub fn screenshot(&self, file: &std::path::Path) {
        use base64::Engine;
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(file, bytes).unwrap();
    }

    pub fn open(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let element = self.call(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        let id = element[ELEMENT].as_str().unwrap().to_owned();
        self.call("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    /// Whether the page has an element `css` selects.
    pub fn has(&self, css: &str) -> bool {
        let found = self.script(&format!("return document.querySelector({}) !== null", json!(css)));
        found.as_bool().unwrap_or(false)
    }

    pub fn script(&self, source: &str) -> Value {
        self.call("POST", "/execute/sync", Some(&json!({ "script": source, "args": [] })))
    }

    /// A script that ends by calling its last argument with its result.
    pub fn script_async(&self, source: &str) -> Value {
        self.call("POST", "/timeouts", Some(&json!({ "script": 60_000 })));
        self.call("POST", "/execute/async", Some(&json!({ "script": source, "args": [] })))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(self.port, "DELETE", &format!("/session/{}", self.session), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
