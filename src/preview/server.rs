//! `preview --serve`: the rendered email on a local web server that reloads the browser when
//! a watched file changes, like `zola serve` and `mdbook serve`.
//!
//! Plain HTTP/1.1 over std threads: one writer on 127.0.0.1 and a handful of routes do not
//! need a web framework. Files are watched by polling their size and modification time every
//! 200 ms, which works the same on every file system (editors that replace a file instead of
//! writing it in place included).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use crate::html::escape;

/// One render of the issue, as the page shows it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub title: String,
    pub html: String,
    pub text: String,
    pub headers: String,
    pub warnings: Vec<String>,
}

#[derive(Default)]
struct State {
    /// Bumped on every render, good or bad: the browser reloads when it changes.
    version: u64,
    /// The last good render, kept on screen while an error is shown above it.
    page: Option<Page>,
    error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Tells the writer what each render gave (the command prints it).
    say: Box<dyn Fn(&str) + Send + Sync>,
}

const POLL: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_millis(50);
/// An SSE comment this often finds browsers that went away.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Serves until the process is stopped. `render` is called at start and after each change to
/// a file or folder of `watch`; its error is shown in the page and the server keeps going.
/// `say` is told, in a line, what each render gave.
pub fn serve<F, S>(listener: TcpListener, watch: Vec<PathBuf>, render: F, say: S) -> std::io::Result<()>
where
    F: Fn() -> anyhow::Result<Page> + Send + 'static,
    S: Fn(&str) + Send + Sync + 'static,
{
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        say: Box::new(say),
    });
    update(&shared, render());
    let watcher = Arc::clone(&shared);
    std::thread::spawn(move || {
        let mut seen = fingerprint(&watch);
        loop {
            std::thread::sleep(POLL);
            let mut now = fingerprint(&watch);
            if now == seen {
                continue;
            }
            // Let a save in progress finish (editors write, rename, touch), then render once.
            loop {
                std::thread::sleep(SETTLE);
                let again = fingerprint(&watch);
                if again == now {
                    break;
                }
                now = again;
            }
            seen = now;
            update(&watcher, render());
        }
    });
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("preview server: {e}");
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            if let Err(e) = handle(stream, &shared) {
                tracing::debug!("preview connection: {e}");
            }
        });
    }
    Ok(())
}

fn update(shared: &Shared, result: anyhow::Result<Page>) {
    let mut state = lock(shared);
    state.version += 1;
    match result {
        Ok(page) => {
            (shared.say)(&format!(
                "rendered {} ({})",
                page.title,
                crate::human::count(page.warnings.len(), "warning")
            ));
            state.page = Some(page);
            state.error = None;
        }
        Err(e) => {
            let message = format!("{e:#}");
            (shared.say)(&format!("error: {message}"));
            state.error = Some(message);
        }
    }
    shared.changed.notify_all();
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Size and modification time of every file under the watched paths.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    fn walk(path: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
        let Ok(meta) = std::fs::metadata(path) else {
            out.push((path.to_owned(), u64::MAX, None)); // gone: a change too
            return;
        };
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            entries.sort();
            for entry in entries {
                walk(&entry, out);
            }
        } else {
            out.push((path.to_owned(), meta.len(), meta.modified().ok()));
        }
    }
    let mut out = Vec::new();
    for path in paths {
        walk(path, &mut out);
    }
    out
}

fn handle(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers are not needed; read them so the browser sees a well-behaved server.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut stream = stream;
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/" => {
            let state = lock(shared);
            respond(&mut stream, "200 OK", "text/html; charset=utf-8", &shell(&state))
        }
        "/email.html" => {
            let body = lock(shared)
                .page
                .as_ref()
                .map_or_else(|| "<p>No render yet.</p>".to_owned(), |p| p.html.clone());
            respond(&mut stream, "200 OK", "text/html; charset=utf-8", &body)
        }
        "/email.txt" => {
            let body = lock(shared).page.as_ref().map(|p| p.text.clone()).unwrap_or_default();
            respond(&mut stream, "200 OK", "text/plain; charset=utf-8", &body)
        }
        "/headers" => {
            let body = lock(shared)
                .page
                .as_ref()
                .map(|p| p.headers.clone())
                .unwrap_or_default();
            respond(&mut stream, "200 OK", "text/plain; charset=utf-8", &body)
        }
        "/events" => {
            let since = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("since="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            events(stream, shared, since)
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
    }
}

