//! `serve:` and `archive:`: the web service behind the unsubscribe links, and the issues on
//! the web.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// `newsletter serve`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Serve {
    /// Address and port to listen on; `--listen` overrides it. Put nginx or Caddy in front.
    pub listen: String,
    /// The longest a request may take, from its first byte to the answer (slow clients are
    /// cut off).
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Largest request body accepted; a one-click POST is 26 bytes.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers) accepted; at least 8192.
    pub max_header_bytes: usize,
}

impl Default for Serve {
    fn default() -> Self {
        Serve {
            listen: "127.0.0.1:8026".into(),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 16 * 1024,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// The archive of sent issues, served by `serve` under `/archive/` and written by
/// `newsletter archive --out DIR`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Archive {
    /// Where the archive is on the web, e.g. `https://openinfra.dev/newsletter/archive`; when
    /// set, each message's "View in browser" link points to its issue there.
    pub url: Option<String>,
    /// Title of the archive's index and feed.
    pub title: String,
    /// What recipient fields show on archive pages (`first_name: reader`); fields not listed
    /// show empty.
    pub fields: BTreeMap<String, String>,
}

impl Default for Archive {
    fn default() -> Self {
        Archive {
            url: None,
            title: "Inside Open Infrastructure".into(),
            fields: [("first_name", "reader"), ("last_name", ""), ("name", "reader")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}
