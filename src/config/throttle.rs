//! `throttle:`: how fast, over how many connections, with which retries; and [`Rate`], the
//! send rate as users think of their provider's limits (`10/s`, `600/min`, `20000/h`).

use std::fmt;
use std::str::FromStr;
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

/// Messages per unit of time, or no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Unlimited,
    /// Messages per second.
    PerSecond(f64),
}

impl Rate {
    /// Time between two messages at this rate.
    pub fn interval(self) -> Option<Duration> {
        match self {
            Rate::Unlimited => None,
            Rate::PerSecond(r) => Some(Duration::from_secs_f64(1.0 / r)),
        }
    }

    pub fn per_second(self) -> Option<f64> {
        match self {
            Rate::Unlimited => None,
            Rate::PerSecond(r) => Some(r),
        }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let s = s.trim();
        if ["off", "unlimited", "none"].contains(&s.to_ascii_lowercase().as_str()) {
            return Ok(Rate::Unlimited);
        }
        let bad =
            || format!("`{s}` is not a rate: write messages per time unit, e.g. 10/s, 600/min or 20000/h, or `off`");
        let (count, unit) = s.split_once('/').ok_or_else(bad)?;
        let count: f64 = count.trim().parse().map_err(|_| bad())?;
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            "d" | "day" => 86400.0,
            _ => return Err(bad()),
        };
        if !(count > 0.0 && count.is_finite()) {
            return Err(bad());
        }
        Ok(Rate::PerSecond(count / seconds))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Unlimited => f.write_str("no rate limit"),
            Rate::PerSecond(r) if *r >= 1.0 => write!(f, "{}/s", trim(*r)),
            Rate::PerSecond(r) if *r * 60.0 >= 1.0 => write!(f, "{}/min", trim(r * 60.0)),
            Rate::PerSecond(r) => write!(f, "{}/h", trim(r * 3600.0)),
        }
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
