//! SMTP connections we open ourselves: TCP_NODELAY set (lettre 0.11 does not, which caps a
//! connection at about 23 messages a second), STARTTLS or implicit TLS through rustls, login,
//! and one connection per sender so that concurrency is capped by us.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use lettre::AsyncTransport;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::rustls;

use crate::config::{Security, Smtp};

pub const PASSWORD_VAR: &str = "NEWSLETTER_SMTP_PASSWORD";

/// Why no connection could be made. Each says what to check.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("smtp.host is not set: add it to newsletter.yaml or set NEWSLETTER_SMTP_HOST")]
    NoHost,
    #[error(
        "smtp.security is `none` but {host} is not a loopback address: use starttls or tls, so that mail and password are encrypted"
    )]
    PlaintextRemote { host: String },
    #[error("smtp.username is set but {PASSWORD_VAR} is not: set the password in the environment")]
    NoPassword,
    #[error("cannot connect to {server}: {detail}; check smtp.host and smtp.port")]
    Connect { server: String, detail: String },
    #[error("{server} did not answer within {seconds}s; check smtp.host, smtp.port and the firewall")]
    Timeout { server: String, seconds: u64 },
    #[error(
        "{server} does not offer STARTTLS; set smtp.security to tls (usually port 465), or to none for a loopback test server"
    )]
    NoStarttls { server: String },
    #[error("TLS with {server} failed: {detail}; check smtp.security (starttls for port 587, tls for 465)")]
    Tls { server: String, detail: String },
    #[error("{server} refused the connection: {detail}")]
    Greeting { server: String, detail: String },
    #[error("{server} refused the login of `{user}`: {detail}; check smtp.username and {PASSWORD_VAR}")]
    Auth {
        server: String,
        user: String,
        detail: String,
    },
}

/// The outcome of one message that was not accepted. The caller decides by the variant:
/// a temporary failure is retried, a permanent one is reported and the send goes on.
#[derive(Debug, Error, Clone)]
pub enum SendError {
    /// A 4xx reply: try again later.
    #[error("{reply}")]
    Transient { reply: String },
    /// A 5xx reply: this recipient will not get the message.
    #[error("{reply}")]
    Permanent { reply: String },
    /// The connection broke or timed out; the message may be retried on a new connection.
    #[error("{detail}")]
    Connection { detail: String },
}

impl SendError {
    pub fn is_transient(&self) -> bool {
        !matches!(self, SendError::Permanent { .. })
    }

    pub fn reply(&self) -> String {
        self.to_string()
    }
}

/// Everything needed to open a connection; shared by all senders.
pub struct Connector {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<(String, Credentials)>,
    hello: ClientId,
    timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Connector {
    /// Checks the SMTP settings; the password is read from the environment here.
    pub fn new(smtp: &Smtp, password: Option<String>) -> Result<Connector, ConnectError> {
        let host = smtp
            .host
            .clone()
            .filter(|h| !h.trim().is_empty())
            .ok_or(ConnectError::NoHost)?;
        if smtp.security == Security::None && !is_loopback(&host) {
            return Err(ConnectError::PlaintextRemote { host });
        }
        let credentials = match (&smtp.username, password) {
            (Some(user), Some(pass)) => Some((user.clone(), Credentials::new(user.clone(), pass))),
            (Some(_), None) => return Err(ConnectError::NoPassword),
            (None, _) => None,
        };
        let tls = (smtp.security == Security::Tls).then(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        });
        Ok(Connector {
            hello: smtp.hello_name.clone().map_or_else(ClientId::default, ClientId::Domain),
            port: smtp.port,
            security: smtp.security,
            credentials,
            timeout: smtp.timeout,
            tls,
            host,
        })
    }

    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one step of opening a connection within the timeout; `fail` says what failed.
    async fn step<T, E: std::fmt::Display>(
        &self,
        future: impl std::future::Future<Output = Result<T, E>>,
        fail: impl FnOnce(String, String) -> ConnectError,
    ) -> Result<T, ConnectError> {
        match tokio::time::timeout(self.timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(fail(self.server(), e.to_string())),
            Err(_) => Err(ConnectError::Timeout {
                server: self.server(),
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    /// Opens, secures and authenticates one connection.
    pub async fn connect(&self) -> Result<Session, ConnectError> {
        let tls_error = |server, detail| ConnectError::Tls { server, detail };
        let tcp = self
            .step(TcpStream::connect((self.host.as_str(), self.port)), |server, detail| {
                ConnectError::Connect { server, detail }
            })
            .await?;
        // Without it every message waits for the peer's delayed ACK (40 ms).
        tcp.set_nodelay(true).map_err(|e| ConnectError::Connect {
            server: self.server(),
            detail: e.to_string(),
        })?;

        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| tls_error(self.server(), e.to_string()))?;
                Box::new(TlsStream(self.step(tls.connect(name, tcp), tls_error).await?))
            }
            None => Box::new(tcp),
        };
        let mut conn = self
            .step(
                AsyncSmtpConnection::connect_with_transport(stream, &self.hello),
                |server, detail| ConnectError::Greeting { server, detail },
            )
            .await?;
        if self.security == Security::Starttls {
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(ConnectError::NoStarttls { server: self.server() });
            }
            let params = TlsParameters::new(self.host.clone()).map_err(|e| tls_error(self.server(), e.to_string()))?;
            self.step(conn.starttls(params, &self.hello), tls_error).await?;
        }
        // lettre does not keep whether the server offers PIPELINING; ask once per connection.
        let ehlo = self
            .step(conn.command(Ehlo::new(self.hello.clone())), |server, detail| {
                ConnectError::Greeting { server, detail }
            })
            .await?;
        let pipelining = ehlo
            .message()
            .any(|line| line.trim().eq_ignore_ascii_case("PIPELINING"));
        if let Some((user, credentials)) = &self.credentials {
            let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials);
            self.step(auth, |server, detail| ConnectError::Auth {
                server,
                user: user.clone(),
                detail,
            })
            .await?;
        }
        Ok(Session { conn, pipelining })
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An open, secured and authenticated connection.
pub struct Session {
    conn: AsyncSmtpConnection,
    /// The server takes MAIL, RCPT and DATA in one write (RFC 2920).
    pipelining: bool,
}

/// One sender's SMTP connection, opened on first use and again after it breaks. As a lettre
/// `AsyncTransport`, the delivery loop can use it or any other transport alike.
pub struct SmtpConnection {
    connector: Arc<Connector>,
    session: Mutex<Option<Session>>,
}

impl SmtpConnection {
    pub fn new(connector: Arc<Connector>, session: Option<Session>) -> SmtpConnection {
        SmtpConnection {
            connector,
            session: Mutex::new(session),
        }
    }
}

#[async_trait]
impl AsyncTransport for SmtpConnection {
    type Ok = Response;
    type Error = SendError;

