//! `POST /events/ses` (`bounces.ses_events.path`): Amazon SNS's messages of SES's events. The
//! topic must be one of `bounces.ses_events.topics` and the signature must verify against
//! SNS's certificate; then a subscription is confirmed, and a Bounce or Complaint event goes
//! through the same handler as a report from the bounce mailbox (same verdicts, same
//! precedence), its suppressions settled through the mass guard every `settle_every`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::App;
use super::error::Failure;
use super::request::mask;
use crate::bounces::act::Handler;
use crate::bounces::guard;
use crate::bounces::sns::{self, CertificateError, Certificates, Message};
use crate::config::Config;
use crate::mailbox::Item;

/// What the endpoint keeps between requests.
pub struct Events {
    client: reqwest::Client,
    certificates: Certificates,
}

impl Events {
    /// `None` when no topic is configured (the endpoint is off).
    pub fn new(config: &Config) -> anyhow::Result<Option<Events>> {
        if config.bounces.ses_events.topics.is_empty() {
            return Ok(None);
        }
        // Trusts what the relay trusts (the built-in roots, the system's store, smtp.ca_file).
        let tls = crate::net::tls::client_config(config.smtp.first())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Some(Events {
            certificates: Certificates::new(client.clone()),
            client,
        }))
    }
}

/// Settles the suppressions events have deferred, every `settle_every`, for as long as the
/// service runs.
pub async fn settle_periodically(app: Arc<App>) {
    let every = app
        .config
        .bounces
        .ses_events
        .settle_every
        .max(std::time::Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let app = Arc::clone(&app);
        let settled = tokio::task::spawn_blocking(move || {
            let mut ledger = app.ledger();
            guard::settle(&mut ledger, app.config.bounces.mass_guard)
        })
        .await;
        match settled {
            Ok(Ok(settled)) => {
                for (email, action) in &settled.actions {
                    tracing::info!("SES event for {}: {action}", mask(email));
                }
                for group in &settled.held {
                    tracing::warn!(
                        "SES events: {} readers at {} held as group {} for `newsletter bounces review`",
                        group.readers,
                        group.domain,
                        group.id
                    );
                }
            }
            Ok(Err(e)) => tracing::error!("cannot settle the SES events' suppressions: {e:#}"),
            Err(e) => tracing::error!("cannot settle the SES events' suppressions: {e}"),
        }
    }
}

pub async fn ses(State(app): State<Arc<App>>, body: String) -> Result<Response, Failure> {
    let Some(events) = &app.events else {
        return Err(Failure::NotFound("Not found".into()));
    };
    let message: Message = match serde_json::from_str(&body) {
        Ok(m) => m,
        Err(e) => {
            return Err(Failure::Refused(
                StatusCode::BAD_REQUEST,
                format!("not an SNS message: {e}"),
            ));
        }
    };
    if !app.config.bounces.ses_events.topics.contains(&message.topic_arn) {
        return Err(Failure::Refused(
            StatusCode::FORBIDDEN,
            format!("topic {} is not in bounces.ses_events.topics", message.topic_arn),
        ));
    }
    let Some(region) = message.region() else {
        return Err(Failure::Refused(
            StatusCode::BAD_REQUEST,
            format!("bad topic ARN {}", message.topic_arn),
        ));
    };
    if let Err(why) = sns::check_form(&message, region) {
        return Err(Failure::Refused(
            StatusCode::FORBIDDEN,
            format!("message of {}: {why}", message.topic_arn),
        ));
    }
    let checked = match events.certificates.get(&message.signing_cert_url, region).await {
        Ok(pem) => sns::check_signature(&message, &pem),
        Err(CertificateError::Busy(why)) => return Err(Failure::Refused(StatusCode::SERVICE_UNAVAILABLE, why)),
        Err(CertificateError::Refused(why)) => Err(sns::Rejected(why)),
    };
    if let Err(why) = checked {
        return Err(Failure::Refused(
            StatusCode::FORBIDDEN,
            format!("message {} of {}: {why}", message.message_id, message.topic_arn),
        ));
    }
    match message.kind.as_str() {
        "SubscriptionConfirmation" => confirm(events, &message, region).await,
        "UnsubscribeConfirmation" => {
            tracing::warn!("SNS: topic {} unsubscribed this endpoint", message.topic_arn);
            Ok(StatusCode::OK.into_response())
        }
        "Notification" => notification(app.clone(), message).await,
        other => Err(Failure::Refused(
            StatusCode::BAD_REQUEST,
            format!("unknown message type {other}"),
        )),
    }
}

/// Visits the SubscribeURL, which must be SNS's own.
async fn confirm(events: &Events, message: &Message, region: &str) -> Result<Response, Failure> {
    let Some(url) = message.subscribe_url.as_deref().filter(|u| sns::is_sns_url(u, region)) else {
        return Err(Failure::Refused(
            StatusCode::BAD_REQUEST,
            "the SubscribeURL is not SNS's own".into(),
        ));
    };
    match events.client.get(url).send().await {
        Ok(reply) if reply.status().is_success() => {
            tracing::info!("SNS: confirmed the subscription to {}", message.topic_arn);
            Ok(StatusCode::OK.into_response())
        }
        Ok(reply) => Err(Failure::Refused(
            StatusCode::BAD_GATEWAY,
            format!("SNS answered the confirmation with {}", reply.status()),
        )),
        Err(e) => Err(Failure::Refused(
            StatusCode::BAD_GATEWAY,
            format!("cannot confirm the subscription: {e}"),
        )),
    }
}

/// Reads the event as a report from the bounce mailbox would be read, and records what it
/// says; SNS's retries of one message change nothing the second time (its MessageId).
async fn notification(app: Arc<App>, message: Message) -> Result<Response, Failure> {
    let raw = format!(
        "Message-ID: <{}@sns.amazonaws.com>\r\nSubject: SES notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
        message.message_id.replace(['<', '>', '\r', '\n'], ""),
        message.message
    );
    let item = Item {
        id: format!("sns:{}", message.message_id),
        raw: raw.into_bytes(),
        cursor: None,
    };
    let handled = tokio::task::spawn_blocking(move || {
        let handler = Handler {
            config: &app.config,
            verp: None,
            secrets: Some(app.secrets.clone()),
            dry_run: false,
            mailbox: "sns".into(),
        };
        let mut ledger = app.ledger();
        let outcomes = handler.handle(&item, Some(&mut ledger))?;
        ledger.commit()?;
        anyhow::Ok(outcomes)
    })
    .await;
    match handled {
        Ok(Ok(outcomes)) => {
            for o in &outcomes {
                // Masked: the log is kept apart from the ledger, beyond `forget`'s reach.
                tracing::info!(
                    "SES event: {} {}: {}",
                    o.recipient.as_deref().map_or("?".to_owned(), mask),
                    o.reason.as_str(),
                    o.action
                );
            }
            Ok(StatusCode::OK.into_response())
        }
        Ok(Err(e)) => Err(Failure::NotRecorded(e)),
        Err(e) => Err(Failure::NotRecorded(e.into())),
    }
}
