//! dnsmasq on a free loopback port, answering the records a test gives it, for the DNS that
//! `newsletter doctor --resolver` reads.

use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::{free_port, is_root, tools, wait_listening_or};

pub struct Dnsmasq {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

impl Dnsmasq {
    /// `records`: dnsmasq's own options (`--txt-record=NAME,TEXT`, `--mx-host=...`,
    /// `--host-record=NAME,IP`); `local`: the domains it alone answers for (anything else
    /// there is NXDOMAIN, and nothing is asked upstream).
    pub fn start(local: &[&str], records: &[String]) -> Dnsmasq {
        let dir = TempDir::new().unwrap();
        let port = free_port();
        let log = dir.path().join("dnsmasq.log");
        let mut cmd = Command::new(tools::program(&tools::DNSMASQ));
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--conf-file=/dev/null",
        ])
        .args([
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--pid-file=",
            "--log-queries",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--log-facility={}", log.display()))
        .args(local.iter().map(|d| format!("--local=/{d}/")))
        .args(records)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if is_root() {
            // It would drop to a user that cannot write the log in this folder.
            cmd.arg("--user=root");
        }
        let child = cmd.spawn().unwrap();
        let server = Dnsmasq { port, child, dir };
        wait_listening_or(port, || server.log());
        server
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }
}

/// A TXT record's option, its text split into the 255-byte strings DNS holds.
pub fn txt(name: &str, text: &str) -> String {
    let strings: Vec<&str> = text
        .as_bytes()
        .chunks(255)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!("--txt-record={name},{}", strings.join(","))
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("dnsmasq's log:\n{}", self.log());
        }
    }
}
