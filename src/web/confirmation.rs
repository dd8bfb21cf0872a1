//! The confirmation email of a sign-up: rendered from the layout (`confirm.mjml.hbs` and
//! `confirm.txt.hbs`), DKIM-signed like an issue, and sent at once through the configured
//! relay on one connection the service keeps.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::dkim::Signer;
use crate::layout::Layout;
use crate::ledger::Signup;
use crate::transport::{self, Transport};
use crate::unsubscribe::{Claim, Secrets};
use crate::web::App;
use crate::web::writer::Write;

/// The first relay's transport (an SMTP connection opened on first use and again after it
/// breaks).
pub struct Mailer {
    connection: Box<dyn Transport>,
}

impl Mailer {
    /// `None` when no relay is configured (`smtp.host`): sign-up is then answered 503.
    pub fn new(config: &Config) -> Result<Option<Mailer>> {
        let transport = transport::first(config).context("sign-up sends confirmation emails through smtp")?;
        Ok(transport.map(|connection| Mailer { connection }))
    }
}

/// Confirmation tokens are the unsubscribe tokens' scheme over `signup ID EXPIRY` in place
/// of an issue: unforgeable, bound to the address, and no issue's name has a space.
const PREFIX: &str = "signup ";

pub fn token(secrets: &Secrets, signup: &Signup, expires: i64) -> String {
    secrets
        .current
        .token(&signup.email, &format!("{PREFIX}{} {expires}", signup.id))
}

/// A confirmation token's sign-up id and expiry (Unix seconds), if `claim` is one.
pub fn parse(claim: &Claim) -> Option<(i64, i64)> {
    let rest = claim.issue.as_deref()?.strip_prefix(PREFIX)?;
    let (id, expires) = rest.split_once(' ')?;
    Some((id.parse().ok()?, expires.parse().ok()?))
}

#[derive(Serialize)]
struct View<'a> {
    title: &'a str,
    accent: &'a str,
    confirm_url: &'a str,
    projects: Vec<&'a str>,
    expires: String,
    footer: Footer<'a>,
}

#[derive(Serialize)]
struct Footer<'a> {
    sender: &'a str,
    address: &'a str,
}

/// A confirmation email the relay did not take.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct Undelivered {
    pub detail: String,
    /// Refused for good (a 5xx): trying again will not help.
    pub permanent: bool,
}

/// Sends the confirmation of `signup` once; returns its Message-ID (the same at every try,
/// so that a receiver that got an earlier try which we saw fail can tell).
pub async fn send(
    mailer: &Mailer,
    config: &Config,
    layout: &Layout,
    signup: &Signup,
    confirm_url: &str,
) -> Result<String, Undelivered> {
    let (envelope, bytes, message_id) = build(config, layout, signup, confirm_url).map_err(|e| Undelivered {
        detail: format!("{e:#}"),
        permanent: false,
    })?;
    mailer
        .connection
        .send(&envelope, &bytes)
        .await
        .map_err(|e| Undelivered {
            permanent: !e.is_transient(),
            detail: format!("the relay did not take the confirmation email: {e}"),
        })?;
    Ok(message_id)
}

/// The confirmation email of `signup`, signed: its envelope, bytes and Message-ID.
fn build(config: &Config, layout: &Layout, signup: &Signup, confirm_url: &str) -> Result<(Envelope, Vec<u8>, String)> {
    let names: Vec<&str> = signup
        .projects
        .split(';')
        .filter_map(|id| layout.registry.projects.iter().find(|p| p.id == id))
        .map(|p| p.name.as_str())
        .collect();
    let view = View {
        title: &config.archive.title,
        accent: &layout.registry.accent,
        confirm_url,
        projects: names,
        expires: human_days(config.subscribe.confirm_within),
        footer: Footer {
            sender: &config.from.name,
            address: &config.address,
        },
    };
    let (mjml, text) = layout.render_confirmation(&view)?;
    let html = mrml::parse(&mjml.source)
        .map_err(|e| anyhow::anyhow!("{}: confirm.mjml.hbs: invalid MJML: {e}", layout.origin.display()))?
        .element
        .render(&mrml::prelude::render::RenderOptions::default())
        .map_err(|e| anyhow::anyhow!("{}: confirm.mjml.hbs: {e}", layout.origin.display()))?;
    let domain = config.from.address.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let digest = Sha256::digest(format!("{}\0{}\0{}", signup.id, signup.email, signup.posted_at));
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    let message_id = format!("<signup.{}.{hex}@{domain}>", signup.id);
    let from: Mailbox = Mailbox::new(
        Some(config.from.name.clone()),
        config.from.address.parse().context("from.address")?,
    );
    // No name: nothing typed into an unauthenticated form goes into mail the foundation
    // signs, to an address whose owner has not confirmed anything.
    let to = Mailbox::new(None, signup.email.parse().context("the sign-up's address")?);
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(format!("Confirm your subscription to {}", config.archive.title))
        .message_id(Some(message_id.clone()))
        .date_now();
    if let Some(reply_to) = &config.reply_to {
        builder = builder.reply_to(reply_to.parse().context("reply_to")?);
    }
    let message = builder.multipart(
        MultiPart::alternative()
            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text))
            .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
    )?;
    let formatted = message.formatted();
    let bytes = match Signer::from_config(config, crate::config::secret)? {
        Some(signer) => signer.sign(&formatted),
        None => formatted,
    };
    let return_path = config.return_path.as_deref().unwrap_or(&config.from.address);
    let envelope = Envelope::new(
        Some(return_path.parse().context("return_path")?),
        message.envelope().to().to_vec(),
    )?;
    Ok((envelope, bytes, message_id))
}

