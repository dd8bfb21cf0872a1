//! The ways out. Every kind of relay (an SMTP server, Amazon SES's API, the local MTA's
//! `sendmail` program) implements [`Transport`]: it takes an envelope and the message's bytes
//! and answers what was accepted, or a [`SendError`] that states as facts, filled in by the
//! transport that saw the reply, whether the failure is permanent, whose it is, at which
//! stage, and the reply's codes. The delivery engine decides from those facts alone and never
//! reads a reply's text. Each kind is a [`Relay`] that makes transports; `relay` is the one
//! place that knows the kinds.
//!
//! Adding a kind: its module here, its variant in `config::RelayKind` with its checks
//! (`config::RelayKind::check`), and its arm in `relay`.

pub mod sendmail;
pub mod ses;
pub mod smtp;
#[cfg(test)]
pub mod stub;

use anyhow::{Context, Result};
use async_trait::async_trait;
use lettre::address::Envelope;

use crate::config::{Config, RelayKind, Smtp};

/// A way out for messages.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Hands one message over; `Ok` once the relay has taken responsibility for it.
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Accepted, SendError>;

    /// Ends the session politely (SMTP's QUIT); nothing by default.
    async fn shutdown(&self) {}
}

/// What a relay said when it took a message, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `250 2.0.0 Ok: queued as 4bX`, `SES message 0100...`, `sendmail: accepted`.
    pub reply: String,
}

/// The command or step a failure answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reaching the relay: connecting, TLS, login, or the connection breaking.
    Connection,
    /// The envelope's sender (MAIL FROM).
    Sender,
    /// The recipient (RCPT TO).
    Recipient,
    /// DATA, or the message after it.
    Message,
    /// Refused by us before anything was sent, for this recipient only.
    Local,
}

/// Whose trouble a failure is, which decides what the engine does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The recipient's mailbox does not exist: the reader is suppressed (through the guard).
    Mailbox,
    /// This recipient only (a full mailbox, a policy, greylisting).
    Recipient,
    /// This message (its size, its content).
    Message,
    /// The envelope's sender: every message would meet it.
    Sender,
    /// The relay itself (421, a temporary failure of its own, a missing program): a few in a
    /// row take it out of the rotation.
    Relay,
    /// No connection, no reply, a broken session: tried again, and a few in a row take the
    /// relay out.
    Connection,
    /// The relay has too many connections from us: fewer are used.
    Busy,
    /// The relay asks us to slow down: the message waits and goes again, never counted
    /// against the reader.
    Throttled,
    /// Refused by us before sending (an address the server cannot take).
    Local,
}

/// A message that was not accepted, as facts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct SendError {
    /// Trying again will not help.
    pub permanent: bool,
    pub fault: Fault,
    pub stage: Stage,
    /// The reply's basic code (SMTP's 550, the HTTP status of an API, sendmail's exit code).
    pub code: Option<u16>,
    /// The enhanced status code (RFC 3463), `5.1.1`.
    pub enhanced: Option<String>,
    /// What the relay said or what happened, for people and the ledger.
    pub detail: String,
    /// `detail` with the recipient's address taken out: equal for the same refusal given to
    /// different recipients (a relay refusing everyone alike).
    pub refusal: String,
}

impl SendError {
    /// A failure to reach the relay or to keep the session.
    pub fn connection(detail: impl Into<String>) -> SendError {
        SendError::of(false, Fault::Connection, Stage::Connection, detail.into())
    }

    pub fn busy(detail: impl Into<String>) -> SendError {
        SendError::of(false, Fault::Busy, Stage::Connection, detail.into())
    }

    pub fn throttled(detail: impl Into<String>) -> SendError {
        SendError::of(false, Fault::Throttled, Stage::Message, detail.into())
    }

    /// Refused by us before sending, for this recipient only.
    pub fn local(detail: impl Into<String>) -> SendError {
        SendError::of(true, Fault::Local, Stage::Local, detail.into())
    }

    /// A relay's refusal at `stage`, whose fault follows from the facts: the relay's own
    /// trouble (421), the sender, a mailbox that does not exist, or else the stage's.
    pub fn refused(
        permanent: bool,
        stage: Stage,
        code: Option<u16>,
        detail: String,
        recipient: Option<&str>,
    ) -> SendError {
        let enhanced = enhanced_code(&detail);
        let fault = if code == Some(421) {
            Fault::Relay
        } else if stage == Stage::Sender {
            Fault::Sender
        } else if permanent && smtp::reply::mailbox_does_not_exist(&detail) {
            Fault::Mailbox
        } else if stage == Stage::Message {
            Fault::Message
        } else {
            Fault::Recipient
        };
        let refusal = match recipient {
            Some(r) => smtp::reply::without_recipient(&detail, r),
            None => detail.to_lowercase(),
        };
        SendError {
            permanent,
            fault,
            stage,
            code,
            enhanced,
            detail,
            refusal,
        }
    }

    fn of(permanent: bool, fault: Fault, stage: Stage, detail: String) -> SendError {
        SendError {
            permanent,
            fault,
            stage,
            code: None,
            enhanced: None,
            refusal: detail.to_lowercase(),
            detail,
        }
    }

    pub fn is_transient(&self) -> bool {
        !self.permanent
    }

    /// The relay's trouble rather than the message's: a few in a row take it out.
    pub fn is_relays(&self) -> bool {
        matches!(self.fault, Fault::Relay | Fault::Connection | Fault::Busy)
    }

