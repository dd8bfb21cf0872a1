//! Counted links and the issue's image: `BASE/ISSUE/N/STAMP/MAC` (`crate::clicks::path`)
//! redirects to link N of the issue as stored at its first send, never to anything the request
//! says; number 0 is the 1x1 image. Each request is counted (`super::counter`) as a click or
//! as a machine's, by reason; a redirect never waits for the disk.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::counter::{draft_links, judge, links};
use super::error::Failure;
use super::{App, Peer};
use crate::clicks::tally::{Key, What};

/// The smallest transparent GIF: what the image answers.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub async fn follow(
    State(app): State<Arc<App>>,
    method: Method,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> Result<Response, Failure> {
    let not_found = || Failure::NotFound("Not found".into());
    let target = app.counter.check(&path).ok_or_else(not_found)?;
    let what = match target.n {
        0 => What::Open,
        n => What::Link(n),
    };
    let location = match what {
        What::Link(n) => {
            let stored = links(&app, &target.issue).await?.get(n).map(|l| l.url.clone());
            let url = match stored {
                Some(url) => url,
                // A test send's or a preview's link may be to an issue not sent yet.
                None if target.stamp.test => draft_links(&app, &target.issue)
                    .await?
                    .get(n)
                    .map(|l| l.url.clone())
                    .ok_or_else(not_found)?,
                None => return Err(not_found()),
            };
            Some(HeaderValue::from_str(&url).map_err(|_| not_found())?)
        }
        _ => None,
    };
    // A test send's links and image work, and are never counted.
    if !target.stamp.test {
        let (reason, client) = judge(&app, &method, &headers, peer.as_deref(), &target, true);
        app.counter.count(
            Key {
                issue: target.issue.clone(),
                what,
                day: chrono::Utc::now().date_naive(),
                reason,
            },
            Some(&client),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        return Ok((StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")]).into_response());
    }
    Ok(match location {
        Some(location) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        None => (
            [(header::CONTENT_TYPE, "image/gif"), (header::CACHE_CONTROL, "no-store")],
            PIXEL,
        )
            .into_response(),
    })
}
