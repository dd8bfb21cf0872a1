//! The send rate as users think of their provider's limits (`10/s`, `600/min`, `20000/h`),
//! enforced by a token bucket shared by every connection.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

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

/// The resolution of tokio's timer: a message may go this much before its slot.
pub const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// A token bucket in its GCRA form: each message is given the next free slot, one interval
/// after the previous one; after an idle spell at most `burst` slots lie in the past. Over
/// any long run the achieved rate is the configured one, and it never bursts above `burst`.
pub struct Throttle {
    interval: Option<Duration>,
    burst: u32,
    next: Option<Instant>,
}

impl Throttle {
    pub fn new(rate: Rate, burst: u32) -> Throttle {
        Throttle {
            interval: rate.interval(),
            burst: burst.max(1),
            next: None,
        }
    }

    /// Reserves the next slot: the time at which one more message may go.
    pub fn reserve(&mut self) -> Instant {
        let now = Instant::now();
        let Some(interval) = self.interval else { return now };
        // Slots lost to the timer's resolution are made up, so the long-run rate stays exact.
        let tolerance = (interval * (self.burst - 1)).max(TIMER_RESOLUTION);
        let earliest = now.checked_sub(tolerance).unwrap_or(now);
        let slot = self.next.map_or(earliest, |n| n.max(earliest));
        self.next = Some(slot + interval);
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_the_way_providers_write_them() {
        assert_eq!("10/s".parse::<Rate>().unwrap(), Rate::PerSecond(10.0));
        assert_eq!("600/min".parse::<Rate>().unwrap(), Rate::PerSecond(10.0));
        assert_eq!("36000/h".parse::<Rate>().unwrap(), Rate::PerSecond(10.0));
        assert_eq!("off".parse::<Rate>().unwrap(), Rate::Unlimited);
        assert!("10 per second".parse::<Rate>().unwrap_err().contains("e.g. 10/s"));
        assert!("0/s".parse::<Rate>().is_err());
        assert_eq!("20000/h".parse::<Rate>().unwrap().to_string(), "5.56/s");
        assert_eq!("30/min".parse::<Rate>().unwrap().to_string(), "30/min");
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_one_interval_apart_and_bursts_are_capped() {
        let mut t = Throttle::new(Rate::PerSecond(10.0), 3);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await; // idle: the bucket fills, up to 3
        let idle_end = Instant::now();
        let mut times = Vec::new();
        for _ in 0..13 {
            tokio::time::sleep_until(t.reserve()).await;
            times.push(Instant::now() - idle_end);
        }
        assert!(start < idle_end);
        // The first three go at once (the burst), then one every 100 ms.
        assert!(times[..3].iter().all(|d| *d == Duration::ZERO), "{times:?}");
        assert_eq!(times[12], Duration::from_millis(1000), "{times:?}");
    }
}
