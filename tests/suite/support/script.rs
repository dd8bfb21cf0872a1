//! A small SMTP server of our own, scripted per stage, recipient and attempt, for the faults
//! a well-behaved server never shows: replies by stage, drops, slow replies, connection caps,
//! no PIPELINING or SMTPUTF8.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where in a transaction a reply is being chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Rcpt,
    /// The end of the message (the final dot).
    Dot,
    Auth,
}

/// What the scripted server does.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok,
    Code(u16, &'static str),
    /// Close the connection without a reply.
    Drop,
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
}

type Script = dyn Fn(Stage, &str, u32) -> Reply + Send + Sync;

#[derive(Default)]
struct State {
    accepted: Vec<(String, String)>,
    /// Times each (stage, recipient) was seen, to script "fail first, then succeed".
    seen: HashMap<(Stage, String), u32>,
    connections: u32,
    /// Connections open now, and the most open at once.
    open: u32,
    most_open: u32,
    /// Transactions whose RCPT arrived with the MAIL command.
    pipelined: u32,
}

/// A small SMTP server whose replies a test scripts per stage, recipient and attempt.
pub struct ScriptServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

pub struct Options {
    pub starttls: bool,
    pub auth: bool,
    pub pipelining: bool,
    pub smtputf8: bool,
    /// Connections served at once; one more is greeted with 421 and closed (Postfix's
    /// smtpd_client_connection_count_limit).
    pub max_connections: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            starttls: true,
            auth: false,
            pipelining: true,
            smtputf8: true,
            max_connections: None,
        }
    }
}

impl ScriptServer {
    pub fn start(script: impl Fn(Stage, &str, u32) -> Reply + Send + Sync + 'static) -> ScriptServer {
        ScriptServer::start_with(Options::default(), script)
    }

    pub fn start_with(
        options: Options,
        script: impl Fn(Stage, &str, u32) -> Reply + Send + Sync + 'static,
    ) -> ScriptServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let script: Arc<Script> = Arc::new(script);
        let options = Arc::new(options);
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (state, script, options) = (Arc::clone(&shared), Arc::clone(&script), Arc::clone(&options));
                std::thread::spawn(move || {
                    let _ = session(stream, &state, &*script, &options);
                });
            }
        });
        ScriptServer { port, state }
    }

    /// The messages the server accepted, as (recipient, message text).
    pub fn accepted(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn count(&self, rcpt: &str) -> usize {
        self.accepted().iter().filter(|(r, _)| r == rcpt).count()
    }

    pub fn seen(&self, stage: Stage, rcpt: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .seen
            .get(&(stage, rcpt.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    pub fn pipelined(&self) -> u32 {
        self.state.lock().unwrap().pipelined
    }

    pub fn connections(&self) -> u32 {
        self.state.lock().unwrap().connections
    }

    /// The most connections that were open at once (those turned away not counted).
    pub fn most_open(&self) -> u32 {
        self.state.lock().unwrap().most_open
    }
}

fn session(stream: TcpStream, state: &Mutex<State>, script: &Script, options: &Options) -> std::io::Result<()> {
    {
        let mut s = state.lock().unwrap();
        s.connections += 1;
        if options.max_connections.is_some_and(|max| s.open >= max) {
            drop(s);
            let mut out = stream;
            writeln_crlf(
                &mut out,
                "421 4.7.0 script.test Error: too many connections from 127.0.0.1",
            )?;
            return Ok(());
        }
        s.open += 1;
        s.most_open = s.most_open.max(s.open);
    }
    let result = transactions(stream, state, script, options);
    state.lock().unwrap().open -= 1;
    result
}

fn transactions(stream: TcpStream, state: &Mutex<State>, script: &Script, options: &Options) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    writeln_crlf(&mut out, "220 script.test ESMTP")?;
    let mut rcpt = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let mut ext = vec!["250-script.test", "250-8BITMIME"];
            if options.smtputf8 {
                ext.push("250-SMTPUTF8");
            }
            if options.pipelining {
                ext.push("250-PIPELINING");
            }
            if options.starttls {
                ext.push("250-STARTTLS");
            }
            if options.auth {
                ext.push("250-AUTH PLAIN LOGIN");
            }
            ext.push("250 SIZE 10000000");
            ext.join("\r\n")
        } else if upper.starts_with("AUTH") {
            match answer(state, script, Stage::Auth, "")? {
                Some(r) => r,
                None => return Ok(()),
            }
        } else if upper.starts_with("MAIL") {
            // The next command already waiting: the client pipelined.
            if !input.buffer().is_empty() {
                state.lock().unwrap().pipelined += 1;
            }
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT") {
            rcpt = cmd.split(['<', '>']).nth(1).unwrap_or("").to_owned();
            match answer(state, script, Stage::Rcpt, &rcpt)? {
                Some(r) => r,
                None => return Ok(()),
            }
        } else if upper == "DATA" {
            writeln_crlf(&mut out, "354 End data with <CR><LF>.<CR><LF>")?;
            let mut data = String::new();
            loop {
                line.clear();
                if input.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            match answer(state, script, Stage::Dot, &rcpt)? {
                Some(r) => {
                    if r.starts_with('2') {
                        state.lock().unwrap().accepted.push((rcpt.clone(), data));
                    }
                    r
                }
                None => return Ok(()),
            }
        } else if upper == "QUIT" {
            writeln_crlf(&mut out, "221 2.0.0 Bye")?;
            return Ok(());
        } else {
            "250 2.0.0 Ok".into()
        };
        writeln_crlf(&mut out, &reply)?;
    }
}

/// The scripted reply, or None to drop the connection.
fn answer(state: &Mutex<State>, script: &Script, stage: Stage, rcpt: &str) -> std::io::Result<Option<String>> {
    let attempt = {
        let mut s = state.lock().unwrap();
        let n = s.seen.entry((stage, rcpt.to_owned())).or_default();
        *n += 1;
        *n
    };
    let mut reply = script(stage, rcpt, attempt);
    loop {
        return Ok(match reply {
            Reply::Ok => Some(match stage {
                Stage::Auth => "235 2.7.0 Authentication successful".into(),
                Stage::Rcpt => "250 2.1.5 Ok".into(),
                Stage::Dot => "250 2.0.0 Ok: queued".into(),
            }),
            Reply::Code(code, text) => Some(format!("{code} {text}")),
            Reply::Drop => None,
            Reply::Delay(d, next) => {
                std::thread::sleep(d);
                reply = *next;
                continue;
            }
        });
    }
}

fn writeln_crlf(out: &mut TcpStream, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.write_all(b"\r\n")?;
    out.flush()
}
