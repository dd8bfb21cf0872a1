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
    /// The Content-Security-Policy of every answer: what the built-in layout's pages need
    /// (images over HTTPS, inline styles, forms to this server) and no framing. A layout that
    /// loads fonts or scripts from elsewhere adds their sources here.
    pub content_security_policy: String,
    /// The proxies in front of `serve` (addresses or networks: `127.0.0.1`, `10.0.0.0/8`)
    /// whose `X-Forwarded-For` names the client for the per-client limits. None by default:
    /// a header anyone can write decides nothing.
    pub trusted_proxies: Vec<String>,
}

impl Default for Serve {
    fn default() -> Self {
        Serve {
            listen: "127.0.0.1:8026".into(),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 16 * 1024,
            max_header_bytes: 16 * 1024,
            trusted_proxies: Vec::new(),
            content_security_policy: "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'".into(),
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

/// Sign-up with double opt-in and the preference centre, served by `serve`. The paths sit
/// beside `unsubscribe.url` unless set: `.../subscribe`, `.../confirm`, `.../preferences`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Subscribe {
    /// Where the sign-up form posts (`POST`) and its page is (`GET`).
    pub url: Option<String>,
    /// The confirmation link's page; only its button's `POST` confirms.
    pub confirm_url: Option<String>,
    /// The preference centre each issue's footer links to.
    pub preferences_url: Option<String>,
    /// The consent wording of each form, by the form's id (the `form` field of the post). The
    /// wording a reader saw is stored with their confirmation, verbatim. The form page of
    /// `serve` is the form `newsletter`.
    pub forms: BTreeMap<String, String>,
    /// How long a confirmation link works.
    #[serde(with = "duration")]
    pub confirm_within: Duration,
    /// At most one confirmation email to an address in this time, whatever is posted.
    #[serde(with = "duration")]
    pub per_address: Duration,
    /// Sign-ups accepted from one client address per hour; more are answered 429. The client
    /// is the peer, or behind a proxy on the same host the address it added to
    /// X-Forwarded-For.
    pub per_client_per_hour: u32,
    /// Longest value of any form field; a longer one is a clear error on the page.
    pub max_field_bytes: usize,
    /// A confirmation email the relay did not take (after three tries at once) is tried
    /// again after this, then after twice as long each time, at most an hour apart, until its
    /// link expires.
    #[serde(with = "duration")]
    pub retry_after: Duration,
    /// The web origins (`https://openinfra.dev`) whose pages may post the sign-up form, besides
    /// `serve`'s own; empty: the origin of `url`. A post without Origin (not from a browser)
    /// is taken; one from any other site's page is refused.
    pub allowed_origins: Vec<String>,
}

/// The form `serve`'s own sign-up page shows.
pub const DEFAULT_FORM: &str = "newsletter";

impl Default for Subscribe {
    fn default() -> Self {
        Subscribe {
            url: None,
            confirm_url: None,
            preferences_url: None,
            forms: [(
                DEFAULT_FORM.to_owned(),
                "Yes, send me Inside Open Infrastructure, the OpenInfra Foundation's monthly newsletter, by email. I can unsubscribe at any time with the link in every issue.".to_owned(),
            )]
            .into_iter()
            .collect(),
            confirm_within: Duration::from_secs(7 * 86_400),
            per_address: Duration::from_secs(3600),
            per_client_per_hour: 30,
            max_field_bytes: 320,
            retry_after: Duration::from_secs(60),
            allowed_origins: Vec::new(),
        }
    }
}
