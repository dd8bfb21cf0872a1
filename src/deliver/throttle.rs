//! The send rate ([`Rate`], from `throttle.rate`) enforced by a token bucket shared by every
//! connection.

use std::time::Duration;

use tokio::time::Instant;

pub use crate::config::Rate;

/// The resolution of tokio's timer: a message may go this much before its slot.
pub const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// Lateness the throttle makes up, whatever the burst: timer ticks, a ledger commit, a stall
/// of the machine. Without it late slots were lost for good: at 1000/s only 975/s went out on
/// a loaded 2-core machine, which stalls for up to ~20 ms several times a second. The price:
/// after such a stall, up to this long's worth of messages go back to back (25 at 1000/s,
/// none extra at 40/s or less). After a longer pause the bucket's `burst` applies as usual.
pub const CATCH_UP: Duration = Duration::from_millis(25);

/// A token bucket in its GCRA form: each message is given the next free slot, one interval
/// after the previous one; after an idle spell at most `burst` slots lie in the past. Over
/// any long run the achieved rate is the configured one, and it never bursts above `burst`.
pub struct TokenBucket {
    interval: Option<Duration>,
    burst: u32,
    next: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: Rate, burst: u32) -> TokenBucket {
        TokenBucket {
            interval: rate.interval(),
            burst: burst.max(1),
            next: None,
        }
    }

    /// Reserves the next slot: the time at which one more message may go.
    pub fn reserve(&mut self) -> Instant {
        self.reserve_at(Instant::now())
    }

    /// The slot the next message would get, without taking it.
    pub fn next_slot(&self, now: Instant) -> Instant {
        let Some(interval) = self.interval else { return now };
        let credit = interval * (self.burst - 1);
        let full_bucket = now.checked_sub(credit).unwrap_or(now);
        match self.next {
            // Late by a little (a timer tick, a stall): the time is made up, so the long-run
            // rate stays exact.
            Some(next) if next + CATCH_UP >= now => next,
            // Idle for longer: at most `burst` messages at once, then the rate.
            Some(next) => next.max(full_bucket),
            None => full_bucket,
        }
    }

    fn reserve_at(&mut self, now: Instant) -> Instant {
        let slot = self.next_slot(now);
        if let Some(interval) = self.interval {
            self.next = Some(slot + interval);
        }
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
        assert!("10 per second".parse::<Rate>().unwrap_err().0.contains("e.g. 10/s"));
        assert!("0/s".parse::<Rate>().is_err());
        assert_eq!("20000/h".parse::<Rate>().unwrap().to_string(), "5.56/s");
        assert_eq!("30/min".parse::<Rate>().unwrap().to_string(), "30/min");
    }

    // Time is passed in rather than paused: tokio's test-util feature would make the
    // benches build a second tokio, and everything on it, apart from the release binary's.
    #[test]
    fn slots_are_one_interval_apart_and_bursts_are_capped() {
        let mut t = TokenBucket::new(Rate::PerSecond(10.0), 3);
        let start = Instant::now();
        let idle_end = start + Duration::from_secs(5); // idle: the bucket fills, up to 3
        let mut now = idle_end;
        let mut times = Vec::new();
        for _ in 0..13 {
            now = now.max(t.reserve_at(now)); // sleeps until its slot
            times.push(now - idle_end);
        }
        // The first three go at once (the burst), then one every 100 ms.
        assert!(times[..3].iter().all(|d| *d == Duration::ZERO), "{times:?}");
        assert_eq!(times[12], Duration::from_millis(1000), "{times:?}");
    }

    #[test]
    fn a_short_stall_is_made_up_and_an_idle_spell_earns_no_extra_burst() {
        let mut t = TokenBucket::new(Rate::PerSecond(1000.0), 1);
        let start = Instant::now();
        let slots: Vec<Instant> = (0..5).map(|_| t.reserve_at(start)).collect();
        assert_eq!(slots[4] - start, Duration::from_millis(4));
        // The sender stalls 20 ms: the slots it missed are still its own, so 100 messages
        // still take 100 ms in all.
        let stalled = start + Duration::from_millis(24);
        let after_stall: Vec<Instant> = (0..95).map(|_| t.reserve_at(stalled)).collect();
        assert_eq!(after_stall[0] - start, Duration::from_millis(5));
        assert_eq!(after_stall[94] - start, Duration::from_millis(99));
        // A second of nothing to send: the next one goes now, the one after a full interval
        // later (burst 1), not a catch-up run.
        let now = stalled + Duration::from_secs(1);
        assert_eq!(t.reserve_at(now), now);
        assert_eq!(t.reserve_at(now), now + Duration::from_millis(1));
    }
}
