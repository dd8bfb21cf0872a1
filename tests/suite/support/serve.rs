//! `newsletter serve` as a process, and curl as its client.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools;
use super::{Project, Sink, free_port};

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(project: &Project) -> Server {
        Server::start_with_env(project, &[])
    }

    /// With more environment (signing keys).
    pub fn start_with_env(project: &Project, env: &[(&str, String)]) -> Server {
        Server::start_logging(project, env, Stdio::null())
    }

    /// With more environment, its log (stderr) going to `log`.
    pub fn start_logging(project: &Project, env: &[(&str, String)], log: impl Into<Stdio>) -> Server {
        let port = free_port();
        let child = project
            .std_command()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// curl's answer: status and body.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new(tools::program(&tools::CURL))
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// One-click POSTs to every URL over one curl connection: how many were answered 200.
pub fn one_click_all(urls: &[String]) -> usize {
    let mut args = vec!["-s".to_owned()];
    for url in urls {
        let each = [
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            "-X",
            "POST",
            "--data",
            "List-Unsubscribe=One-Click",
        ];
        args.extend(each.map(str::to_owned));
        args.push(url.clone());
    }
    let out = Command::new(tools::program(&tools::CURL))
        .args(&args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "200")
        .count()
}

pub fn one_click(url: &str) -> (u16, String) {
    curl(&["-X", "POST", "--data", "List-Unsubscribe=One-Click", url])
}

/// The one-click URL of the message `rcpt` received, pointed at `server`.
pub fn link_in_message(sink: &Sink, rcpt: &str, server: &Server) -> String {
    let (_, text) = sink.messages().into_iter().find(|(r, _)| r[0] == rcpt).unwrap();
    let unfolded = text.replace("\r\n ", " ").replace("\n ", " ");
    let header = unfolded.lines().find(|l| l.starts_with("List-Unsubscribe:")).unwrap();
    let url = header.split('<').nth(1).unwrap().split('>').next().unwrap();
    url.replace("https://openinfra.dev", &server.base)
}

/// strace attached to a running `serve` (every thread), counting the syncs to disk that
/// returned: what an acknowledged request waited for.
pub struct Syncs {
    strace: Child,
    trace: std::path::PathBuf,
}

impl Syncs {
    pub fn attach(server: &Server, dir: &std::path::Path) -> Syncs {
        let trace = dir.join("strace.txt");
        let mut strace = Command::new(tools::program(&tools::STRACE))
            .args(["-f", "-e", "trace=fsync,fdatasync", "-o"])
            .arg(&trace)
            .args(["-p", &server.child.id().to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("strace: run scripts/test, which installs it");
        let mut attached = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(strace.stderr.as_mut().unwrap()),
            &mut attached,
        )
        .unwrap();
        assert!(attached.contains("attached"), "strace: {attached}");
        Syncs { strace, trace }
    }

    /// The syncs so far (strace writes a call as it returns).
    pub fn count(&self) -> usize {
        std::fs::read_to_string(&self.trace)
            .unwrap_or_default()
            .lines()
            .filter(|l| (l.contains("fsync(") || l.contains("fdatasync(")) && l.contains("= 0"))
            .count()
    }
}

impl Drop for Syncs {
    fn drop(&mut self) {
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}
