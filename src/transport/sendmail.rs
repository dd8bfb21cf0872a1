//! The local MTA's `sendmail` program as a way out (`kind: sendmail`): the classic hand-over
//! of Postfix, Exim, OpenSMTPD and Sendmail itself, which then relay as they are configured.
//! `COMMAND -i -f SENDER -- RECIPIENT` with the message on standard input; the exit code says
//! what happened, as sysexits.h defines it, and standard error is kept as the reply.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use lettre::address::Envelope;
use tokio::io::AsyncWriteExt;

use crate::config::Smtp;
use crate::transport::{Accepted, Fault, Reached, Relay, SendError, Stage, Transport, Unreachable};

/// `sendmail.command` when none is given.
pub const DEFAULT_COMMAND: &str = "/usr/sbin/sendmail";

/// The most of standard error kept as the reply.
const MAX_REPLY: usize = 2000;

#[derive(Clone)]
pub struct Sendmail {
    command: PathBuf,
    timeout: Duration,
}

impl Sendmail {
    pub fn new(relay: &Smtp) -> Sendmail {
        Sendmail {
            command: relay.command.clone().unwrap_or_else(|| DEFAULT_COMMAND.into()),
            timeout: relay.timeout,
        }
    }

    /// Whether the program is there to run, said before any message.
    fn check(&self) -> Result<(), Unreachable> {
        match std::fs::metadata(&self.command) {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(Unreachable(format!("{} is not a program", self.command.display()))),
            Err(e) => Err(Unreachable(format!(
                "cannot run {}: {e}; install the local MTA (Postfix's, Exim's or OpenSMTPD's sendmail) or set smtp.command",
                self.command.display()
            ))),
        }
    }
}

#[async_trait]
impl Relay for Sendmail {
    fn transport(&self) -> Box<dyn Transport> {
        Box::new(self.clone())
    }

    async fn reach(&self) -> Result<Reached, Unreachable> {
        self.check()?;
        Ok(Reached {
            first: self.transport(),
            max_rate: None,
        })
    }
}

#[async_trait]
impl Transport for Sendmail {
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Accepted, SendError> {
        let sender = envelope.from().map(ToString::to_string).unwrap_or_default();
        let mut child = tokio::process::Command::new(&self.command)
            // -i: a line of a single dot is not the end; -f: the envelope sender (bounces).
            .arg("-i")
            .arg("-f")
            .arg(if sender.is_empty() { "<>" } else { &sender })
            .arg("--")
            .args(envelope.to().iter().map(ToString::to_string))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| relay_trouble(None, format!("cannot run {}: {e}", self.command.display())))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let run = async {
            // A program that exits early closes its input: its exit code says why.
            let _ = stdin.write_all(message).await;
            drop(stdin);
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(SendError::connection(format!("{}: {e}", self.command.display()))),
            Err(_) => {
                return Err(SendError::connection(format!(
                    "{} did not finish within {}s",
                    self.command.display(),
                    self.timeout.as_secs()
                )));
            }
        };
        let said: String = String::from_utf8_lossy(&output.stderr)
            .trim()
            .chars()
            .take(MAX_REPLY)
            .collect();
        let Some(code) = output.status.code() else {
            return Err(SendError::connection(format!(
                "{} was killed: {said}",
                self.command.display()
            )));
        };
        let detail = if said.is_empty() {
            format!("sendmail exit {code} ({})", sysexit_name(code))
        } else {
            format!("sendmail exit {code} ({}): {said}", sysexit_name(code))
        };
        let recipient = envelope.to().first().map(ToString::to_string);
        let refused = |permanent, stage, fault| {
            let mut error = SendError::refused(
                permanent,
                stage,
                u16::try_from(code).ok(),
                detail.clone(),
                recipient.as_deref(),
            );
            error.fault = fault;
            error
        };
        match code {
            0 => Ok(Accepted {
                reply: if said.is_empty() {
                    "sendmail: accepted".into()
                } else {
                    said
                },
            }),
            // EX_NOUSER: the recipient does not exist.
            67 => Err(refused(true, Stage::Recipient, Fault::Mailbox)),
            // EX_NOHOST: its domain does not exist.
            68 => Err(refused(true, Stage::Recipient, Fault::Recipient)),
            // EX_DATAERR: the message.
            65 => Err(refused(true, Stage::Message, Fault::Message)),
            // EX_USAGE, EX_UNAVAILABLE, EX_NOPERM: the program will not take mail from us.
            64 | 69 | 77 => Err(refused(true, Stage::Sender, Fault::Sender)),
            // EX_TEMPFAIL, EX_SOFTWARE, EX_OSERR, EX_OSFILE, EX_CANTCREAT, EX_IOERR, EX_CONFIG
            // and anything else: the local MTA's trouble, worth a retry; a few in a row take
            // it out of the rotation.
            _ => Err(relay_trouble(u16::try_from(code).ok(), detail)),
        }
    }
}

