//! `smtp:`: the relay, its TLS and its login; or a list of relays (a pool), each with its
//! own limits, that a send spreads its messages over.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// How a relay takes messages.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RelayKind {
    #[default]
    Smtp,
    /// Amazon SES's v2 API (`SendEmail` with our raw message), credentials from the AWS
    /// default chain.
    Ses,
    /// The local MTA's `sendmail` program (`command`), which relays as it is configured.
    Sendmail,
}

impl RelayKind {
    /// The fields only another kind uses, with the kind: set on this one, they are a mistake.
    fn foreign_fields(self, relay: &Smtp) -> Vec<(&'static str, &'static str)> {
        let ses = [
            ("region", relay.region.is_some()),
            ("configuration_set", relay.configuration_set.is_some()),
            ("endpoint", relay.endpoint.is_some()),
        ];
        let sendmail = [("command", relay.command.is_some())];
        let smtp = [("host", relay.host.is_some()), ("username", relay.username.is_some())];
        let mut foreign = Vec::new();
        let mut add = |kind: &'static str, fields: &[(&'static str, bool)]| {
            foreign.extend(fields.iter().filter(|(_, set)| *set).map(|(f, _)| (*f, kind)));
        };
        match self {
            RelayKind::Smtp => {
                add("ses", &ses);
                add("sendmail", &sendmail);
            }
            RelayKind::Ses => add("sendmail", &sendmail),
            RelayKind::Sendmail => {
                add("ses", &ses);
                add("smtp", &smtp);
            }
        }
        foreign
    }

    /// What this kind needs that is missing, or a field of another kind set on it: the
    /// field and why.
    pub fn check(self, relay: &Smtp) -> Option<(&'static str, String)> {
        if self == RelayKind::Ses && relay.region.is_none() {
            return Some(("region", "is required for kind: ses (e.g. eu-west-1)".into()));
        }
        self.foreign_fields(relay).first().map(|(field, kind)| {
            (
                *field,
                format!("is for kind: {kind} only; remove it, or add kind: {kind}"),
            )
        })
    }
}

/// One relay: an SMTP server, or Amazon SES's API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// How the ledger and `status` name the relay; by default its host (`ses-REGION` for
    /// SES). In a pool, a relay's secrets are the variables below with `_NAME` appended
    /// (`NEWSLETTER_SMTP_PASSWORD_BACKUP` for `name: backup`).
    pub name: Option<String>,
    pub kind: RelayKind,
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
    /// Its share of the messages in a pool: weights 1 and 3 send about one in four through
    /// the first.
    pub weight: u32,
    /// This relay's own limit (`14/s`), within `throttle.rate`; none by default.
    pub rate: Option<String>,
    /// Connections to this relay at once; by default `throttle.concurrency`.
    pub concurrency: Option<usize>,
    /// Messages this relay takes per day (UTC); at the limit it rests until the next day.
    pub daily_limit: Option<u64>,
    /// SES: the AWS region (`eu-west-1`); required for `kind: ses`.
    pub region: Option<String>,
    /// SES: the configuration set whose event destinations report bounces and complaints.
    pub configuration_set: Option<String>,
    /// SES: another endpoint than `https://email.REGION.amazonaws.com` (a VPC endpoint, a test).
    pub endpoint: Option<String>,
    /// Sendmail: the program (`/usr/sbin/sendmail` by default), run as
    /// `COMMAND -i -f SENDER -- RECIPIENT` with the message on its input.
    pub command: Option<PathBuf>,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            name: None,
            kind: RelayKind::Smtp,
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
            weight: 1,
            rate: None,
            concurrency: None,
            daily_limit: None,
            region: None,
            configuration_set: None,
            endpoint: None,
            command: None,
        }
    }
}

impl Smtp {
    /// The relay's name in the ledger, `status` and messages.
    pub fn name(&self) -> String {
        match (&self.name, self.kind) {
            (Some(name), _) => name.clone(),
            (None, RelayKind::Ses) => format!("ses-{}", self.region.as_deref().unwrap_or("default")),
            (None, RelayKind::Smtp) => self.host.clone().unwrap_or_else(|| "smtp".into()),
            (None, RelayKind::Sendmail) => "sendmail".into(),
        }
    }

    /// What a relay's secret variable is called: `NEWSLETTER_SMTP_PASSWORD`, with `_NAME`
    /// appended for a relay of a pool.
    pub fn secret_var(&self, var: &str, pooled: bool) -> String {
        if !pooled {
            return var.to_owned();
        }
        let name: String = self
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{var}_{name}")
    }
}

/// `smtp:` as written: one relay (a mapping, as before pools) or a pool (a list).
#[derive(Debug, Clone, PartialEq)]
pub struct Relays {
    pub relays: Vec<Smtp>,
    /// Written as a list: secrets are per relay.
    pub pooled: bool,
}

impl Default for Relays {
    fn default() -> Self {
        Relays {
            relays: vec![Smtp::default()],
            pooled: false,
        }
    }
}

impl Relays {
    /// The first relay: the one confirmation emails and the bounce mailbox's TLS settings use.
    pub fn first(&self) -> &Smtp {
        &self.relays[0]
    }
}

impl Serialize for Relays {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.pooled {
            self.relays.serialize(s)
        } else {
            self.first().serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Relays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Relays;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a relay (host, port, ...) or a list of relays")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Relays, A::Error> {
                let relay = Smtp::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Relays {
                    relays: vec![relay],
                    pooled: false,
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Relays, A::Error> {
                let relays = Vec::<Smtp>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                if relays.is_empty() {
                    return Err(serde::de::Error::custom(
                        "the list of relays is empty: give at least one",
                    ));
                }
                Ok(Relays { relays, pooled: true })
            }
        }
        d.deserialize_any(Visitor)
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