/// Server-sent events: `reload` whenever the version passes the one the page was built from.
fn events(mut stream: TcpStream, shared: &Shared, mut since: u64) -> std::io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\nretry: 500\n\n",
    )?;
    loop {
        let version = {
            let state = lock(shared);
            let (state, _) = shared
                .changed
                .wait_timeout_while(state, HEARTBEAT, |s| s.version <= since)
                .unwrap_or_else(|p| p.into_inner());
            state.version
        };
        if version > since {
            since = version;
            stream.write_all(format!("event: reload\ndata: {version}\n\n").as_bytes())?;
        } else {
            stream.write_all(b": still here\n\n")?;
        }
        stream.flush()?;
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// The page around the email: toolbar, the email in a frame, the text part and the headers.
fn shell(state: &State) -> String {
    let title = state.page.as_ref().map_or("newsletter preview", |p| p.title.as_str());
    let error = state.error.as_deref().map_or(String::new(), |e| {
        format!(
            "<div id=\"error\"><strong>Render failed</strong> — showing the last good render. Fix the file and save.<pre>{}</pre></div>",
            escape(e)
        )
    });
    let warnings = state.page.as_ref().map_or(String::new(), |p| {
        if p.warnings.is_empty() {
            return String::new();
        }
        let items: String = p.warnings.iter().map(|w| format!("<li>{}</li>", escape(w))).collect();
        format!(
            "<details id=\"warnings\"><summary>{}</summary><ul>{items}</ul></details>",
            crate::human::count(p.warnings.len(), "warning")
        )
    });
    let (text, headers) = state.page.as_ref().map_or((String::new(), String::new()), |p| {
        (escape(&p.text), escape(&p.headers))
    });
    SHELL
        .replace("{{title}}", &escape(title))
        .replace("{{version}}", &state.version.to_string())
        .replace("{{error}}", &error)
        .replace("{{warnings}}", &warnings)
        .replace("{{text}}", &text)
        .replace("{{headers}}", &headers)
}

const SHELL: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
body { margin: 0; font: 14px system-ui, sans-serif; background: #e9ecef; }
nav { position: sticky; top: 0; display: flex; gap: 6px; align-items: center; padding: 8px 12px; background: #212529; color: #fff; }
nav button { border: 0; border-radius: 4px; padding: 6px 10px; background: #495057; color: #fff; cursor: pointer; }
nav button[aria-pressed="true"] { background: #0d6efd; }
nav .title { margin-right: auto; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
main { display: flex; justify-content: center; padding: 16px; }
iframe { border: 0; background: #fff; height: calc(100vh - 90px); box-shadow: 0 1px 6px rgba(0,0,0,.2); overflow: hidden; }
pre.part { background: #fff; padding: 16px; max-width: 80ch; white-space: pre-wrap; }
#error { background: #f8d7da; color: #58151c; padding: 8px 12px; border-bottom: 2px solid #dc3545; }
#error pre { white-space: pre-wrap; margin: 4px 0 0; }
#warnings { background: #fff3cd; padding: 6px 12px; }
[hidden] { display: none !important; }
</style></head>
<body data-version="{{version}}">
<nav><span class="title">{{title}}</span>
<button data-view="600">Desktop 600px</button><button data-view="375">Phone 375px</button>
<button data-view="text">Text</button><button data-view="headers">Headers</button></nav>
{{error}}{{warnings}}
<main>
<iframe id="email" src="/email.html" title="The email" width="600"></iframe>
<pre class="part" id="text" hidden>{{text}}</pre>
<pre class="part" id="headers" hidden>{{headers}}</pre>
</main>
<script>
const views = { "600": "email", "375": "email", text: "text", headers: "headers" };
function show(view) {
  if (!(view in views)) view = "600";
  for (const id of ["email", "text", "headers"]) document.getElementById(id).hidden = views[view] !== id;
  if (views[view] === "email") document.getElementById("email").width = view;
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-pressed", b.dataset.view === view);
  localStorage.setItem("newsletter-view", view);
}
for (const b of document.querySelectorAll("nav button")) b.onclick = () => show(b.dataset.view);
// The frame as tall as the email, so the page scrolls and the email keeps its whole width.
const frame = document.getElementById("email");
const fit = () => { frame.style.height = frame.contentDocument.documentElement.scrollHeight + "px"; };
frame.addEventListener("load", () => { fit(); new ResizeObserver(fit).observe(frame.contentDocument.body); });
show(localStorage.getItem("newsletter-view") || "600");
const events = new EventSource("/events?since=" + document.body.dataset.version);
events.addEventListener("reload", () => location.reload());
</script>
</body></html>
"#;
