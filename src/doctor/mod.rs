//! `newsletter doctor`: can a send work? The configuration, the secrets, a login to each
//! relay (no mail sent) and the DNS records receivers judge our mail by, one finding each:
//! ok, a warning, or what to fix.

mod records;
pub mod spf;

use std::net::SocketAddr;

use serde::Serialize;

use crate::config::{AuthMethod, Config, RelayKind, Security, Smtp, secret};
use crate::dkim::Signer;
use crate::unsubscribe::{SECRET_VAR, Secret};

/// How a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warning,
    /// Must be fixed before a send can work as it should.
    Fix,
}

/// One thing examined.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// configuration, secrets, relay, dns
    pub area: &'static str,
    /// What was examined: a key, a variable, a relay, a DNS name.
    pub subject: String,
    pub verdict: Verdict,
    /// What was found, and for anything but ok, what to do.
    pub said: String,
}

/// What to examine beyond the configuration and the secrets.
pub struct Options {
    /// No relay login and no DNS.
    pub offline: bool,
    /// The DNS server to ask instead of the system's.
    pub resolver: Option<SocketAddr>,
}

fn finding(area: &'static str, subject: impl Into<String>, verdict: Verdict, said: impl Into<String>) -> Finding {
    Finding {
        area,
        subject: subject.into(),
        verdict,
        said: said.into(),
    }
}

/// Everything examined, in order: configuration, secrets, relays, DNS.
pub async fn examine(config: &Config, options: &Options) -> Vec<Finding> {
    let mut found = configuration(config);
    found.extend(secrets(config));
    if options.offline {
        return found;
    }
    // A relay without a host was named under the configuration already.
    let reachable = config
        .smtp
        .relays
        .iter()
        .filter(|r| !(r.kind == RelayKind::Smtp && r.host.is_none()));
    for relay in reachable {
        found.push(login(config, relay).await);
    }
    match crate::dns::Dns::new(options.resolver) {
        Ok(dns) => found.extend(records::examine(config, &dns).await),
        Err(e) => found.push(finding("dns", "resolver", Verdict::Fix, e.to_string())),
    }
    found
}

fn configuration(config: &Config) -> Vec<Finding> {
    let mut found = Vec::new();
    let file = match &config.file {
        Some(file) => finding(
            "configuration",
            file.display().to_string(),
            Verdict::Ok,
            "read, every value valid",
        ),
        None => finding(
            "configuration",
            crate::config::DEFAULT_PATH,
            Verdict::Warning,
            "none found, so every value is a default (the OpenInfra Foundation's): `newsletter init` writes one of your own",
        ),
    };
    found.push(file);
    if let Some((domain, kept)) = config.borrowed_identity(None) {
        found.push(finding(
            "configuration",
            "identity",
            Verdict::Fix,
            format!(
                "the links are at {domain}, but {} keep the OpenInfra Foundation's values: set your own",
                kept.join(", ")
            ),
        ));
    }
    for relay in &config.smtp.relays {
        if relay.kind == RelayKind::Smtp && relay.host.is_none() {
            found.push(finding(
                "configuration",
                "smtp.host",
                Verdict::Fix,
                "no relay is set, so nothing can be sent: set smtp.host (and smtp.username)",
            ));
        }
    }
    if !config.recipients.is_file() {
        found.push(finding(
            "configuration",
            "recipients",
            Verdict::Warning,
            format!(
                "{} does not exist: sends go to confirmed subscribers only (`subscribers import` brings a list)",
                config.recipients.display()
            ),
        ));
    }
    if config.test_recipients.is_empty() {
        found.push(finding(
            "configuration",
            "test_recipients",
            Verdict::Warning,
            "empty: `send --test` has nowhere to go; add your own inbox",
        ));
    }
    found
}

