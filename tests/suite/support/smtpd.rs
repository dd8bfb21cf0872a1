//! A real SMTP server with TLS and AUTH for the relay tests: aiosmtpd (tests/suite/support/smtpd.py),
//! with certificates from a test CA made by openssl for each test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::tools;
use super::{free_port, root};

/// A private CA and the certificates it and others issue, in a folder of their own.
pub struct Pki {
    pub dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(tools::program(&tools::OPENSSL))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A test CA (`ca.pem`).
    pub fn new() -> Pki {
        let dir = TempDir::new().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Newsletter Test CA",
            ],
        );
        Pki { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate `NAME.pem` and key `NAME.key` for `names` (DNS names or IPs),
    /// issued by the CA and valid for `days` from now (negative: expired).
    pub fn issue(&self, name: &str, names: &[&str], days: i32) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        let san: Vec<String> = names
            .iter()
            .map(|n| {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    format!("IP:{n}")
                } else {
                    format!("DNS:{n}")
                }
            })
            .collect();
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
                san.join(",")
            ),
        )
        .unwrap();
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=server",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                &days.to_string(),
                "-extfile",
                &ext,
            ],
        );
        (dir.join(pem), dir.join(key))
    }

    /// A self-signed certificate for `localhost`, issued by no CA.
    pub fn self_signed(&self) -> (PathBuf, PathBuf) {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "self.key",
                "-out",
                "self.pem",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
            ],
        );
        (self.dir.path().join("self.pem"), self.dir.path().join("self.key"))
    }
}

/// aiosmtpd on a free loopback port, storing what it accepts.
pub struct Smtpd {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

/// A message as the server got it: the envelope and login (JSON) and the message text.
pub struct Received {
    pub meta: serde_json::Value,
    pub text: String,
}

impl Smtpd {
    /// `mode`: starttls, tls or plain; `extra`: more arguments for smtpd.py (--user, ...).
    pub fn start(mode: &str, cert: Option<&(PathBuf, PathBuf)>, extra: &[&str]) -> Smtpd {
        let dir = TempDir::new().unwrap();
        let port = free_port();
        let mut cmd = Command::new(tools::program(&tools::AIOSMTPD));
        cmd.arg(root().join("tests/suite/support/smtpd.py"))
            .args(["--port", &port.to_string(), "--mode", mode, "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::piped())
            // The server's tracebacks for the failures the tests cause (a TLS handshake our
            // client refuses) go to a log, shown only when the test fails.
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap());
        if let Some((pem, key)) = cert {
            cmd.arg("--cert").arg(pem).arg("--key").arg(key);
        }
        let mut child = cmd
            .spawn()
            .expect("python3 with aiosmtpd: run scripts/test, which installs it");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "smtpd.py did not start");
        Smtpd { port, child, dir }
    }

    pub fn received(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                let (meta, text) = text.split_once('\n').unwrap();
                Received {
                    meta: serde_json::from_str(meta).unwrap(),
                    text: text.to_owned(),
                }
            })
            .collect()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.dir.path().join("server.log"))
        {
            eprintln!("smtpd.py's log:\n{log}");
        }
    }
}
