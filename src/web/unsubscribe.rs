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
use axum::response::{IntoResponse, Response};

use serde_json::json;

use super::pages::{UnsubscribeState, UnsubscribeView};
use super::writer::{Write, Written};
use super::{App, Peer};
use crate::readers::Resubscribed;
use crate::unsubscribe::Claim;

/// A query parameter, percent-decoded.
pub(super) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn claim(app: &App, uri: &Uri) -> Option<(String, Claim)> {
    let token = query_param(uri, "token")?;
    let claim = app.secrets.verify(&token)?;
    Some((token, claim))
}

/// `a****@example.org`: enough for a reader with two addresses to know which, too little to
/// read the address off a shared screen. The stars do not count the hidden characters.
pub fn mask(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}****@{domain}")
        }
        None => "****".to_owned(),
    }
}

/// The same answer for a token that is bad, truncated or another site's: nothing about any
/// address.
fn invalid(app: &App) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        app.pages
            .unsubscribe(UnsubscribeState::Invalid, UnsubscribeView::default()),
    )
}

fn failed(app: &App) -> Response {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        app.pages
            .unsubscribe(UnsubscribeState::Failed, UnsubscribeView::default()),
    )
}

pub(super) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page holds a token: keep it out of caches and Referer headers.
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// A page about the token's address, with its buttons.
fn page_for(app: &App, status: StatusCode, state: UnsubscribeState, token: &str, claim: &Claim) -> Response {
    let path = super::path_of(&app.config.unsubscribe.url);
    let unsubscribe = format!("{path}?token={token}");
    let resubscribe = format!("{path}/resubscribe?token={token}");
    let address = mask(&claim.email);
    html(
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

pub async fn page(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let Some((token, claim)) = claim(&app, &uri) else {
        return invalid(&app);
    };
    page_for(&app, StatusCode::OK, UnsubscribeState::Ask, &token, &claim)
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

/// Where a request came from, as evidence: the peer, and what a proxy in front says.
pub(super) fn remote(peer: Option<&Peer>, headers: &HeaderMap) -> serde_json::Value {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect::<String>());
    json!({ "remote": peer.map(|p| p.0.ip().to_string()), "forwarded_for": forwarded })
}

pub async fn one_click(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((token, claim)) = claim(&app, &uri) else {
        return invalid(&app);
    };
    if !is_one_click(&headers, &body) {
        return invalid(&app);
    }
    let write = Write::Unsubscribe {
        email: claim.email.clone(),
        issue: claim.issue.clone(),
        evidence: remote(peer.as_deref(), &headers),
    };
    match app.write(write).await {
        Some(_) => page_for(&app, StatusCode::OK, UnsubscribeState::Done, &token, &claim),
        None => failed(&app),
    }
}

pub async fn resubscribe(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some((token, claim)) = claim(&app, &uri) else {
        return invalid(&app);
    };
    let write = Write::Resubscribe {
        email: claim.email.clone(),
        issue: claim.issue.clone(),
        evidence: remote(peer.as_deref(), &headers),
    };
    let state = match app.write(write).await {
        Some(Written::Resubscribed(Resubscribed::Welcome)) => UnsubscribeState::Resubscribed,
        Some(Written::Resubscribed(Resubscribed::AlreadySubscribed)) => UnsubscribeState::Subscribed,
        Some(Written::Resubscribed(Resubscribed::Kept)) => UnsubscribeState::Kept,
        _ => return failed(&app),
    };
    page_for(&app, StatusCode::OK, state, &token, &claim)
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
        assert_eq!(percent_decode("a%2Bb+c%"), "a+b c%");
    }

    #[test]
    fn masked_addresses_keep_the_first_character_and_the_domain() {
        assert_eq!(mask("alice@example.org"), "a****@example.org");
        assert_eq!(mask("b@x.org"), "b****@x.org");
    }
}