    async fn send_raw(&self, envelope: &Envelope, email: &[u8]) -> Result<Response, SendError> {
        let mut slot = self.session.lock().await;
        if slot.is_none() {
            let session = self
                .connector
                .connect()
                .await
                .map_err(|e| SendError::Connection { detail: e.to_string() })?;
            *slot = Some(session);
        }
        let session = slot.as_mut().expect("connected above");
        let result = tokio::time::timeout(self.connector.timeout, transaction(session, envelope, email)).await;
        let outcome = match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent { reply: e.to_string() }),
            // Refused by our own client before sending, e.g. a non-ASCII address to a server
            // without SMTPUTF8: retrying cannot help.
            Ok(Err(e)) if e.is_client() => Err(SendError::Permanent { reply: e.to_string() }),
            Ok(Err(e)) if e.is_transient() => Err(SendError::Transient { reply: e.to_string() }),
            Ok(Err(e)) => Err(SendError::Connection {
                detail: format!("connection lost: {e}"),
            }),
            Err(_) => Err(SendError::Connection {
                detail: format!("no reply within {}s", self.connector.timeout.as_secs()),
            }),
        };
        // After a failure the connection may be out of step (a pipelined group, a timeout):
        // close it; the next message opens a new one.
        if outcome.is_err()
            && let Some(mut session) = slot.take()
            && !session.conn.has_broken()
        {
            session.conn.abort().await;
        }
        outcome
    }

    async fn shutdown(&self) {
        if let Some(mut session) = self.session.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), session.conn.quit()).await;
        }
    }
}

/// One SMTP transaction: MAIL, RCPT, DATA and the message. lettre's `send` does the same but
/// waits for each reply in turn, dot-stuffs the message byte by byte and writes the final dot
/// separately. Here MAIL, RCPT and DATA go out in one write when the server offers PIPELINING
/// (two round trips a message instead of four), and the message, which needs no stuffing (no
/// line starts with a dot: see `personalize::quoted_printable`), goes out with its final dot.
async fn transaction(
    session: &mut Session,
    envelope: &Envelope,
    email: &[u8],
) -> Result<Response, lettre::transport::smtp::Error> {
    let conn = &mut session.conn;
    let ascii_addresses = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .all(|a| AsRef::<str>::as_ref(a).is_ascii());
    let payload = match std::str::from_utf8(email) {
        Ok(text) if ascii_addresses && !email.starts_with(b".") && memchr::memmem::find(email, b"\n.").is_none() => {
            text
        }
        // lettre's send stuffs dots, and checks SMTPUTF8 for non-ASCII addresses.
        _ => return conn.send(envelope, email).await,
    };
    let mut mail_params = Vec::new();
    if !email.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        mail_params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(envelope.from().cloned(), mail_params);
    let rcpts = envelope.to().iter().map(|to| Rcpt::new(to.clone(), Vec::new()));
    if session.pipelining {
        let group: String = std::iter::once(mail.to_string())
            .chain(rcpts.map(|r| r.to_string()))
            .chain([Data.to_string()])
            .collect();
        // One reply per command, in order; the first refusal decides (the connection is
        // closed after it, so the replies still unread do not matter).
        conn.command(group).await?;
        // Then the RCPT replies and DATA's 354.
        for _ in 0..=envelope.to().len() {
            conn.read_response().await?;
        }
    } else {
        conn.command(mail).await?;
        for rcpt in rcpts {
            conn.command(rcpt).await?;
        }
        conn.command(Data).await?;
    }
    conn.command(Payload(payload)).await
}

/// The message followed by the end-of-data line, written as one "command".
struct Payload<'a>(&'a str);

impl std::fmt::Display for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        f.write_str(if self.0.ends_with("\r\n") { ".\r\n" } else { "\r\n.\r\n" })
    }
}

/// Implicit TLS on our own socket (lettre's own TLS connect would not set TCP_NODELAY).
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}
