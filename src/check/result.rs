//! What checking one URL found: shared by the checker and its cache.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works, but worth a look (a large image).
    Warning,
    Broken,
}

/// What checking one URL found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkResult {
    pub verdict: Verdict,
    /// The last HTTP status, when a server answered.
    pub status: Option<u16>,
    /// Where redirects led, when they led somewhere else.
    pub final_url: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Option<u64>,
    /// For people: `200 OK`, `404 Not Found`, `timed out after 10s`...
    pub detail: String,
    /// Taken from the cache rather than asked now.
    #[serde(default, skip_deserializing)]
    pub cached: bool,
}

impl LinkResult {
    pub(super) fn unreachable(detail: String) -> LinkResult {
        LinkResult {
            verdict: Verdict::Broken,
            status: None,
            final_url: None,
            content_type: None,
            bytes: None,
            detail,
            cached: false,
        }
    }

    /// No connection could be made at all (no DNS answer, refused, no route).
    pub fn no_connection(&self) -> bool {
        self.status.is_none() && self.detail.starts_with("cannot connect")
    }

    /// Only what a server said is worth keeping: a timeout or a refused connection may be
    /// gone in a minute.
    pub(super) fn cacheable(&self) -> bool {
        self.status.is_some()
    }
}
