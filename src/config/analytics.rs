//! `analytics`: clicks and reads counted per issue without knowing who.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Analytics {
    /// Point the HTML part's links at `serve`, which counts them per link and section and
    /// redirects; the text part keeps the original URLs (its clicks are not counted).
    pub clicks: bool,
    /// A 1x1 image per edition whose fetches count as opens. Off: in the EU a pixel in email
    /// generally needs consent, and Apple's Mail Privacy Protection fetches every image.
    pub opens: bool,
    /// A request within this long of the message being made is a machine's (link scanners
    /// fetch every link seconds after delivery).
    #[serde(with = "duration")]
    pub min_delay: Duration,
    /// One client fetching this many distinct links of an issue within `burst_window` is a
    /// machine: all its requests in that window.
    pub burst_links: usize,
    #[serde(with = "duration")]
    pub burst_window: Duration,
    /// How often `serve` writes the counts it gathered: a crash loses at most this much.
    #[serde(with = "duration")]
    pub flush: Duration,
}

impl Default for Analytics {
    fn default() -> Self {
        Analytics {
            clicks: true,
            opens: false,
            min_delay: Duration::from_secs(60),
            burst_links: 5,
            burst_window: Duration::from_secs(10),
            flush: Duration::from_secs(1),
        }
    }
}
