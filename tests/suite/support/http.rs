//! A small HTTP/1.1 server on loopback for the link checker's tests: a fixed set of paths,
//! each behaving like a kind of site the checker meets, and a record of every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    requests: Mutex<Vec<(String, String)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

pub struct HttpServer {
    pub port: u16,
    state: Arc<State>,
}

impl HttpServer {
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        HttpServer { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, as (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests for `path` (any method).
    pub fn hits(&self, path: &str) -> usize {
        self.requests().iter().filter(|(_, p)| p == path).count()
    }

    /// The most requests this server was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let mut content_length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        let _ = reader.read_exact(&mut body);

        let earlier = {
            let mut requests = state.requests.lock().unwrap();
            let earlier = requests.iter().filter(|(_, p)| *p == path).count();
            requests.push((method.clone(), path.clone()));
            earlier
        };
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let response = respond(&method, &path, earlier);
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

/// What each path does. `earlier`: requests for the same path before this one.
fn respond(method: &str, path: &str, earlier: usize) -> Vec<u8> {
    let html = "text/html; charset=utf-8";
    let route = path.split('?').next().unwrap_or(path);
    match route {
        "/ok" => reply(method, 200, html, &[], 40),
        "/moved" => reply(method, 301, html, &[("Location", "/ok")], 0),
        "/missing" => reply(method, 404, html, &[], 20),
        "/error" => reply(method, 500, html, &[], 20),
        "/no-head" if method == "HEAD" => reply(method, 405, html, &[("Allow", "GET")], 0),
        "/no-head" => reply(method, 200, html, &[], 40),
        "/slow" => {
            std::thread::sleep(Duration::from_secs(3));
            reply(method, 200, html, &[], 40)
        }
        "/busy" if earlier == 0 => reply(method, 429, html, &[("Retry-After", "1")], 0),
        "/busy" => reply(method, 200, html, &[], 40),
        "/image.png" => reply(method, 200, "image/png", &[], 300),
        "/page.png" => reply(method, 200, html, &[], 300),
        "/big.png" => reply(method, 200, "image/png", &[], 2_000_000),
        "/pause" => {
            std::thread::sleep(Duration::from_millis(150));
            reply(method, 200, html, &[], 40)
        }
        _ => reply(method, 404, html, &[], 20),
    }
}

fn reply(method: &str, status: u16, content_type: &str, headers: &[(&str, &str)], len: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if method != "HEAD" {
        bytes.resize(bytes.len() + len, b'x');
    }
    bytes
}
