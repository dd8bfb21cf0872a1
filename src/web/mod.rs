//! `newsletter serve`: the production service behind the links in every message. One-click
//! unsubscribe (RFC 8058) and its page, sign-up with double opt-in and the preference centre
//! (`subscribe`), the issue archive and its feed, and `/healthz`, on
//! the tokio runtime the rest of the tool uses, sharing the ledger with cron's `send`.
//!
//! Limits: the request head ([`Serve::max_header_bytes`]), the body
//! ([`Serve::max_body_bytes`]) and the time a request may take
//! ([`Serve::request_timeout`]). Request logs (tracing, `NEWSLETTER_LOG=info`) carry the
//! method, the path without its query, the status and the time: never a token or an address.

pub mod archive;
mod clicks;
mod client;
mod confirmation;
mod counter;
mod error;
mod events;
pub mod pages;
mod request;
mod subscribe;
mod unsubscribe;
mod writer;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::config::{Config, Serve};
use crate::ledger::Ledger;
use crate::unsubscribe::Secrets;
use error::Failure;
use pages::Pages;

/// What every request may use.
pub struct App {
    pub config: Config,
    pub secrets: Secrets,
    /// The service's one connection: the writer's, which reads take too (SQLite serializes
    /// writers anyway).
    pub ledger: Arc<Mutex<Ledger>>,
    /// Readers' requests, for the writer thread's group commits.
    pub writes: writer::Requests,
    pub pages: Pages,
    /// The relay for sign-ups' confirmation emails; none without `smtp.host`.
    mailer: Option<Arc<confirmation::Mailer>>,
    limiter: client::Limiter,
    /// Whose X-Forwarded-For is believed (`serve.trusted_proxies`).
    proxies: client::Proxies,
    /// The origins whose pages may post the sign-up form, besides serve's own.
    origins: Vec<String>,
    /// SES's events through SNS; none without `bounces.ses_events.topics`.
    events: Option<events::Events>,
    /// The archive's own connection to the ledger (WAL: it reads beside the writer).
    archive: Mutex<Ledger>,
    /// Clicks and reads, counted in memory until written.
    counter: counter::Counter,
    /// The ledger's serve lock, held shared while the service runs (a restore waits for it).
    _serving: std::fs::File,
}

impl App {
    pub fn new(config: Config, secrets: Secrets) -> Result<App> {
        let serving = crate::ledger::serving(&config.ledger)?.ok_or_else(|| {
            anyhow::anyhow!(
                "a restore is replacing {}: start serve once it is done",
                config.ledger.display()
            )
        })?;
        let mut archive = Ledger::open(&config.ledger)?;
        // serve signs and reads the same links as send: the same secret, or a rotation.
        archive.adopt_secret(&secrets.current, secrets.previous.as_ref())?;
        crate::archive::backfill(&config, &mut archive)?;
        let ledger = Arc::new(Mutex::new(Ledger::open(&config.ledger)?));
        let pages = Pages::load(&config)?;
        let writes = writer::start(Arc::clone(&ledger), config.unsubscribe.resubscribe_within);
        let mailer = confirmation::Mailer::new(&config)?.map(Arc::new);
        if mailer.is_none() {
            tracing::warn!("no relay (smtp.host): sign-ups are answered 503 until one is configured");
        }
        let events = events::Events::new(&config)?;
        let proxies = client::Proxies::parse(&config.serve.trusted_proxies)?;
        let origins = client::allowed_origins(&config);
        let counter = counter::Counter::new(&config, &secrets);
        if let Some(missing) = archive.missing_forget_key()? {
            tracing::error!("{missing}");
        }
        Ok(App {
            config,
            secrets,
            ledger,
            writes,
            pages,
            mailer,
            limiter: client::Limiter::default(),
            proxies,
            origins,
            events,
            archive: Mutex::new(archive),
            counter,
            _serving: serving,
        })
    }

