//! The online link checker: each distinct URL asked once, politely. HEAD first, GET when a
//! server refuses HEAD; redirects followed; at most `per_host` requests to one host and
//! `concurrency` overall; 429 and 503 retried after their `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Target;
use super::cache::Cache;
pub use super::result::{LinkResult, Verdict};
use crate::config::{Check, duration};

pub struct Checker {
    client: reqwest::Client,
    settings: Check,
    all: Arc<Semaphore>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Counted in the summary line.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Tally {
    pub ok: usize,
    pub warning: usize,
    pub broken: usize,
    pub cached: usize,
}

impl Tally {
    pub fn of(outcomes: &[LinkResult]) -> Tally {
        let mut t = Tally::default();
        for o in outcomes {
            match o.verdict {
                Verdict::Ok => t.ok += 1,
                Verdict::Warning => t.warning += 1,
                Verdict::Broken => t.broken += 1,
            }
            t.cached += usize::from(o.cached);
        }
        t
    }
}

impl Checker {
    pub fn new(settings: &Check) -> Result<Checker> {
        // reqwest is built without a crypto provider so that rustls uses ring, as lettre does.
        // An error only means one is already installed.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(settings.user_agent.clone())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Checker {
            client,
            settings: settings.clone(),
            all: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            hosts: Mutex::new(HashMap::new()),
        })
    }

    /// Checks every target, taking fresh results from `cache` and storing new ones in it.
    /// Outcomes come back in the order of `targets`.
    pub async fn check_all(
        self: Arc<Self>,
        targets: &[Target],
        cache: Option<&Cache>,
        refresh: bool,
    ) -> Vec<LinkResult> {
        let mut outcomes: Vec<Option<LinkResult>> = vec![None; targets.len()];
        let mut tasks = JoinSet::new();
        for (i, target) in targets.iter().enumerate() {
            let hit = match cache.filter(|_| !refresh) {
                Some(c) => c.get(&target.url, target.image).unwrap_or_else(|e| {
                    tracing::warn!("link cache unreadable, asking again: {e:#}");
                    None
                }),
                None => None,
            };
            match hit {
                Some(o) => outcomes[i] = Some(LinkResult { cached: true, ..o }),
                None => {
                    let (checker, url, image) = (Arc::clone(&self), target.url.clone(), target.image);
                    tasks.spawn(async move { (i, checker.check(&url, image).await) });
                }
            }
        }
        while let Some(done) = tasks.join_next().await {
            let Ok((i, outcome)) = done else { continue };
            if let (Some(c), true) = (cache, outcome.cacheable())
                && let Err(e) = c.put(&targets[i].url, targets[i].image, &outcome)
            {
                tracing::warn!("cannot store a link result in the cache: {e:#}");
            }
            outcomes[i] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| LinkResult::unreachable("the check stopped unexpectedly".into())))
            .collect()
    }

    fn host_slots(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            hosts
                .entry(host.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_host.max(1)))),
        )
    }

    pub async fn check(&self, url: &str, image: bool) -> LinkResult {
        let host = match reqwest::Url::parse(url) {
            Ok(u) => u.host_str().unwrap_or_default().to_owned(),
            Err(e) => return LinkResult::unreachable(format!("not a valid URL: {e}")),
        };
        let slots = self.host_slots(&host);
        let mut method = Method::HEAD;
        let mut retries = 0;
        loop {
            let response = {
                // The host's slot first: a request waiting for its host holds no global slot.
                let Ok(_host) = slots.acquire().await else {
                    return LinkResult::unreachable("the check stopped".into());
                };
                let Ok(_all) = self.all.acquire().await else {
                    return LinkResult::unreachable("the check stopped".into());
                };
                self.client.request(method.clone(), url).send().await
            };
            let response = match response {
                Ok(r) => r,
                Err(e) => return LinkResult::unreachable(self.describe(&e)),
            };
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
                let wait = retry_after(response.headers()).unwrap_or(Duration::from_secs(1 << retries));
                if retries < self.settings.retries && wait <= self.settings.max_retry_after {
                    retries += 1;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let why = if wait > self.settings.max_retry_after {
                    format!(
                        "asked to retry after {}, longer than check.max_retry_after",
                        duration::format(&wait)
                    )
                } else {
                    format!("still so after {} retries", retries)
                };
                return answered(
                    url,
                    &response,
                    Verdict::Broken,
                    format!("{}: {why}", status_text(status)),
                );
            }
            // Some servers refuse or mishandle HEAD; only GET's answer counts as broken.
            if method == Method::HEAD && (status.is_client_error() || status.is_server_error()) {
                method = Method::GET;
                continue;
            }
            return self.judge(url, &response, image, method == Method::GET);
        }
    }

    fn judge(&self, url: &str, response: &reqwest::Response, image: bool, by_get: bool) -> LinkResult {
        let status = response.status();
        let mut detail = status_text(status);
        if by_get {
            detail.push_str(" (HEAD refused, GET used)");
        }
        if !status.is_success() {
            return answered(url, response, Verdict::Broken, detail);
        }
        let outcome = answered(url, response, Verdict::Ok, detail);
        if !image {
            return outcome;
        }
        let content_type = outcome.content_type.clone().unwrap_or_default();
        if !content_type.to_ascii_lowercase().starts_with("image/") {
            let shown = if content_type.is_empty() {
                "no content type"
            } else {
                &content_type
            };
            return LinkResult {
                verdict: Verdict::Broken,
                detail: format!("not an image: {shown}"),
                ..outcome
            };
        }
        match outcome.bytes {
            Some(b) if b > self.settings.max_image_bytes => LinkResult {
                verdict: Verdict::Warning,
                detail: format!(
                    "image of {}, over the {} of check.max_image_bytes: slow on phones",
                    megabytes(b),
                    megabytes(self.settings.max_image_bytes)
                ),
                ..outcome
            },
            _ => outcome,
        }
    }

    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("timed out after {}", duration::format(&self.settings.timeout));
        }
        if e.is_redirect() {
            return "too many redirects (a loop?)".into();
        }
        // The innermost cause says what went wrong (refused, DNS); the outer ones repeat the URL.
        let mut source: &dyn std::error::Error = e;
        while let Some(inner) = source.source() {
            source = inner;
        }
        let prefix = if e.is_connect() { "cannot connect: " } else { "" };
        format!("{prefix}{source}")
    }
}

fn answered(url: &str, response: &reqwest::Response, verdict: Verdict, detail: String) -> LinkResult {
    let headers = response.headers();
    let asked = reqwest::Url::parse(url).ok();
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
    };
    LinkResult {
        verdict,
        status: Some(response.status().as_u16()),
        final_url: (asked.as_ref() != Some(response.url())).then(|| response.url().to_string()),
        content_type: header(CONTENT_TYPE).map(str::to_owned),
        // From the header: a HEAD response has no body to measure.
        bytes: header(CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        detail,
        cached: false,
    }
}

fn status_text(status: StatusCode) -> String {
    format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default())
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
