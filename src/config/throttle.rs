//! `throttle:`: how fast, over how many connections, with which retries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, string_or_number};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Throttle {
    /// Messages per second, minute or hour: `10/s`, `600/min`, `20000/h`; `off` for no limit.
    #[serde(deserialize_with = "string_or_number")]
    pub rate: String,
    /// Messages that may go out back to back after an idle spell (the token bucket's size).
    pub burst: u32,
    /// SMTP connections sending at once.
    pub concurrency: usize,
    /// Pause for `batch_pause` after every `batch_size` messages; none by default.
    pub batch_size: Option<u64>,
    #[serde(with = "duration")]
    pub batch_pause: Duration,
    /// Attempts after the first for a temporary failure (4xx reply or lost connection).
    pub retries: u32,
    /// The first retry waits this long; each next one twice as long.
    #[serde(with = "duration")]
    pub retry_delay: Duration,
    /// Stop the run after this many failures in a row: a server that rejects everything must
    /// not burn through the list.
    pub max_consecutive_failures: u32,
    /// Attempts over all runs after which a recipient that still fails temporarily is given up
    /// (counted as failed), so that cron can finish the issue.
    pub max_attempts: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            rate: "10/s".into(),
            burst: 1,
            concurrency: 4,
            batch_size: None,
            batch_pause: Duration::from_secs(30),
            retries: 3,
            retry_delay: Duration::from_secs(5),
            max_consecutive_failures: 20,
            max_attempts: 20,
        }
    }
}