    pub fn reply(&self) -> String {
        self.detail.clone()
    }
}

/// The first enhanced status code (RFC 3463: class.subject.detail) in a reply.
fn enhanced_code(reply: &str) -> Option<String> {
    reply
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .find_map(|word| {
            let mut parts = word.trim_end_matches([':', ';', '.']).split('.');
            let class = parts.next()?;
            let subject = parts.next()?;
            let detail = parts.next()?;
            let ok = matches!(class, "2" | "4" | "5")
                && (1..=3).contains(&subject.len())
                && (1..=3).contains(&detail.len())
                && subject.bytes().chain(detail.bytes()).all(|b| b.is_ascii_digit())
                && parts.next().is_none();
            ok.then(|| format!("{class}.{subject}.{detail}"))
        })
}

/// Why a relay cannot be used now (no connection, no credentials, no program), for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

impl From<String> for Unreachable {
    fn from(s: String) -> Self {
        Unreachable(s)
    }
}

impl From<&str> for Unreachable {
    fn from(s: &str) -> Self {
        Unreachable(s.to_owned())
    }
}

impl From<ses::aws::CredentialsError> for Unreachable {
    fn from(e: ses::aws::CredentialsError) -> Self {
        Unreachable(e.0)
    }
}

/// One configured relay of any kind: it makes transports, and can be reached once before
/// the first message to show a refusal, a TLS or a login failure early.
#[async_trait]
pub trait Relay: Send + Sync {
    /// A transport that reaches the relay on its first message.
    fn transport(&self) -> Box<dyn Transport>;

    /// Reaches the relay once (an SMTP relay's first connection, SES's sending quota, the
    /// `sendmail` program's presence).
    async fn reach(&self) -> Result<Reached, Unreachable>;
}

/// A relay reached: the transport that reached it, and the rate its account allows.
pub struct Reached {
    pub first: Box<dyn Transport>,
    /// The most messages a second the relay's own account takes (SES's MaxSendRate).
    pub max_rate: Option<f64>,
}

/// The relay `relay` configures; `None` for an SMTP relay without a host. The one `match` on
/// the kind of relay.
fn relay(config: &Config, relay: &Smtp) -> Result<Option<Box<dyn Relay>>> {
    Ok(Some(match relay.kind {
        RelayKind::Smtp => match smtp::connector(config, relay) {
            Ok(connector) => Box::new(smtp::SmtpRelay::new(connector)),
            Err(smtp::connect::ConnectError::NoHost) => return Ok(None),
            Err(e) => return Err(e.into()),
        },
        RelayKind::Ses => Box::new(ses::Ses::new(relay).map_err(|e| anyhow::anyhow!(e))?),
        RelayKind::Sendmail => Box::new(sendmail::Sendmail::new(relay)),
    }))
}

/// One relay, ready to send: `count` transports (one per connection), and the rate its
/// account allows.
pub struct Opened {
    pub transports: Vec<Box<dyn Transport>>,
    pub max_rate: Option<f64>,
}

/// Opens `relay` for `count` senders, reaching it once so that a refusal, a TLS or a login
/// failure shows before any message. `Err` of the outer result: the configuration is wrong;
/// of the inner: the relay cannot be reached now.
pub async fn open(config: &Config, relay_config: &Smtp, count: usize) -> Result<Result<Opened, Unreachable>> {
    let relay = relay(config, relay_config)?.ok_or(smtp::connect::ConnectError::NoHost)?;
    Ok(relay.reach().await.map(|reached| {
        let mut transports = vec![reached.first];
        transports.extend((1..count.max(1)).map(|_| relay.transport()));
        Opened {
            transports,
            max_rate: reached.max_rate,
        }
    }))
}

/// One transport to the first relay, for mail sent one at a time (sign-up confirmations),
/// reaching it on first use; `None` when no relay is configured.
pub fn first(config: &Config) -> Result<Option<Box<dyn Transport>>> {
    Ok(relay(config, config.smtp.first())
        .context("the first relay")?
        .map(|relay| relay.transport()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facts_of_a_refusal() {
        let dead = SendError::refused(
            true,
            Stage::Recipient,
            Some(550),
            "550 5.1.1 <a@x.org>: Recipient address rejected: User unknown".into(),
            Some("a@x.org"),
        );
        assert_eq!((dead.fault, dead.enhanced.as_deref()), (Fault::Mailbox, Some("5.1.1")));
        assert_eq!(dead.refusal, "550 5.1.1 <<>>: recipient address rejected: user unknown");
        let busy = SendError::refused(false, Stage::Recipient, Some(421), "421 4.7.0 try later".into(), None);
        assert!(busy.is_relays() && !busy.permanent);
        let sender = SendError::refused(true, Stage::Sender, Some(553), "553 5.7.1 sender rejected".into(), None);
        assert_eq!(sender.fault, Fault::Sender);
        let policy = SendError::refused(
            true,
            Stage::Recipient,
            Some(554),
            "554 5.7.1 <b@x.org>: Relay access denied".into(),
            Some("b@x.org"),
        );
        assert_eq!(policy.fault, Fault::Recipient);
        assert_eq!(enhanced_code("(5.2.1) over quota"), Some("5.2.1".into()));
        assert_eq!(enhanced_code("version 1.2.3 here"), None);
    }
}
