//! One-click unsubscribe (RFC 8058): a POST with `List-Unsubscribe=One-Click` records the
//! suppression and answers 200; a GET only shows a page with the button, since mail scanners
//! and link previewers fetch every link. After unsubscribing, a reader may resubscribe, which
//! lifts only a suppression they made themselves.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::App;
use super::archive::UnsubscribeState;
use crate::unsubscribe::Claim;

/// The source recorded for a reader's own unsubscribe; only these are lifted by resubscribe.
pub const ONE_CLICK: &str = "one-click";

/// A query parameter, percent-decoded.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
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

/// The same answer for a token that is bad, truncated or another site's: nothing about any
/// address.
fn invalid(app: &App) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        app.pages.unsubscribe(UnsubscribeState::Invalid, "", ""),
    )
}

fn html(status: StatusCode, body: String) -> Response {
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

/// The action URLs of the page, relative to the unsubscribe path.
fn actions(app: &App, token: &str) -> (String, String) {
    let path = super::path_of(&app.config.unsubscribe.url);
    (
        format!("{path}?token={token}"),
        format!("{path}/resubscribe?token={token}"),
    )
}

pub async fn page(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let Some((token, _)) = claim(&app, &uri) else {
        return invalid(&app);
    };
    let (unsubscribe, resubscribe) = actions(&app, &token);
    html(
        StatusCode::OK,
        app.pages.unsubscribe(UnsubscribeState::Ask, &unsubscribe, &resubscribe),
    )
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

pub async fn one_click(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some((token, claim)) = claim(&app, &uri) else {
        return invalid(&app);
    };
    if !is_one_click(&headers, &body) {
        return html(
            StatusCode::BAD_REQUEST,
            app.pages.unsubscribe(UnsubscribeState::Invalid, "", ""),
        );
    }
    let writer = Arc::clone(&app);
    let recorded = tokio::task::spawn_blocking(move || {
        let mut ledger = writer.ledger();
        let issue = claim.issue.as_deref().unwrap_or("an earlier issue");
        ledger.suppress_from(
            &claim.email,
            &format!("one-click unsubscribe from {issue}"),
            ONE_CLICK,
            claim.issue.as_deref(),
        )?;
        // Acknowledged only once durable.
        ledger.commit()?;
        anyhow::Ok(())
    })
    .await;
    match recorded {
        Ok(Ok(())) => {
            let (unsubscribe, resubscribe) = actions(&app, &token);
            html(
                StatusCode::OK,
                app.pages
                    .unsubscribe(UnsubscribeState::Done, &unsubscribe, &resubscribe),
            )
        }
        Ok(Err(e)) => {
            tracing::error!("cannot record an unsubscribe: {e:#}");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                app.pages.unsubscribe(UnsubscribeState::Failed, "", ""),
            )
        }
        Err(_) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            app.pages.unsubscribe(UnsubscribeState::Failed, "", ""),
        ),
    }
}

pub async fn resubscribe(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let Some((token, claim)) = claim(&app, &uri) else {
        return invalid(&app);
    };
    let writer = Arc::clone(&app);
    let lifted = tokio::task::spawn_blocking(move || {
        let mut ledger = writer.ledger();
        let lifted = ledger.unsuppress_if(&claim.email, ONE_CLICK)?;
        ledger.commit()?;
        anyhow::Ok(lifted)
    })
    .await;
    let (unsubscribe, resubscribe) = actions(&app, &token);
    match lifted {
        // Lifted, or there was none of the reader's own to lift: the same page either way,
        // so that it says nothing about bounces or an operator's list.
        Ok(Ok(_)) => html(
            StatusCode::OK,
            app.pages
                .unsubscribe(UnsubscribeState::Resubscribed, &unsubscribe, &resubscribe),
        ),
        _ => html(
            StatusCode::SERVICE_UNAVAILABLE,
            app.pages.unsubscribe(UnsubscribeState::Failed, "", ""),
        ),
    }
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
}
