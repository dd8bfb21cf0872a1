//! One-click unsubscribe (RFC 8058): a POST with `List-Unsubscribe=One-Click` records the
//! suppression and answers 200; a GET only shows a page with the button, since mail scanners
//! and link previewers fetch every link. After unsubscribing, a reader may resubscribe, which
//! lifts only the unsubscribe that link made (see `readers` for the precedence). Every
//! change is on disk before the page says it is done (`writer`: one sync for all waiting).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;

use super::error::Failure;
use super::pages::{UnsubscribeState, UnsubscribeView, private_page};
use super::request::{mask, percent_decode, query_param, remote};
use super::writer::{Write, Written};
use super::{App, Peer};
use crate::readers::Resubscribed;
use crate::unsubscribe::Claim;

fn claim(app: &App, uri: &Uri) -> Option<(String, Claim)> {
    let token = query_param(uri, "token")?;
    let claim = app.secrets.verify(&token)?;
    Some((token, claim))
}

/// The same answer for a token that is bad, truncated or another site's: nothing about any
/// address.
fn invalid(app: &App) -> Failure {
    Failure::Page(
        StatusCode::BAD_REQUEST,
        app.pages
            .unsubscribe(UnsubscribeState::Invalid, UnsubscribeView::default()),
    )
}

fn failed(app: &App) -> Failure {
    Failure::Page(
        StatusCode::SERVICE_UNAVAILABLE,
        app.pages
            .unsubscribe(UnsubscribeState::Failed, UnsubscribeView::default()),
    )
}

/// A page about the token's address, with its buttons.
fn page_for(app: &App, status: StatusCode, state: UnsubscribeState, token: &str, claim: &Claim) -> Response {
    let path = super::path_of(&app.config.unsubscribe.url);
    let unsubscribe = format!("{path}?token={token}");
    let resubscribe = format!("{path}/resubscribe?token={token}");
    let address = mask(&claim.email);
    private_page(
        status,
        app.pages.unsubscribe(
            state,
            UnsubscribeView {
                address: &address,
                unsubscribe: &unsubscribe,
                resubscribe: &resubscribe,
            },
        ),
    )
}

pub async fn page(State(app): State<Arc<App>>, uri: Uri) -> Result<Response, Failure> {
    let (token, claim) = claim(&app, &uri).ok_or_else(|| invalid(&app))?;
    Ok(page_for(&app, StatusCode::OK, UnsubscribeState::Ask, &token, &claim))
}

/// RFC 8058 allows the body as a form or as multipart form data.
fn is_one_click(headers: &HeaderMap, body: &[u8]) -> bool {
    let body = String::from_utf8_lossy(body);
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if multipart {
        body.contains("name=\"List-Unsubscribe\"") && body.contains("One-Click")
    } else {
        body.split('&')
            .any(|pair| percent_decode(pair) == "List-Unsubscribe=One-Click")
    }
}

pub async fn one_click(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let (token, claim) = claim(&app, &uri).ok_or_else(|| invalid(&app))?;
    if !is_one_click(&headers, &body) {
        return Err(invalid(&app));
    }
    let write = Write::Unsubscribe {
        email: claim.email.clone(),
        issue: claim.issue.clone(),
        evidence: remote(peer.as_deref(), &headers),
    };
    match app.write(write).await {
        Some(_) => Ok(page_for(&app, StatusCode::OK, UnsubscribeState::Done, &token, &claim)),
        None => Err(failed(&app)),
    }
}

pub async fn resubscribe(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let (token, claim) = claim(&app, &uri).ok_or_else(|| invalid(&app))?;
    let write = Write::Resubscribe {
        email: claim.email.clone(),
        issue: claim.issue.clone(),
        evidence: remote(peer.as_deref(), &headers),
    };
    let state = match app.write(write).await {
        Some(Written::Resubscribed(Resubscribed::Welcome)) => UnsubscribeState::Resubscribed,
        Some(Written::Resubscribed(Resubscribed::AlreadySubscribed)) => UnsubscribeState::Subscribed,
        Some(Written::Resubscribed(Resubscribed::Kept)) => UnsubscribeState::Kept,
        _ => return Err(failed(&app)),
    };
    Ok(page_for(&app, StatusCode::OK, state, &token, &claim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_bodies_as_rfc_8058_allows() {
        let form = HeaderMap::new();
        assert!(is_one_click(&form, b"List-Unsubscribe=One-Click"));
        assert!(is_one_click(&form, b"x=1&List-Unsubscribe=One-Click"));
        assert!(!is_one_click(&form, b""));
        assert!(!is_one_click(&form, b"List-Unsubscribe=Maybe"));
        let mut multipart = HeaderMap::new();
        multipart.insert(header::CONTENT_TYPE, "multipart/form-data; boundary=b".parse().unwrap());
        let body = b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n";
        assert!(is_one_click(&multipart, body));
    }
}
