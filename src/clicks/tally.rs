//! The counts `serve` gathers in memory between writes, and the burst rule, which needs to
//! remember a client for `analytics.burst_window` and no longer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use super::machine::Reason;

/// The requests of one client and issue remembered within the window.
const MAX_SEEN: usize = 64;

/// What was fetched: a link of an issue, its archive page, or its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum What {
    /// The link's number in the issue.
    Link(u32),
    /// The issue's page in the web archive.
    Page,
    /// The issue's 1x1 image (with `analytics.opens`).
    Open,
}

impl What {
    /// The kind and number as the ledger stores them.
    pub fn stored(self) -> (&'static str, u32) {
        match self {
            What::Link(n) => ("link", n),
            What::Page => ("page", 0),
            What::Open => ("open", 0),
        }
    }

    pub fn from_stored(kind: &str, n: u32) -> Option<What> {
        match kind {
            "link" => Some(What::Link(n)),
            "page" => Some(What::Page),
            "open" => Some(What::Open),
            _ => None,
        }
    }
}

/// One count's place: per issue, what, UTC day and reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub issue: String,
    pub what: What,
    pub day: NaiveDate,
    pub reason: Reason,
}

/// The burst rule's settings.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Distinct links of an issue that make a burst.
    pub links: usize,
    pub window: Duration,
}

/// What a client fetched of one issue within the window, and the counts it added (so that a
/// burst found later takes them back).
#[derive(Default)]
pub struct Window {
    seen: Vec<(Instant, What, Option<Key>)>,
    burst_until: Option<Instant>,
}

/// The clients remembered, by address and issue.
pub type Clients = HashMap<(String, String), Window>;

/// Counts not yet written, as changes to add to the stored ones.
#[derive(Default)]
pub struct Tally {
    changes: HashMap<Key, i64>,
    /// Keyed by the client (its address, as `serve` keys its limits) and the issue, in two
    /// generations: those seen in this window, and in the one before. Every window the older
    /// is dropped whole (no client is kept two windows after its last request), so that
    /// forgetting never walks a map of every client while requests wait.
    windows: Clients,
    older: Clients,
    turned: Option<Instant>,
}

impl Tally {
    /// Starts a new generation when a window has passed since the last one (at the writes,
    /// off the requests' path); returns the clients let go of, for the caller to drop once
    /// its lock is released.
    fn turn(&mut self, burst: Burst, now: Instant) -> Option<Clients> {
        let turned = *self.turned.get_or_insert(now);
        if now.duration_since(turned) < burst.window {
            return None;
        }
        self.turned = Some(now);
        Some(std::mem::replace(&mut self.older, std::mem::take(&mut self.windows)))
    }

    /// Counts one request. `reason` is what the request alone says ([`super::machine::judge`]);
    /// a counted one may still turn out to be part of a burst, now or within the window.
    pub fn record(&mut self, key: Key, client: Option<&str>, burst: Burst, now: Instant) {
        let Some(client) = client else {
            *self.changes.entry(key).or_default() += 1;
            return;
        };
        let id = (client.to_owned(), key.issue.clone());
        if !self.windows.contains_key(&id)
            && let Some(earlier) = self.older.remove(&id)
        {
            self.windows.insert(id.clone(), earlier);
        }
        let window = self.windows.entry(id).or_default();
        window.seen.retain(|(at, _, _)| now.duration_since(*at) < burst.window);
        if window.burst_until.is_some_and(|until| now < until) {
            // A burst goes on for as long as the client keeps fetching.
            window.burst_until = Some(now + burst.window);
            let key = match key.reason {
                Reason::Counted => Key {
                    reason: Reason::Burst,
                    ..key
                },
                _ => key,
            };
            *self.changes.entry(key).or_default() += 1;
            return;
        }
        // Enough to find a burst and take its clicks back; a client fetching one link over
        // and over is remembered by its latest requests only.
        if window.seen.len() >= MAX_SEEN {
            window.seen.remove(0);
        }
        let counted = (key.reason == Reason::Counted).then(|| key.clone());
        window.seen.push((now, key.what, counted));
        *self.changes.entry(key).or_default() += 1;
        let mut distinct: Vec<What> = window.seen.iter().map(|(_, w, _)| *w).collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() >= burst.links {
            window.burst_until = Some(now + burst.window);
            // Everything the client had counted within the window was the burst's.
            for (_, _, counted) in &mut window.seen {
                if let Some(key) = counted.take() {
                    *self.changes.entry(key.clone()).or_default() -= 1;
                    *self
                        .changes
                        .entry(Key {
                            reason: Reason::Burst,
                            ..key
                        })
                        .or_default() += 1;
                }
            }
        }
    }

    /// The changes to write, taken, and the clients let go of if a window has passed.
    pub fn take(&mut self, burst: Burst, now: Instant) -> (Vec<(Key, i64)>, Option<Clients>) {
        let forgotten = self.turn(burst, now);
        (self.changes.drain().filter(|(_, n)| *n != 0).collect(), forgotten)
    }

    /// How many clients are remembered now (for the tests of forgetting).
    pub fn clients(&self) -> usize {
        self.windows.len() + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Key {
        Key {
            issue: "2025-07".into(),
            what: What::Link(n),
            day: NaiveDate::from_ymd_opt(2025, 7, 1).unwrap(),
            reason: Reason::Counted,
        }
    }

    const BURST: Burst = Burst {
        links: 5,
        window: Duration::from_secs(10),
    };

    fn totals(changes: &[(Key, i64)]) -> HashMap<Reason, i64> {
        let mut t = HashMap::new();
        for (k, n) in changes {
            *t.entry(k.reason).or_default() += n;
        }
        t
    }

    #[test]
    fn a_client_fetching_every_link_at_once_is_a_burst_entirely() {
        let mut tally = Tally::default();
        let t0 = Instant::now();
        for n in 1..=8 {
            tally.record(
                key(n),
                Some("192.0.2.1"),
                BURST,
                t0 + Duration::from_millis(100 * n as u64),
            );
        }
        // A person elsewhere, clicking two links.
        tally.record(key(1), Some("198.51.100.7"), BURST, t0);
        tally.record(key(2), Some("198.51.100.7"), BURST, t0 + Duration::from_secs(3));
        let (changes, _) = tally.take(BURST, t0 + Duration::from_secs(2));
        let t = totals(&changes);
        assert_eq!((t.get(&Reason::Counted), t.get(&Reason::Burst)), (Some(&2), Some(&8)));
        assert_eq!(tally.clients(), 2);
        // Two windows pass: nothing of either client is kept.
        assert!(tally.take(BURST, t0 + Duration::from_secs(13)).0.is_empty());
        assert!(tally.take(BURST, t0 + Duration::from_secs(24)).0.is_empty());
        assert_eq!(tally.clients(), 0);
    }

    #[test]
    fn four_links_in_the_window_are_clicks_and_a_fifth_later_too() {
        let mut tally = Tally::default();
        let t0 = Instant::now();
        for n in 1..=4 {
            tally.record(key(n), Some("192.0.2.1"), BURST, t0);
        }
        tally.record(key(5), Some("192.0.2.1"), BURST, t0 + Duration::from_secs(11));
        let t = totals(&tally.take(BURST, t0 + Duration::from_secs(12)).0);
        assert_eq!((t.get(&Reason::Counted), t.get(&Reason::Burst)), (Some(&5), None));
    }
}
