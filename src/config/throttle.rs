//! `throttle:`: how fast, over how many connections, with which retries; and [`Rate`], the
//! send rate as users think of their provider's limits (`10/s`, `600/min`, `20000/h`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Invalid, duration, string_or_number};

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
    /// A new account's or domain's ramp: each day's messages capped from the first day of
    /// sending; none by default.
    pub warmup: Option<Warmup>,
    /// Stops a send whose bounces or complaints climb.
    pub breaker: Breaker,
}

impl Throttle {
    /// The warm-up and the breaker: the key and why, for values that cannot work.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if let Some(w) = &self.warmup
            && (w.start == 0 || w.until < w.start || w.days == 0)
        {
            return Err((
                "throttle.warmup".into(),
                format!(
                    "start {} until {} over {} days cannot ramp: start must be at least 1, until at least start, days at least 1",
                    w.start, w.until, w.days
                ),
            ));
        }
        let b = &self.breaker;
        for (key, percent) in [
            ("throttle.breaker.hard_bounce_percent", b.hard_bounce_percent),
            ("throttle.breaker.complaint_percent", b.complaint_percent),
        ] {
            if !(percent > 0.0 && percent <= 100.0) {
                return Err((
                    key.into(),
                    format!("{percent} is not a percentage above 0 and at most 100"),
                ));
            }
        }
        Ok(())
    }
}

/// `start × (until / start) ^ (day / (days − 1))` messages on day `day` (0 for the first day
/// of sending, in UTC), up to `until` on the last day of the ramp; no cap after it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Warmup {
    pub start: u64,
    pub until: u64,
    pub days: u32,
}

/// The circuit breaker of a send: once the issue has gone to `min_messages` readers, hard
/// bounces at `hard_bounce_percent` or complaints at `complaint_percent` of them stop it
/// (`send --resume-despite-rates` goes on deliberately). SES reviews an account at 5% and 0.1%.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Breaker {
    pub hard_bounce_percent: f64,
    pub complaint_percent: f64,
    pub min_messages: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            hard_bounce_percent: 5.0,
            complaint_percent: 0.1,
            min_messages: 500,
        }
    }
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
            warmup: None,
            breaker: Breaker::default(),
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
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Rate, Invalid> {
        let s = s.trim();
        if ["off", "unlimited", "none"].contains(&s.to_ascii_lowercase().as_str()) {
            return Ok(Rate::Unlimited);
        }
        let bad = || {
            Invalid(format!(
                "`{s}` is not a rate: write messages per time unit, e.g. 10/s, 600/min or 20000/h, or `off`"
            ))
        };
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