fn secrets(config: &Config) -> Vec<Finding> {
    let mut found = Vec::new();
    found.push(match Secret::from_env() {
        Ok(Some(current)) => match crate::ledger::kept_fingerprint(&config.ledger) {
            Ok(Some(kept)) if kept != current.fingerprint() => {
                let rotating = Secret::previous_from_env()
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.fingerprint() == kept);
                if rotating {
                    finding("secrets", SECRET_VAR, Verdict::Ok, "a rotation: the previous secret signed the ledger's links")
                } else {
                    finding(
                        "secrets",
                        SECRET_VAR,
                        Verdict::Fix,
                        "not the secret that signed the links already sent (send and serve refuse it): put that one back",
                    )
                }
            }
            Ok(Some(_)) => finding("secrets", SECRET_VAR, Verdict::Ok, "set, and the one the ledger's links were signed with"),
            Ok(None) => finding("secrets", SECRET_VAR, Verdict::Ok, "set (the ledger keeps it from the first send)"),
            Err(e) => finding("secrets", SECRET_VAR, Verdict::Warning, format!("set; the ledger cannot be read: {e}")),
        },
        Ok(None) => finding(
            "secrets",
            SECRET_VAR,
            Verdict::Fix,
            "not set: make it once, keep it (`umask 077; echo \"NEWSLETTER_UNSUBSCRIBE_SECRET=$(openssl rand -base64 32)\" > secrets.env`)",
        ),
        Err(e) => finding("secrets", SECRET_VAR, Verdict::Fix, e.to_string()),
    });
    found.push(match Signer::from_config(config, secret) {
        Ok(Some(signer)) => {
            let names: Vec<String> = signer.dns_records().into_iter().map(|r| r.name).collect();
            finding("secrets", "DKIM", Verdict::Ok, format!("signing keys read for {}", names.join(", ")))
        }
        Ok(None) => finding(
            "secrets",
            "DKIM",
            Verdict::Fix,
            "no signing: Gmail and Yahoo require DKIM of bulk senders; set dkim.selector and the key (`newsletter dkim` prints its record)",
        ),
        Err(e) => finding("secrets", "DKIM", Verdict::Fix, format!("{e:#}")),
    });
    for relay in &config.smtp.relays {
        if relay.kind != RelayKind::Smtp || relay.username.is_none() {
            continue;
        }
        let var = match relay.auth {
            AuthMethod::Password => "NEWSLETTER_SMTP_PASSWORD",
            AuthMethod::Xoauth2 => continue,
        };
        let var = relay.secret_var(var, config.smtp.pooled);
        if secret(&var).is_none() {
            found.push(finding(
                "secrets",
                var.clone(),
                Verdict::Fix,
                format!(
                    "{} logs in as {}, but {var} is not set",
                    relay.name(),
                    relay.username.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    found
}

/// Reaches the relay as a send does: connection, EHLO, STARTTLS or TLS, AUTH; no mail.
async fn login(config: &Config, relay: &Smtp) -> Finding {
    let subject = relay.name();
    match crate::transport::open(config, relay, 1).await {
        Ok(Ok(_)) => {
            let how = match relay.kind {
                RelayKind::Ses => "SES answered with the account's sending quota".to_owned(),
                RelayKind::Sendmail => "the sendmail program is there".to_owned(),
                RelayKind::Smtp => {
                    let tls = match relay.security {
                        Security::Starttls => ", STARTTLS",
                        Security::Tls => ", TLS",
                        Security::None => ", no TLS (loopback)",
                    };
                    let auth = relay
                        .username
                        .as_deref()
                        .map_or(String::new(), |u| format!(", logged in as {u}"));
                    format!(
                        "{}:{} answered EHLO{tls}{auth}; no mail was sent",
                        relay.host.as_deref().unwrap_or(""),
                        relay.port
                    )
                }
            };
            finding("relay", subject, Verdict::Ok, how)
        }
        Ok(Err(unreachable)) => finding("relay", subject, Verdict::Fix, unreachable.to_string()),
        Err(e) => finding("relay", subject, Verdict::Fix, format!("{e:#}")),
    }
}

/// The worst verdict found: what the exit code says.
pub fn worst(found: &[Finding]) -> Verdict {
    found.iter().map(|f| f.verdict).max().unwrap_or(Verdict::Ok)
}
