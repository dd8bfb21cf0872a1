//! The readers' mail servers of the lab: one small SMTP server per refusal of
//! `tests/fixtures/lab/refusals.tsv`, each on a loopback address of its own (127.0.3.N, one
//! port for all), answering with that refusal at the stage the receiver gives it. A relaying
//! MTA routes `rN.lab.example` to 127.0.3.(N+1) and writes the reports itself.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::root;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
}

/// One line of the catalogue.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub receiver: String,
    /// Where the reply's text is documented.
    pub page: String,
    pub when: When,
    /// hard, soft or none (see the catalogue's head).
    pub truth: String,
    /// The reply's lines, codes and all; `ADDRESS` stands for the reader's address.
    pub reply: Vec<String>,
}

pub fn catalogue() -> Vec<Refusal> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/lab/refusals.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "refusals.tsv: five tab-separated fields: {l}");
            let when = match f[2] {
                "connect" => When::Connect,
                "helo" => When::Helo,
                "mail" => When::Mail,
                "rcpt" => When::Rcpt,
                "data" => When::Data,
                other => panic!("refusals.tsv: unknown stage {other}"),
            };
            assert!(["hard", "soft", "none"].contains(&f[3]), "refusals.tsv: truth {}", f[3]);
            Refusal {
                receiver: f[0].into(),
                page: f[1].into(),
                when,
                truth: f[3].into(),
                reply: f[4].split("\\n").map(str::to_owned).collect(),
            }
        })
        .collect()
}

/// The servers, running until the test ends.
pub struct Receivers {
    pub port: u16,
}

impl Receivers {
    pub fn start(catalogue: &[Refusal]) -> Receivers {
        let first = TcpListener::bind((Receivers::ip(0).as_str(), 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for i in 1..catalogue.len() {
            listeners.push(TcpListener::bind((Receivers::ip(i).as_str(), port)).unwrap());
        }
        for (listener, refusal) in listeners.into_iter().zip(catalogue.iter().cloned()) {
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let refusal = refusal.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &refusal);
                    });
                }
            });
        }
        Receivers { port }
    }

    /// The address of the server of refusal `i`.
    pub fn ip(i: usize) -> String {
        format!("127.0.3.{}", i + 1)
    }

    /// The domain an MTA routes to it.
    pub fn domain(i: usize) -> String {
        format!("r{i}.lab.example")
    }

    /// The reader behind refusal `i`.
    pub fn reader(i: usize) -> String {
        format!("reader{i}@{}", Receivers::domain(i))
    }
}

fn reply(out: &mut TcpStream, refusal: &Refusal, address: &str) -> std::io::Result<bool> {
    let text: Vec<String> = refusal.reply.iter().map(|l| l.replace("ADDRESS", address)).collect();
    out.write_all(format!("{}\r\n", text.join("\r\n")).as_bytes())?;
    // A 421 closes the connection, as servers do.
    Ok(text.last().is_some_and(|l| l.starts_with("421")))
}

fn serve(stream: TcpStream, refusal: &Refusal) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let refused_at_greeting = refusal.when == When::Connect;
    if refused_at_greeting {
        if reply(&mut out, refusal, "")? {
            return Ok(());
        }
    } else {
        out.write_all(b"220 lab.example ESMTP\r\n")?;
    }
    let mut rcpt = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let verb = command.split([' ', ':']).next().unwrap_or_default().to_owned();
        let at = |w: When| refusal.when == w;
        let closed = match verb.as_str() {
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            // After a refused greeting, only QUIT is served (RFC 5321 3.1).
            _ if refused_at_greeting => {
                out.write_all(b"503 5.5.1 No service\r\n")?;
                false
            }
            "EHLO" | "HELO" if at(When::Helo) => reply(&mut out, refusal, "")?,
            "EHLO" => {
                out.write_all(b"250-lab.example\r\n250 8BITMIME\r\n")?;
                false
            }
            "HELO" => {
                out.write_all(b"250 lab.example\r\n")?;
                false
            }
            "MAIL" if at(When::Mail) => reply(&mut out, refusal, "")?,
            "RCPT" => {
                rcpt = line
                    .split_once('<')
                    .and_then(|(_, r)| r.split_once('>'))
                    .map(|(a, _)| a.to_owned())
                    .unwrap_or_default();
                if at(When::Rcpt) {
                    reply(&mut out, refusal, &rcpt)?
                } else {
                    out.write_all(b"250 2.1.5 Ok\r\n")?;
                    false
                }
            }
            "DATA" => {
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                loop {
                    line.clear();
                    if lines.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line.trim_end_matches(['\r', '\n']) == "." {
                        break;
                    }
                }
                if at(When::Data) {
                    reply(&mut out, refusal, &rcpt)?
                } else {
                    out.write_all(b"250 2.0.0 Ok: queued\r\n")?;
                    false
                }
            }
            _ => {
                out.write_all(b"250 2.0.0 Ok\r\n")?;
                false
            }
        };
        if closed {
            return Ok(());
        }
    }
}

/// Where an MTA without local delivery of its own in the lab (Sendmail) sends its reports: an
/// SMTP server on 127.0.4.1 that writes each message into `maildir` as a delivery agent would,
/// with a Delivered-To header naming its envelope recipient.
pub fn catch_reports(port: u16, maildir: &std::path::Path) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let listener = TcpListener::bind(("127.0.4.1", port)).unwrap();
    let maildir = maildir.to_path_buf();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().flatten().enumerate() {
            let maildir = maildir.clone();
            std::thread::spawn(move || {
                let _ = catch(stream, &maildir, n);
            });
        }
    });
}

fn catch(stream: TcpStream, maildir: &std::path::Path, connection: usize) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 reports.example ESMTP\r\n")?;
    let (mut rcpts, mut line, mut count) = (Vec::new(), String::new(), 0);
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.trim_end().to_ascii_uppercase();
        if verb.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else if verb.starts_with("EHLO") {
            out.write_all(b"250-reports.example\r\n250 8BITMIME\r\n")?;
        } else if verb.starts_with("RCPT") {
            rcpts.push(
                line.split_once('<')
                    .and_then(|(_, r)| r.split_once('>'))
                    .map_or(String::new(), |(a, _)| a.to_owned()),
            );
            out.write_all(b"250 2.1.5 Ok\r\n")?;
        } else if verb.starts_with("DATA") {
            out.write_all(b"354 go on\r\n")?;
            let mut message = String::new();
            for rcpt in &rcpts {
                message.push_str(&format!("Delivered-To: {rcpt}\n"));
            }
            loop {
                line.clear();
                if lines.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let text = line.trim_end_matches(['\r', '\n']);
                if text == "." {
                    break;
                }
                message.push_str(
                    text.strip_prefix('.')
                        .filter(|_| text.starts_with(".."))
                        .unwrap_or(text),
                );
                message.push('\n');
            }
            count += 1;
            let name = format!("{connection}.{count}.lab");
            std::fs::write(maildir.join("tmp").join(&name), message)?;
            std::fs::rename(maildir.join("tmp").join(&name), maildir.join("new").join(&name))?;
            rcpts.clear();
            out.write_all(b"250 2.0.0 Ok\r\n")?;
        } else {
            out.write_all(b"250 2.0.0 Ok\r\n")?;
        }
    }
}
