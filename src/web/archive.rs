//! The archive on `serve`: its index, each issue's page and the Atom feed, read from the
//! ledger through the archive's own connection (`crate::archive` stores them).

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Extension;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};

use super::counter::count_page_view;
use super::error::Failure;
use super::{App, Peer};
use crate::archive::{NO_FEED, absolute_base, entries, feed};
use crate::config::Config;
use crate::ledger::Ledger;

/// The archive's path on this server: that of `archive.url`, else `/archive`.
pub fn base_path(config: &Config) -> String {
    match &config.archive.url {
        Some(url) => super::path_of(url),
        None => "/archive".to_owned(),
    }
    .trim_end_matches('/')
    .to_owned()
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Archive work reads through the archive's own connection: the ledger's lock, which
/// one-click unsubscribes need, is never held for it.
async fn read<T: Send + 'static>(
    app: &Arc<App>,
    work: impl FnOnce(&Ledger) -> Result<T> + Send + 'static,
) -> Result<T> {
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || work(&app.archive()))
        .await
        .context("the archive task stopped")?
}

fn failed(cause: anyhow::Error) -> Failure {
    Failure::Internal {
        shown: "The archive cannot be shown right now.",
        cause,
    }
}

pub async fn index(State(app): State<Arc<App>>) -> Result<Response, Failure> {
    let list = read(&app, entries).await.map_err(failed)?;
    let body = app
        .pages
        .index(&list, absolute_base(&app.config).is_some())
        .map_err(failed)?;
    Ok(html(body))
}

pub async fn issue(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    method: Method,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    // The name is only ever a key of the ledger's archive, never a path.
    let issue = name.clone();
    match read(&app, move |ledger| ledger.archive_page(&name)).await {
        Ok(Some(page)) => {
            if app.config.analytics.clicks {
                count_page_view(&app, &issue, &method, &headers, peer.as_deref());
            }
            Ok(html(page))
        }
        Ok(None) => Err(Failure::NotFound("No such issue in the archive.".into())),
        Err(e) => Err(failed(e)),
    }
}

pub async fn feed_xml(State(app): State<Arc<App>>) -> Result<Response, Failure> {
    let base = absolute_base(&app.config).ok_or_else(|| Failure::NotFound(format!("No feed: {NO_FEED}.")))?;
    let list = read(&app, entries).await.map_err(failed)?;
    Ok((
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        feed(&app.config, &list, &base),
    )
        .into_response())
}
