//! Opening a connection to the relay: TCP with TCP_NODELAY (lettre 0.11 leaves it off, which
//! caps a connection at about 23 messages a second), STARTTLS or implicit TLS through rustls
//! with our trust settings, and the login.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::ClientId;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::oauth::Tokens;
use super::streams::{Recorded, TLS_GREETING, TlsStream};
use crate::config::{AuthMethod, Security, Smtp};
use crate::net::tls;

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
    #[error("no SMTP greeting from {server} in {seconds} s: is this the SMTP port? check smtp.port")]
    NoGreeting { server: String, seconds: u64 },
    /// What answered is no SMTP server (a web server, a database): the wrong port.
    #[error("no SMTP greeting from {server} ({detail}): is this the SMTP port? check smtp.port")]
    NotSmtp { server: String, detail: String },
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
                Tokens::from_config(smtp, env).map_err(|e| ConnectError::Setup(e.0))?,
            )),
            (AuthMethod::Xoauth2, None) => return Err(ConnectError::NoOAuthUser),
        };
        let tls = match smtp.security {
            Security::None => None,
            Security::Starttls | Security::Tls => Some(tokio_rustls::TlsConnector::from(
                tls::client_config(smtp).map_err(|e| ConnectError::Setup(e.0))?,
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
            result = &mut greeting => return no_greeting(result),
            _ = tokio::time::sleep(PROBE_AFTER) => {}
        }
        if self.speaks_tls().await {
            return Err(ConnectError::Tls {
                server: self.server(),
                detail: format!("the server waits for TLS{}", tls::mode_hint(self.port, self.security)),
            });
        }
        no_greeting(greeting.await)
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
    pub async fn connect(&self) -> Result<SmtpSession, ConnectError> {
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
            Security::Starttls => Box::new(self.handshake(self.starttls(tcp).await?).await?),
            Security::None => Box::new(tcp),
        };
        let greeting = if self.security == Security::Starttls {
            TLS_GREETING
        } else {
            b""
        };
        let (stream, heard) = Recorded::new(stream, greeting);
        let what_was_heard = heard.clone();
        let mut conn = self
            .greeted(async {
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                    .await
                    .map_err(|e| match e.status() {
                        Some(code) if u16::from(code) == 421 => ConnectError::Busy {
                            server: self.server(),
                            detail: e.to_string(),
                        },
                        None if e.is_response() => ConnectError::NotSmtp {
                            server: self.server(),
                            detail: match what_was_heard.take().lines().next() {
                                Some(line) => format!("it said {:?}", line.chars().take(60).collect::<String>()),
                                None => "it said nothing".into(),
                            },
                        },
                        _ => ConnectError::Greeting {
                            server: self.server(),
                            detail: e.to_string(),
                        },
                    })
            })
            .await?;
        // lettre keeps no PIPELINING from the EHLO reply it read: read it from what was heard.
        let pipelining = heard.take().lines().any(|line| {
            line.get(4..)
                .is_some_and(|k| k.trim().eq_ignore_ascii_case("PIPELINING"))
        });
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
                let token = tokens.token().await.map_err(|e| ConnectError::Setup(e.0))?;
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
        Ok(SmtpSession { conn, pipelining })
    }
}

/// A connection accepted and never greeted: something listens there, but not SMTP.
fn no_greeting<T>(result: Result<T, ConnectError>) -> Result<T, ConnectError> {
    match result {
        Err(ConnectError::Timeout { server, seconds }) => Err(ConnectError::NoGreeting { server, seconds }),
        other => other,
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
            return Err(ConnectError::NotSmtp {
                server,
                detail: format!("it said {:?}", line.chars().take(60).collect::<String>()),
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
pub struct SmtpSession {
    pub(super) conn: AsyncSmtpConnection,
    /// The server takes MAIL, RCPT and DATA in one write (RFC 2920).
    pub(super) pipelining: bool,
}
