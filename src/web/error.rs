//! Every way a request to `serve` fails, and how each is answered: handlers say what went
//! wrong and never build a failure page of their own.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::pages::{plain_page, private_page};

#[derive(Debug)]
pub enum Failure {
    /// Nothing here: an unknown path, an issue not in the archive, a feed without a base.
    NotFound(String),
    /// A body declared larger than `serve.max_body_bytes`, refused before it is read.
    TooLarge,
    /// Longer than `serve.request_timeout`.
    Timeout,
    /// Something of ours failed: logged with its cause; the visitor reads `shown`.
    Internal { shown: &'static str, cause: anyhow::Error },
    /// An SNS message we do not act on: logged and answered with why; nothing changed.
    Refused(StatusCode, String),
    /// An SNS message we could not record: logged; SNS delivers it again later.
    NotRecorded(anyhow::Error),
    /// The health check's answer: what keeps the service from working.
    Unhealthy(String),
    /// One of our pages, drawn from the layout, saying what went wrong (a bad link, a
    /// failed write); it may hold a reader's token, so caches and Referer headers never see it.
    Page(StatusCode, String),
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::NotFound(what) => plain_page(StatusCode::NOT_FOUND, &what),
            Failure::TooLarge => plain_page(StatusCode::PAYLOAD_TOO_LARGE, "The request is too large."),
            Failure::Timeout => plain_page(StatusCode::REQUEST_TIMEOUT, "The request took too long."),
            Failure::Internal { shown, cause } => {
                tracing::error!("{shown} {cause:#}");
                plain_page(StatusCode::INTERNAL_SERVER_ERROR, shown)
            }
            Failure::Refused(status, why) => {
                tracing::warn!("SNS message refused, nothing changed: {why}");
                (status, why).into_response()
            }
            Failure::NotRecorded(cause) => {
                tracing::error!("cannot record an SES event: {cause:#}");
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            }
            Failure::Unhealthy(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")).into_response(),
            Failure::Page(status, body) => private_page(status, body),
        }
    }
}
