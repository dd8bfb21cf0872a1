//! Sending over a connection: one transaction per message (MAIL, RCPT, DATA pipelined when
//! offered), refusals sorted by what they mean, and one connection per sender so that
//! concurrency is capped by us.

pub mod connect;
pub mod oauth;
pub mod reply;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::sync::Mutex;

use self::connect::{ConnectError, Connector, SmtpSession};
use self::reply::too_many_connections;
use crate::config::{Config, Smtp};
use crate::transport::{Accepted, Reached, Relay, SendError, Stage, Transport, Unreachable};

/// The relay's connector, its secrets read from the environment (`_NAME` appended in a
/// pool: `NEWSLETTER_SMTP_PASSWORD_BACKUP`).
pub fn connector(config: &Config, relay: &Smtp) -> Result<Connector, ConnectError> {
    let pooled = config.smtp.pooled;
    Connector::new(relay, |var| crate::config::secret(&relay.secret_var(var, pooled)))
}

/// An SMTP relay: its connector, shared by the connections to it.
pub struct SmtpRelay(Arc<Connector>);

impl SmtpRelay {
    pub fn new(connector: Connector) -> SmtpRelay {
        SmtpRelay(Arc::new(connector))
    }
}

#[async_trait]
impl Relay for SmtpRelay {
    fn transport(&self) -> Box<dyn Transport> {
        Box::new(SmtpConnection::new(Arc::clone(&self.0), None))
    }

    async fn reach(&self) -> Result<Reached, Unreachable> {
        let first = self.0.connect().await.map_err(|e| Unreachable(e.to_string()))?;
        Ok(Reached {
            first: Box::new(SmtpConnection::new(Arc::clone(&self.0), Some(first))),
            max_rate: None,
        })
    }
}

/// One sender's SMTP connection, opened on first use and again after it breaks.
pub struct SmtpConnection {
    connector: Arc<Connector>,
    session: Mutex<Option<SmtpSession>>,
}

impl SmtpConnection {
    pub fn new(connector: Arc<Connector>, session: Option<SmtpSession>) -> SmtpConnection {
        SmtpConnection {
            connector,
            session: Mutex::new(session),
        }
    }
}

#[async_trait]
impl Transport for SmtpConnection {
    async fn send(&self, envelope: &Envelope, email: &[u8]) -> Result<Accepted, SendError> {
        let mut slot = self.session.lock().await;
        if slot.is_none() {
            let session = self.connector.connect().await.map_err(|e| match e {
                ConnectError::Busy { .. } => SendError::busy(e.to_string()),
                ConnectError::Greeting { ref detail, .. } if too_many_connections(detail) => {
                    SendError::busy(e.to_string())
                }
                _ => SendError::connection(e.to_string()),
            })?;
            *slot = Some(session);
        }
        let session = slot.as_mut().expect("connected above");
        let outcome = match tokio::time::timeout(self.connector.timeout(), transaction(session, envelope, email)).await
        {
            Ok(result) => result,
            Err(_) => Err(SendError::connection(format!(
                "no reply within {}s",
                self.connector.timeout().as_secs()
            ))),
        };
        // After a failure the connection may be out of step (a pipelined group, a timeout):
        // close it; the next message opens a new one.
        if outcome.is_err()
            && let Some(mut session) = slot.take()
            && !session.conn.has_broken()
        {
            session.conn.abort().await;
        }
        outcome.map(|response| Accepted {
            reply: format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            ),
        })
    }

    async fn shutdown(&self) {
        if let Some(mut session) = self.session.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), session.conn.quit()).await;
        }
    }
}

/// A refusal from lettre at `stage`, as facts.
fn classify(stage: Stage, envelope: &Envelope, e: lettre::transport::smtp::Error) -> SendError {
    let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
    let recipient = envelope.to().first().map(|a| a.to_string());
    if e.is_permanent() || e.is_transient() {
        let reply = e.to_string();
        if e.is_transient() && too_many_connections(&reply) {
            return SendError::busy(reply);
        }
        SendError::refused(e.is_permanent(), stage, code, reply, recipient.as_deref())
    } else if e.is_client() {
        SendError::local(e.to_string())
    } else {
        SendError::connection(format!("connection lost: {e}"))
    }
}

/// One SMTP transaction: MAIL, RCPT, DATA and the message. lettre's `send` does the same but
/// waits for each reply in turn, dot-stuffs the message byte by byte and writes the final dot
/// separately. Here MAIL, RCPT and DATA go out in one write when the server offers PIPELINING
/// (two round trips a message instead of four), and the message, which needs no stuffing (no
/// line starts with a dot: see `personalize::splice::quoted_printable`), goes out with its final dot.
async fn transaction(session: &mut SmtpSession, envelope: &Envelope, email: &[u8]) -> Result<Response, SendError> {
    let conn = &mut session.conn;
    let ascii_addresses = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .all(|a| AsRef::<str>::as_ref(a).is_ascii());
    let smtputf8 = conn.server_info().supports_feature(Extension::SmtpUtfEight);
    if !ascii_addresses && !smtputf8 {
        return Err(SendError::local(
            "the address has non-ASCII characters before the @, and the server does not accept such addresses (it does not offer SMTPUTF8, RFC 6531)",
        ));
    }
    let payload = match std::str::from_utf8(email) {
        Ok(text) if !email.starts_with(b".") && memchr::memmem::find(email, b"\n.").is_none() => text,
        // lettre's send stuffs dots.
        _ => {
            return conn
                .send(envelope, email)
                .await
                .map_err(|e| classify(Stage::Message, envelope, e));
        }
    };
    let mut mail_params = Vec::new();
    if !email.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        mail_params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    if !ascii_addresses {
        mail_params.push(MailParameter::SmtpUtfEight);
    }
    let mail = Mail::new(envelope.from().cloned(), mail_params);
    let rcpts = envelope.to().iter().map(|to| Rcpt::new(to.clone(), Vec::new()));
    let recipients = envelope.to().len();
    if session.pipelining {
        let group: String = std::iter::once(mail.to_string())
            .chain(rcpts.map(|r| r.to_string()))
            .chain([Data.to_string()])
            .collect();
        // One reply per command, in order; the first refusal decides (the connection is
        // closed after it, so the replies still unread do not matter).
        conn.command(group)
            .await
            .map_err(|e| classify(Stage::Sender, envelope, e))?;
        // Then the RCPT replies and DATA's 354.
        for i in 0..=recipients {
            let stage = if i < recipients {
                Stage::Recipient
            } else {
                Stage::Message
            };
            conn.read_response().await.map_err(|e| classify(stage, envelope, e))?;
        }
    } else {
        conn.command(mail)
            .await
            .map_err(|e| classify(Stage::Sender, envelope, e))?;
        for rcpt in rcpts {
            conn.command(rcpt)
                .await
                .map_err(|e| classify(Stage::Recipient, envelope, e))?;
        }
        conn.command(Data)
            .await
            .map_err(|e| classify(Stage::Message, envelope, e))?;
    }
    conn.command(Payload(payload))
        .await
        .map_err(|e| classify(Stage::Message, envelope, e))
}

/// The message followed by the end-of-data line, written as one "command".
struct Payload<'a>(&'a str);

impl std::fmt::Display for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        f.write_str(if self.0.ends_with("\r\n") { ".\r\n" } else { "\r\n.\r\n" })
    }
}
