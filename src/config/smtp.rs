//! `smtp:`: the relay, its TLS and its login.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption: accepted only for a loopback host.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// The submission server; required to send.
    pub host: Option<String>,
    pub port: u16,
    pub security: Security,
    /// Login name; the password comes only from NEWSLETTER_SMTP_PASSWORD.
    pub username: Option<String>,
    /// The name given in EHLO; by default this machine's host name.
    pub hello_name: Option<String>,
    /// Limit for connecting, and for each command's reply.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// A PEM bundle of CA certificates trusted besides the built-in roots and the system's
    /// store (a relay with a private CA, a network that inspects TLS).
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, neither the built-in roots nor the system's store.
    pub ca_only: bool,
    /// How to log in when `username` is set: `password` (AUTH PLAIN or LOGIN with
    /// NEWSLETTER_SMTP_PASSWORD) or `xoauth2` (an OAuth 2.0 access token).
    pub auth: AuthMethod,
    pub oauth: OAuth,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            host: None,
            port: 587,
            security: Security::Starttls,
            username: None,
            hello_name: None,
            timeout: Duration::from_secs(30),
            ca_file: None,
            ca_only: false,
            auth: AuthMethod::Password,
            oauth: OAuth::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    #[default]
    Password,
    Xoauth2,
}

/// Where `auth: xoauth2` gets its access token: NEWSLETTER_SMTP_OAUTH_TOKEN when set, else
/// the client-credentials grant at `token_url` with NEWSLETTER_SMTP_OAUTH_CLIENT_SECRET.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth {
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    /// e.g. `https://outlook.office365.com/.default` for Microsoft 365.
    pub scope: Option<String>,
}