fn relay_trouble(code: Option<u16>, detail: String) -> SendError {
    let mut error = SendError::connection(detail);
    error.fault = Fault::Relay;
    error.code = code;
    error
}

/// sysexits.h's name of an exit code.
fn sysexit_name(code: i32) -> &'static str {
    match code {
        0 => "EX_OK",
        64 => "EX_USAGE",
        65 => "EX_DATAERR",
        66 => "EX_NOINPUT",
        67 => "EX_NOUSER",
        68 => "EX_NOHOST",
        69 => "EX_UNAVAILABLE",
        70 => "EX_SOFTWARE",
        71 => "EX_OSERR",
        72 => "EX_OSFILE",
        73 => "EX_CANTCREAT",
        74 => "EX_IOERR",
        75 => "EX_TEMPFAIL",
        76 => "EX_PROTOCOL",
        77 => "EX_NOPERM",
        78 => "EX_CONFIG",
        _ => "not in sysexits.h",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `sendmail` that records its arguments and input, and exits with `code`.
    fn fake(dir: &std::path::Path, code: i32) -> Sendmail {
        let script = dir.join(format!("sendmail-{code}"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" > {0}/args\ncat > {0}/input\necho 'said so' >&2\nexit {code}\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Sendmail::new(&Smtp {
            command: Some(script),
            ..Smtp::default()
        })
    }

    fn envelope() -> Envelope {
        Envelope::new(
            Some("bounces@lists.example.org".parse().unwrap()),
            vec!["reader@example.org".parse().unwrap()],
        )
        .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn exit_codes_are_facts_as_sysexits_says() {
        let dir = tempfile::tempdir().unwrap();
        let accepted = fake(dir.path(), 0)
            .send(&envelope(), b"Subject: x\r\n\r\n.\r\nbody\r\n")
            .await
            .unwrap();
        assert_eq!(accepted.reply, "said so");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("args")).unwrap().trim(),
            "-i -f bounces@lists.example.org -- reader@example.org"
        );
        assert_eq!(
            std::fs::read(dir.path().join("input")).unwrap(),
            b"Subject: x\r\n\r\n.\r\nbody\r\n"
        );
        for (code, permanent, fault) in [
            (75, false, Fault::Relay),
            (67, true, Fault::Mailbox),
            (68, true, Fault::Recipient),
            (65, true, Fault::Message),
            (69, true, Fault::Sender),
            (71, false, Fault::Relay),
        ] {
            let e = fake(dir.path(), code).send(&envelope(), b"x").await.unwrap_err();
            assert_eq!(
                (e.permanent, e.fault, e.code),
                (permanent, fault, Some(code as u16)),
                "{code}: {e}"
            );
            assert!(e.detail.contains("said so"), "{e}");
        }
        let missing = Sendmail::new(&Smtp {
            command: Some(dir.path().join("none")),
            ..Smtp::default()
        });
        assert!(missing.check().unwrap_err().0.contains("cannot run"));
        let e = missing.send(&envelope(), b"x").await.unwrap_err();
        assert_eq!((e.permanent, e.fault), (false, Fault::Relay));
    }
}