    /// Has the writer apply `write`; `None` when it could not be recorded.
    pub async fn write(&self, write: writer::Write) -> Option<writer::Written> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writes.send((write, reply)).ok()?;
        answer.await.ok().flatten()
    }

    pub(crate) fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn archive(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.archive.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The address a connection came from (before any proxy), kept with a reader's request as
/// evidence.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The path part of a URL from the configuration (`https://x.org/newsletter/unsubscribe` ->
/// `/newsletter/unsubscribe`).
pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

pub fn router(app: Arc<App>) -> Router {
    let unsubscribe = path_of(&app.config.unsubscribe.url);
    let archive = archive::base_path(&app.config);
    let limit = app.config.serve.max_body_bytes;
    let routes = Router::new()
        .route(&unsubscribe, get(unsubscribe::page).post(unsubscribe::one_click))
        .route(&format!("{unsubscribe}/resubscribe"), post(unsubscribe::resubscribe))
        .route(
            &path_of(&app.config.subscribe_url()),
            get(subscribe::form_page).post(subscribe::sign_up),
        )
        .route(
            &path_of(&app.config.confirm_url()),
            get(subscribe::confirm_page).post(subscribe::confirm),
        )
        .route(
            &path_of(&app.config.preferences_url()),
            get(subscribe::preferences_page).post(subscribe::save_preferences),
        )
        .route("/healthz", get(health))
        .route(
            &format!("{}/{{*path}}", path_of(&app.config.click_url())),
            any(clicks::follow),
        )
        .route(&path_of(&app.config.bounces.ses_events.path), post(events::ses))
        .route(&format!("{archive}/"), get(archive::index))
        .route(&format!("{archive}/feed.xml"), get(archive::feed_xml))
        .route(&format!("{archive}/{{issue}}/"), get(archive::issue))
        .route(&format!("{archive}/{{issue}}"), get(with_slash))
        .fallback(|| async { Failure::NotFound("Not found".into()) });
    // The archive at the site's root has no slashless form.
    let routes = if archive.is_empty() {
        routes
    } else {
        routes.route(&archive, get(with_slash))
    };
    routes
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), limits_and_log))
        .with_state(app)
}

/// Each request within its time, a body declared too large refused before it is read, the
/// security headers on every answer, and a log line without its query.
async fn limits_and_log(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let settings = &app.config.serve;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut response = if declared.is_some_and(|n| n > settings.max_body_bytes as u64) {
        Failure::TooLarge.into_response()
    } else {
        match tokio::time::timeout(settings.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => Failure::Timeout.into_response(),
        }
    };
    let headers = response.headers_mut();
    if let Ok(csp) = header::HeaderValue::from_str(&settings.content_security_policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    // Unsubscribe and preference pages carry a reader's token in their URL. (The sign-up
    // form's page says same-origin: a browser sends `Origin: null` with a form posted from a
    // no-referrer page, and the sign-up takes posts from its own origin only.)
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(header::HeaderValue::from_static("no-referrer"));
    tracing::info!(
        "{method} {path} {} {:.1}ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

/// `/archive` and `/archive/2025-07`, as people type them: the page is at the path with a
/// slash (relative links in it resolve from there).
async fn with_slash(uri: axum::http::Uri) -> Result<Response, Failure> {
    let location = match uri.query() {
        Some(query) => format!("{}/?{query}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    let location = header::HeaderValue::from_str(&location).map_err(|_| Failure::NotFound("Not found".into()))?;
    Ok((StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response())
}

async fn health(State(app): State<Arc<App>>) -> Result<&'static str, Failure> {
    let problem = tokio::task::spawn_blocking(move || {
        let ledger = app.ledger();
        if !ledger.is_reachable() {
            return Some("the ledger cannot be read".to_owned());
        }
        match ledger.missing_forget_key() {
            Ok(missing) => missing,
            Err(e) => Some(format!("{e:#}")),
        }
    })
    .await
    .unwrap_or_else(|_| Some("the health check failed".to_owned()));
    match problem {
        None => Ok("ok\n"),
        Some(problem) => Err(Failure::Unhealthy(problem)),
    }
}

/// The router, with the connection's peer in every request's extensions.
#[derive(Clone)]
struct PeerService {
    router: Router,
    peer: std::net::SocketAddr,
}

impl tower_service::Service<Request<hyper::body::Incoming>> for PeerService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<Request<hyper::body::Incoming>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<Request<hyper::body::Incoming>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: Request<hyper::body::Incoming>) -> Self::Future {
        request.extensions_mut().insert(Peer(self.peer));
        tower_service::Service::call(&mut self.router, request)
    }
}

/// Serves until `shutdown` resolves, then lets the requests in flight finish (up to the
/// request timeout).
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
    let settings: Serve = app.config.serve.clone();
    let settling = app
        .events
        .is_some()
        .then(|| tokio::spawn(events::settle_periodically(Arc::clone(&app))));
    let retrying = app
        .mailer
        .clone()
        .map(|mailer| tokio::spawn(confirmation::retry_periodically(Arc::clone(&app), mailer)));
    let counting = tokio::spawn(counter::flush_periodically(Arc::clone(&app)));
    let router = router(Arc::clone(&app));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(settings.request_timeout)
                    .max_buf_size(settings.max_header_bytes.max(8192))
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(PeerService { router: router.clone(), peer }));
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = watched.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    for task in [settling, retrying, Some(counting)].into_iter().flatten() {
        task.abort();
    }
    let finished = tokio::time::timeout(settings.request_timeout, graceful.shutdown()).await;
    // What was counted since the last write is written before the service ends.
    counter::flush(&app).await;
    finished.context("requests were still running when the shutdown time ran out")?;
    Ok(())
}
