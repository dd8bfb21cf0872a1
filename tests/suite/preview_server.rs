//! `preview --serve`: the page, the reload signal when the issue or the layout changes, and
//! render errors shown in the page while the server keeps running.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{Project, copy_layouts, csv, free_port};

const ISSUE: &str = "---\ntitle: Live issue\npreheader: Watch it change.\n---\n\
    The first version of the lead.\n\n# OpenStack: Clouds\n\n* An item.\n";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{path}: {response}");
    response
}

/// Waits for the next `event: reload` on an open event stream.
fn next_reload(events: &mut BufReader<TcpStream>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut line = String::new();
    loop {
        assert!(Instant::now() < deadline, "no reload signal within 10 s");
        line.clear();
        events.read_line(&mut line).unwrap();
        if line.trim() == "event: reload" {
            line.clear();
            events.read_line(&mut line).unwrap();
            return line.trim().strip_prefix("data: ").unwrap().parse().unwrap();
        }
    }
}

fn subscribe(port: u16, since: u64) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /events?since={since} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    reader
}

fn start(project: &Project) -> Server {
    let port = free_port();
    let child = project
        .std_command()
        .args(["preview", "live", "--serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "preview --serve did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

#[test]
fn the_page_reloads_with_the_new_content_and_shows_errors_without_stopping() {
    let project = Project::new(1, &csv(1), "").with_issues(&[("live", ISSUE.to_owned())]);
    let layouts = copy_layouts(project.dir.path());
    let config_path = project.dir.path().join("newsletter.yaml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let config: String = config
        .lines()
        .map(|l| match l.starts_with("layouts:") {
            true => format!("layouts: {}\n", layouts.display()),
            false => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&config_path, config).unwrap();
    let issue = project.dir.path().join("newsletters/live.md");
    let server = start(&project);

    let page = get(server.port, "/");
    for toggle in [
        "Desktop 600px",
        "Phone 375px",
        "Text",
        "Headers",
        "new EventSource(\"/events?since=\"",
    ] {
        assert!(page.contains(toggle), "{toggle} missing from {page}");
    }
    assert!(page.contains("data-version=\"1\""));
    assert!(page.contains("Subject: Live issue"), "the headers are in the page");
    assert!(
        page.contains("The first version of the lead."),
        "the text part is in the page"
    );
    assert!(get(server.port, "/email.html").contains("The first version of the lead."));

    // The Markdown changes: a reload signal, then the new content.
    let mut events = subscribe(server.port, 1);
    std::fs::write(&issue, ISSUE.replace("first version", "second version")).unwrap();
    assert_eq!(next_reload(&mut events), 2);
    assert!(get(server.port, "/email.html").contains("The second version of the lead."));
    assert!(get(server.port, "/email.txt").contains("The second version of the lead."));
    assert!(get(server.port, "/").contains("data-version=\"2\""));

    // The project registry changes: OpenStack's tagline is the layout's now.
    let registry = layouts.join("inside-openinfra/projects.yaml");
    let text = std::fs::read_to_string(&registry).unwrap();
    std::fs::write(&registry, text.replace("color: \"#da1a32\"", "color: \"#123456\"")).unwrap();
    assert_eq!(next_reload(&mut events), 3);
    assert!(get(server.port, "/email.html").contains("#123456"));

    // A render error is shown in the page; the last good render stays; the server goes on.
    std::fs::write(&issue, "---\ntitle: [unclosed\n---\nBody\n").unwrap();
    assert_eq!(next_reload(&mut events), 4);
    let page = get(server.port, "/");
    assert!(page.contains("Render failed"), "{page}");
    assert!(page.contains("live.md:2"), "the error names the file and line: {page}");
    assert!(get(server.port, "/email.html").contains("The second version of the lead."));

    // Fixed: the error is gone.
    std::fs::write(&issue, ISSUE.replace("first version", "third version")).unwrap();
    assert_eq!(next_reload(&mut events), 5);
    let page = get(server.port, "/");
    assert!(!page.contains("Render failed"));
    assert!(page.contains("The third version of the lead."));
}
