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
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::rustls;

use super::oauth::Tokens;
use super::reply::too_many_connections;
use super::tls;
use crate::config::{AuthMethod, Security, Smtp};

pub const PASSWORD_VAR: &str = "NEWSLETTER_SMTP_PASSWORD";

/// How long a silent server is given before we try whether it speaks TLS instead (it then
/// waits for our handshake, while an SMTP server greets at once).
const PROBE_AFTER: Duration = Duration::from_secs(2);

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
    #[error("smtp.auth is xoauth2 but smtp.username is not set: give the mailbox the token is for")]
    NoOAuthUser,
    #[error("{0}")]
    Setup(String),
    #[error("cannot connect to {server}: {detail}; check smtp.host and smtp.port")]
    Connect { server: String, detail: String },
    #[error("{server} did not answer within {seconds}s; check smtp.host, smtp.port and the firewall")]
    Timeout { server: String, seconds: u64 },
    #[error(
        "{server} does not offer STARTTLS; set smtp.security to tls (usually port 465), or to none for a loopback test server"
    )]
    NoStarttls { server: String },
    #[error("TLS with {server} failed: {detail}")]
    Tls { server: String, detail: String },
    #[error("{server} refused the connection: {detail}")]
    Greeting { server: String, detail: String },
    /// 421 at the greeting, or a reply saying we hold too many connections.
    #[error("{server} turned the connection away: {detail}")]
    Busy { server: String, detail: String },
    #[error("{server} refused the login of `{user}`: {detail}")]
    Auth {
        server: String,
        user: String,
        detail: String,
    },
}

/// The command a refusal answered: a refusal of MAIL FROM is about the sender, never about
/// one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Sender,
    Recipient,
    /// DATA, or the message after it.
    Message,
    /// Refused by us before anything was sent, for this recipient only.
    Local,
}

/// The outcome of one message that was not accepted. The caller decides by the variant:
/// a temporary failure is retried, a permanent one is reported and the send goes on.
#[derive(Debug, Error, Clone)]
pub enum SendError {
    /// A 4xx reply: try again later.
    #[error("{reply}")]
    Transient { reply: String },
    /// A 5xx reply: this recipient will not get the message, unless the relay refuses
    /// everyone alike (see `run`).
    #[error("{reply}")]
    Permanent { reply: String, stage: Stage },
    /// The connection broke or timed out; the message may be retried on a new connection.
    #[error("{detail}")]
    Connection { detail: String },
    /// The server has too many connections from us: send over fewer.
    #[error("{detail}")]
    Busy { detail: String },
}

impl SendError {
    pub fn is_transient(&self) -> bool {
        !matches!(self, SendError::Permanent { .. })
    }

    pub fn reply(&self) -> String {
        self.to_string()
    }
}

enum Login {
    Password(Credentials),
    OAuth(Tokens),
}