/// Tries at once before a confirmation email waits for `subscribe.retry_after`: the first
/// may meet a connection the relay closed while idle, which the second reopens.
const TRIES_NOW: u32 = 3;

/// Sends the confirmation of `signup`, trying again at once after a broken connection and
/// after a moment after a temporary refusal; records every try on the sign-up, and what is
/// still not sent waits for [`retry_periodically`].
pub async fn email(app: Arc<App>, mailer: Arc<Mailer>, signup: Signup) {
    let settings = &app.config.subscribe;
    let posted = chrono::DateTime::parse_from_rfc3339(&signup.posted_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now());
    let expires = posted + chrono::Duration::from_std(settings.confirm_within).unwrap_or(chrono::TimeDelta::MAX);
    let token = token(&app.secrets, &signup, expires.timestamp());
    let url = crate::unsubscribe::url_with(&app.config.confirm_url(), &token);
    for try_now in 1..=TRIES_NOW {
        let failure = match send(&mailer, &app.config, app.pages.layout(), &signup, &url).await {
            Ok(message_id) => {
                let outcome = Ok(message_id);
                app.write(Write::Emailed { id: signup.id, outcome }).await;
                return;
            }
            Err(failure) => failure,
        };
        let tries = signup.attempts + try_now;
        let again_now = try_now < TRIES_NOW && !failure.permanent;
        let retry_at = (!failure.permanent)
            .then(|| next_try(tries, settings.retry_after, expires))
            .flatten();
        let then = match (again_now, &retry_at) {
            (true, _) => "trying again now".to_owned(),
            (false, Some(at)) => format!("trying again at {at}"),
            (false, None) => "given up".to_owned(),
        };
        tracing::warn!(
            "sign-up {}: try {tries}: {}; {then}",
            signup.id,
            crate::transport::smtp::reply::without_recipient(&failure.detail, &signup.email),
        );
        let outcome = Err((failure.detail, retry_at));
        app.write(Write::Emailed { id: signup.id, outcome }).await;
        if !again_now {
            return;
        }
        // The first try again at once (a connection the relay closed is reopened), then a moment.
        tokio::time::sleep(Duration::from_millis(500 * u64::from(try_now - 1))).await;
    }
}

/// When a confirmation email tried `tries` times goes again: `retry_after` after the tries
/// made at once, doubling, at most an hour apart; `None` once its link has expired.
fn next_try(tries: u32, retry_after: Duration, expires: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let doublings = tries.saturating_sub(TRIES_NOW).min(16);
    let wait = retry_after
        .saturating_mul(1 << doublings)
        .min(Duration::from_secs(3600).max(retry_after));
    let at = chrono::Utc::now() + chrono::Duration::from_std(wait).ok()?;
    (at < expires).then(|| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Sends, one after the other, the confirmation emails whose next try is due; runs as long
/// as `serve`.
pub async fn retry_periodically(app: Arc<App>, mailer: Arc<Mailer>) {
    let every = app
        .config
        .subscribe
        .retry_after
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        // Off the runtime's thread: the ledger's lock may wait for the writer's sync.
        let reader = Arc::clone(&app);
        let due = tokio::task::spawn_blocking(move || reader.ledger().signups_due(&crate::ledger::now())).await;
        let due = match due {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::error!("cannot read the confirmation emails due: {e:#}");
                continue;
            }
            Err(e) => {
                tracing::error!("cannot read the confirmation emails due: {e}");
                continue;
            }
        };
        for signup in due {
            email(Arc::clone(&app), Arc::clone(&mailer), signup).await;
        }
    }
}

/// `7 days`, `1 day`, `12 hours`.
fn human_days(d: Duration) -> String {
    let hours = d.as_secs() / 3600;
    match (hours / 24, hours % 24) {
        (1, 0) => "1 day".into(),
        (days, 0) => format!("{days} days"),
        _ => format!("{hours} hours"),
    }
}
