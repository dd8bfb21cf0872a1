//! `check:` and `preview:`: the link checker and the live preview.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// `newsletter check`: the link checker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Check {
    /// Limit for each request, from connecting to the last header.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Requests in flight at once, over all hosts.
    pub concurrency: usize,
    /// Requests in flight at once to one host.
    pub per_host: usize,
    /// How long a result is reused before the URL is asked again (`--no-cache` to force).
    #[serde(with = "duration")]
    pub cache_for: Duration,
    /// Attempts after the first when a server answers 429 or 503.
    pub retries: u32,
    /// The longest `Retry-After` waited for; a longer one counts as a failure.
    #[serde(with = "duration")]
    pub max_retry_after: Duration,
    /// Images larger than this many bytes are a warning (slow on phones, clipped by some clients).
    pub max_image_bytes: u64,
    /// Sent with every request, so site owners can tell who is asking.
    pub user_agent: String,
}

impl Default for Check {
    fn default() -> Self {
        Check {
            timeout: Duration::from_secs(10),
            concurrency: 16,
            per_host: 2,
            cache_for: Duration::from_secs(3600),
            retries: 2,
            max_retry_after: Duration::from_secs(60),
            max_image_bytes: 1024 * 1024,
            user_agent: concat!(
                "newsletter-link-check/",
                env!("CARGO_PKG_VERSION"),
                " (+https://openinfra.dev; checks links of a newsletter before it is sent)"
            )
            .into(),
        }
    }
}

/// `newsletter preview --serve`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Preview {
    /// The port on 127.0.0.1; `--port` overrides it. 0 picks a free one.
    pub port: u16,
}

impl Default for Preview {
    fn default() -> Self {
        Preview { port: 8025 }
    }
}