/// Everything needed to open a connection; shared by all senders.
pub struct Connector {
    host: String,
    port: u16,
    security: Security,
    user: String,
    login: Option<Login>,
    hello: ClientId,
    timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Connector {
    /// Checks the SMTP settings; secrets are read from `env` (the environment) here.
    pub fn new(smtp: &Smtp, env: impl Fn(&str) -> Option<String>) -> Result<Connector, ConnectError> {
        let host = smtp
            .host
            .clone()
            .filter(|h| !h.trim().is_empty())
            .ok_or(ConnectError::NoHost)?;
        if smtp.security == Security::None && !is_loopback(&host) {
            return Err(ConnectError::PlaintextRemote { host });
        }
        let login = match (smtp.auth, &smtp.username) {
            (AuthMethod::Password, Some(user)) => {
                let password = env(PASSWORD_VAR).ok_or(ConnectError::NoPassword)?;
                Some(Login::Password(Credentials::new(user.clone(), password)))
            }
            (AuthMethod::Password, None) => None,
            (AuthMethod::Xoauth2, Some(_)) => Some(Login::OAuth(
                Tokens::from_config(smtp, env).map_err(ConnectError::Setup)?,
            )),
            (AuthMethod::Xoauth2, None) => return Err(ConnectError::NoOAuthUser),
        };
        let tls = match smtp.security {
            Security::None => None,
            Security::Starttls | Security::Tls => Some(tokio_rustls::TlsConnector::from(
                tls::client_config(smtp).map_err(ConnectError::Setup)?,
            )),
        };
        Ok(Connector {
            hello: smtp.hello_name.clone().map_or_else(ClientId::default, ClientId::Domain),
            port: smtp.port,
            security: smtp.security,
            user: smtp.username.clone().unwrap_or_default(),
            login,
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
    async fn step<T, E>(
        &self,
        future: impl std::future::Future<Output = Result<T, E>>,
        fail: impl FnOnce(String, E) -> ConnectError,
    ) -> Result<T, ConnectError> {
        match tokio::time::timeout(self.timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(fail(self.server(), e)),
            Err(_) => Err(ConnectError::Timeout {
                server: self.server(),
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    /// Waits for a server's greeting. A server still silent after a moment may be waiting
    /// for a TLS handshake (port 465 with `starttls`): a second connection tries one, so
    /// that a wrong mode is reported at once instead of after the whole timeout.
    async fn greeted<T>(
        &self,
        greeting: impl std::future::Future<Output = Result<T, ConnectError>>,
    ) -> Result<T, ConnectError> {
        let greeting = self.step(greeting, |_, e| e);
        tokio::pin!(greeting);
        tokio::select! {
            result = &mut greeting => return result,
            _ = tokio::time::sleep(PROBE_AFTER) => {}
        }
        if self.speaks_tls().await {
            return Err(ConnectError::Tls {
                server: self.server(),
                detail: format!("the server waits for TLS{}", tls::mode_hint(self.port, self.security)),
            });
        }
        greeting.await
    }

    /// Whether the server answers a TLS handshake (whatever it thinks of our certificate
    /// checks): only ever asked of a server that has not greeted us.
    async fn speaks_tls(&self) -> bool {
        let config = tls::client_config(&Smtp::default()).ok();
        let (Some(config), Ok(name)) = (config, rustls::pki_types::ServerName::try_from(self.host.clone())) else {
            return false;
        };
        let probe = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
        };
        match tokio::time::timeout(self.timeout.min(Duration::from_secs(5)), probe).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => e
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .is_some_and(|e| !matches!(e, rustls::Error::InvalidMessage(_))),
            Err(_) => false,
        }
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream, ConnectError> {
        let tls = self.tls.as_ref().expect("a TLS connector for a TLS mode");
        let tls_error = |server, detail| ConnectError::Tls { server, detail };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| tls_error(self.server(), format!("`{}` is not a host name: {e}", self.host)))?;
        let stream = self
            .step(tls.connect(name, tcp), |server, e| {
                tls_error(server, tls::explain(&e, &self.host, self.port, self.security))
            })
            .await?;
        Ok(TlsStream(stream))
    }

    /// The plain-text part of a STARTTLS session, ours rather than lettre's so that the
    /// handshake uses our trust settings and its errors can be explained.
    async fn starttls(&self, tcp: TcpStream) -> Result<TcpStream, ConnectError> {
        let mut reader = BufReader::new(tcp);
        let greeting = self.greeted(read_reply(&mut reader, self.server())).await?;
        self.check_greeting(greeting)?;
        let ehlo = self
            .plain_command(&mut reader, Ehlo::new(self.hello.clone()).to_string())
            .await?;
        if ehlo.0 != 250 {
            return Err(ConnectError::Greeting {
                server: self.server(),
                detail: ehlo.1,
            });
        }
        let offers = |keyword: &str| {
            ehlo.1
                .lines()
                .skip(1)
                .any(|l| l.get(4..).is_some_and(|k| k.trim().eq_ignore_ascii_case(keyword)))
        };
        if !offers("STARTTLS") {
            return Err(ConnectError::NoStarttls { server: self.server() });
        }
        let reply = self.plain_command(&mut reader, "STARTTLS\r\n".into()).await?;
        if reply.0 != 220 {
            return Err(ConnectError::Tls {
                server: self.server(),
                detail: format!("the server refused STARTTLS: {}", reply.1),
            });
        }
        // Anything sent before our handshake would be injected into the secure session.
        if !reader.buffer().is_empty() {
            return Err(ConnectError::Tls {
                server: self.server(),
                detail: "the server sent data before the TLS handshake (a sign of tampering on the way)".into(),
            });
        }
        Ok(reader.into_inner())
    }

    async fn plain_command(
        &self,
        reader: &mut BufReader<TcpStream>,
        line: String,
    ) -> Result<(u16, String), ConnectError> {
        let io_error = |server, e: io::Error| ConnectError::Connect {
            server,
            detail: e.to_string(),
        };
        self.step(reader.get_mut().write_all(line.as_bytes()), io_error).await?;
        self.step(read_reply(reader, self.server()), |_, e| e).await
    }

    fn check_greeting(&self, (code, text): (u16, String)) -> Result<(), ConnectError> {
        match code {
            220 => Ok(()),
            421 => Err(ConnectError::Busy {
                server: self.server(),
                detail: text,
            }),
            _ => Err(ConnectError::Greeting {
                server: self.server(),
                detail: text,
            }),
        }
    }

    /// Opens, secures and authenticates one connection.
    pub async fn connect(&self) -> Result<Session, ConnectError> {
        let tcp = self
            .step(TcpStream::connect((self.host.as_str(), self.port)), |server, e| {
                ConnectError::Connect {
                    server,
                    detail: e.to_string(),
                }
            })
            .await?;
        // Without it every message waits for the peer's delayed ACK (40 ms).
        tcp.set_nodelay(true).map_err(|e| ConnectError::Connect {
            server: self.server(),
            detail: e.to_string(),
        })?;
        let stream: Box<dyn AsyncTokioStream> = match self.security {
            Security::Tls => Box::new(self.handshake(tcp).await?),
            // The greeting was read before STARTTLS; lettre, which expects one, is given it again.
            Security::Starttls => Box::new(Greeted::new(self.handshake(self.starttls(tcp).await?).await?)),
            Security::None => Box::new(tcp),
        };
        let mut conn = self
            .greeted(async {
                AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
                    .await
                    .map_err(|e| match e.status() {
                        Some(code) if u16::from(code) == 421 => ConnectError::Busy {
                            server: self.server(),
                            detail: e.to_string(),
                        },
                        _ => ConnectError::Greeting {
                            server: self.server(),
                            detail: e.to_string(),
                        },
                    })
            })
            .await?;
        // lettre does not keep whether the server offers PIPELINING; ask once per connection.
        let ehlo = self
            .step(conn.command(Ehlo::new(self.hello.clone())), |server, e| {
                ConnectError::Greeting {
                    server,
                    detail: e.to_string(),
                }
            })
            .await?;
        let pipelining = ehlo
            .message()
            .any(|line| line.trim().eq_ignore_ascii_case("PIPELINING"));
        match &self.login {
            None => {}
            Some(Login::Password(credentials)) => {
                let info = conn.server_info();
                if ![Mechanism::Plain, Mechanism::Login]
                    .into_iter()
                    .any(|m| info.supports_auth_mechanism(m))
                {
                    return Err(ConnectError::Auth {
                        server: self.server(),
                        user: self.user.clone(),
                        detail: "the server offers neither AUTH PLAIN nor AUTH LOGIN (some servers offer a login only over TLS, or only XOAUTH2: see smtp.security and smtp.auth)".into(),
                    });
                }
                let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials);
                self.step(auth, |server, e| ConnectError::Auth {
                    server,
                    user: self.user.clone(),
                    detail: format!("{e}; check smtp.username and {PASSWORD_VAR}"),
                })
                .await?;
            }
            Some(Login::OAuth(tokens)) => {
                let token = tokens.token().await.map_err(ConnectError::Setup)?;
                let credentials = Credentials::new(self.user.clone(), token);
                let offered = conn.server_info().supports_auth_mechanism(Mechanism::Xoauth2);
                let auth = conn.auth(&[Mechanism::Xoauth2], &credentials);
                self.step(auth, |server, e| ConnectError::Auth {
                    server,
                    user: self.user.clone(),
                    detail: if offered {
                        // A refused token is answered with a challenge lettre does not expect.
                        format!("the access token was not accepted ({e}); check that it is for this mailbox and has the SMTP.Send permission")
                    } else {
                        "the server does not offer AUTH XOAUTH2; use smtp.auth: password".into()
                    },
                })
                .await?;
            }
        }
        Ok(Session { conn, pipelining })
    }
}

/// Reads one SMTP reply, possibly of several lines: its code and its text.
async fn read_reply(reader: &mut BufReader<TcpStream>, server: String) -> Result<(u16, String), ConnectError> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.map_err(|e| ConnectError::Connect {
            server: server.clone(),
            detail: e.to_string(),
        })?;
        if n == 0 {
            return Err(ConnectError::Greeting {
                server,
                detail: "the connection was closed without a reply".into(),
            });
        }
        let line = line.trim_end();
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let (Some(code), last) = (code, line.as_bytes().get(3) != Some(&b'-')) else {
            return Err(ConnectError::Greeting {
                server,
                detail: format!("not an SMTP reply: {line:?}"),
            });
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(line);
        if last {
            return Ok((code, text));
        }
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
            let session = self.connector.connect().await.map_err(|e| match e {
                ConnectError::Busy { .. } => SendError::Busy { detail: e.to_string() },
                ConnectError::Greeting { ref detail, .. } if too_many_connections(detail) => {
                    SendError::Busy { detail: e.to_string() }
                }
                _ => SendError::Connection { detail: e.to_string() },
            })?;
            *slot = Some(session);
        }
        let session = slot.as_mut().expect("connected above");
        let outcome = match tokio::time::timeout(self.connector.timeout, transaction(session, envelope, email)).await {
            Ok(result) => result,
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

/// A refusal from lettre, sorted by what it means for the run.
fn classify(stage: Stage, e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent {
            reply: e.to_string(),
            stage,
        }
    } else if e.is_transient() {
        let reply = e.to_string();
        if too_many_connections(&reply) {
            SendError::Busy { detail: reply }
        } else {
            SendError::Transient { reply }
        }
    } else if e.is_client() {
        SendError::Permanent {
            reply: e.to_string(),
            stage: Stage::Local,
        }
    } else {
        SendError::Connection {
            detail: format!("connection lost: {e}"),
        }
    }
}

/// One SMTP transaction: MAIL, RCPT, DATA and the message. lettre's `send` does the same but
/// waits for each reply in turn, dot-stuffs the message byte by byte and writes the final dot
/// separately. Here MAIL, RCPT and DATA go out in one write when the server offers PIPELINING
/// (two round trips a message instead of four), and the message, which needs no stuffing (no
/// line starts with a dot: see `personalize::quoted_printable`), goes out with its final dot.
async fn transaction(session: &mut Session, envelope: &Envelope, email: &[u8]) -> Result<Response, SendError> {
    let conn = &mut session.conn;
    let ascii_addresses = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .all(|a| AsRef::<str>::as_ref(a).is_ascii());
    let smtputf8 = conn.server_info().supports_feature(Extension::SmtpUtfEight);
    if !ascii_addresses && !smtputf8 {
        return Err(SendError::Permanent {
            reply: "the address has non-ASCII characters before the @, and the server does not accept such addresses (it does not offer SMTPUTF8, RFC 6531)".into(),
            stage: Stage::Local,
        });
    }
    let payload = match std::str::from_utf8(email) {
        Ok(text) if !email.starts_with(b".") && memchr::memmem::find(email, b"\n.").is_none() => text,
        // lettre's send stuffs dots.
        _ => {
            return conn
                .send(envelope, email)
                .await
                .map_err(|e| classify(Stage::Message, e));
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
        conn.command(group).await.map_err(|e| classify(Stage::Sender, e))?;
        // Then the RCPT replies and DATA's 354.
        for i in 0..=recipients {
            let stage = if i < recipients {
                Stage::Recipient
            } else {
                Stage::Message
            };
            conn.read_response().await.map_err(|e| classify(stage, e))?;
        }
    } else {
        conn.command(mail).await.map_err(|e| classify(Stage::Sender, e))?;
        for rcpt in rcpts {
            conn.command(rcpt).await.map_err(|e| classify(Stage::Recipient, e))?;
        }
        conn.command(Data).await.map_err(|e| classify(Stage::Message, e))?;
    }
    conn.command(Payload(payload))
        .await
        .map_err(|e| classify(Stage::Message, e))
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

/// A stream whose first bytes are a greeting already read: after our own STARTTLS, lettre
/// starts its session by reading one.
#[derive(Debug)]
struct Greeted {
    stream: TlsStream,
    greeting: &'static [u8],
}

impl Greeted {
    fn new(stream: TlsStream) -> Greeted {
        Greeted {
            stream,
            greeting: b"220 TLS established\r\n",
        }
    }
}

impl AsyncRead for Greeted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.greeting.is_empty() {
            let n = self.greeting.len().min(buf.remaining());
            buf.put_slice(&self.greeting[..n]);
            self.greeting = &self.greeting[n..];
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Greeted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Greeted {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }
}
