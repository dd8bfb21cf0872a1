//! The confirmation email of a sign-up: rendered from the layout (`confirm.mjml.hbs` and
//! `confirm.txt.hbs`), DKIM-signed like an issue, and sent at once through the configured
//! relay on one connection the service keeps.

use std::time::Duration;

use anyhow::{Context, Result};
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::deliver::pool;
use crate::deliver::run::Transport;
use crate::dkim::Signer;
use crate::layout::Layout;
use crate::ledger::Signup;
use crate::unsubscribe::{Claim, Secrets};

/// The first relay's transport (an SMTP connection opened on first use and again after it
/// breaks).
pub struct Mailer {
    connection: Box<Transport>,
}

impl Mailer {
    /// `None` when no relay is configured (`smtp.host`): sign-up is then answered 503.
    pub fn new(config: &Config) -> Result<Option<Mailer>> {
        let transport = pool::first_transport(config).context("sign-up sends confirmation emails through smtp")?;
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

/// Builds, signs and sends the confirmation of `signup`; returns its Message-ID.
pub async fn send(
    mailer: &Mailer,
    config: &Config,
    layout: &Layout,
    signup: &Signup,
    confirm_url: &str,
) -> Result<String> {
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
    let bytes = match Signer::from_config(config, |var| std::env::var(var).ok())? {
        Some(signer) => signer.sign(&formatted),
        None => formatted,
    };
    let return_path = config.return_path.as_deref().unwrap_or(&config.from.address);
    let envelope = Envelope::new(
        Some(return_path.parse().context("return_path")?),
        message.envelope().to().to_vec(),
    )?;
    mailer
        .connection
        .send_raw(&envelope, &bytes)
        .await
        .map_err(|e| anyhow::anyhow!("the relay did not take the confirmation email: {e}"))?;
    Ok(message_id)
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
