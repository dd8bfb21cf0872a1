//! The relays of a run as the engine drives them: each one's connections (lowered when the
//! server turns one away, raised again slowly), its share by weight, its strikes, back-off and
//! rest, and the sender task of each connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::observe::{Event, Job, Observer, Stop};
use super::throttle::{TIMER_RESOLUTION, TokenBucket};
use crate::transport::{Accepted, SendError, Transport};

/// One relay of the pool, as the loop is given it.
pub struct Lane {
    pub name: String,
    /// Its share of the messages.
    pub weight: u32,
    /// One per connection: their number is the most connections used.
    pub transports: Vec<Box<dyn Transport>>,
    /// The relay's own rate (unlimited when it has none).
    pub rate: TokenBucket,
    /// Messages it may still take today; none for no limit.
    pub daily_left: Option<u64>,
}

/// Failures of the relay itself in a row (connections refused, timeouts, 421) after which it
/// leaves the rotation.
pub(super) const OUT_AFTER: u32 = 3;

/// A relay's first back-off; each further one is twice as long, up to `LONGEST_BACK_OFF`.
pub(super) const FIRST_BACK_OFF: Duration = Duration::from_secs(30);

pub(super) const LONGEST_BACK_OFF: Duration = Duration::from_secs(15 * 60);

/// Replies without trouble after which one more connection is tried, once the server has
/// turned one away; doubled after each further refusal.
pub(super) const RAISE_AFTER: u64 = 100;

/// Permanent refusals that may turn out to be the relay's, held back until the next reply
/// tells which.
#[derive(Default)]
pub(super) struct Suspects {
    pub(super) reply: String,
    pub(super) jobs: Vec<(Job, SendError)>,
}

/// How many senders may hold a connection; lowered when the server turns connections away,
/// raised again slowly while replies are good.
pub(super) struct Connections {
    pub(super) allowed: Arc<AtomicUsize>,
    pub(super) raised: Arc<Notify>,
    pub(super) most: usize,
    pub(super) good: u64,
    pub(super) raise_after: u64,
}

impl Connections {
    pub(super) fn new(most: usize) -> Connections {
        Connections {
            allowed: Arc::new(AtomicUsize::new(most)),
            raised: Arc::new(Notify::new()),
            most,
            good: 0,
            raise_after: RAISE_AFTER,
        }
    }

    pub(super) fn lower(&mut self) -> Option<usize> {
        let now = self.allowed.load(Ordering::Relaxed);
        if now <= 1 {
            return None;
        }
        self.allowed.store(now - 1, Ordering::Relaxed);
        self.good = 0;
        if now < self.most {
            self.raise_after *= 2;
        }
        Some(now - 1)
    }

    pub(super) fn good_reply(&mut self) {
        let now = self.allowed.load(Ordering::Relaxed);
        if now >= self.most {
            return;
        }
        self.good += 1;
        if self.good >= self.raise_after {
            self.good = 0;
            self.allowed.store(now + 1, Ordering::Relaxed);
            self.raised.notify_waiters();
        }
    }

    /// Lets every waiting sender go, to see that the work has ended.
    pub(super) fn release(&self) {
        self.allowed.store(usize::MAX, Ordering::Relaxed);
        self.raised.notify_waiters();
    }
}

/// Why a relay is out of the rotation.
pub(super) struct Out {
    /// Back in the rotation then; none: resting until tomorrow (its daily limit).
    pub(super) until: Option<Instant>,
    pub(super) why: String,
}

/// One relay as the loop runs it.
pub(super) struct Relay {
    pub(super) name: String,
    pub(super) weight: u32,
    pub(super) rate: TokenBucket,
    pub(super) daily_left: Option<u64>,
    /// Messages handed to it in this run: its share against its weight.
    pub(super) taken: u64,
    pub(super) in_flight: usize,
    /// In flight at most: one per connection and one waiting for the first to be free.
    pub(super) in_flight_limit: usize,
    pub(super) work_tx: Option<mpsc::Sender<Job>>,
    pub(super) connections: Connections,
    pub(super) out: Option<Out>,
    /// Failures of the relay itself in a row.
    pub(super) strikes: u32,
    pub(super) back_off: Duration,
    pub(super) suspects: Suspects,
    /// It refused the sender or the message: its permanent failures are not the recipients'.
    pub(super) refused: bool,
    pub(super) senders: Vec<JoinHandle<()>>,
}

/// A job that came back from a relay.
pub(super) type Done = (usize, Job, Result<Accepted, SendError>);

impl Relay {
    pub(super) fn start(index: usize, lane: Lane, done_tx: &mpsc::UnboundedSender<Done>) -> Relay {
        let concurrency = lane.transports.len().max(1);
        // A message is marked `sending` when its slot comes and at most one marked message
        // waits for a free sender: that one is ready the moment a sender finishes, instead of
        // after the ledger's commit (a third more messages a second on one connection), and a
        // crash reports at most one message too many as possibly duplicated.
        let (work_tx, work_rx) = mpsc::channel::<Job>(concurrency + 1);
        let work_rx = Arc::new(Mutex::new(work_rx));
        let connections = Connections::new(concurrency);
        let mut senders = Vec::new();
        for (slot, transport) in lane.transports.into_iter().enumerate() {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            let allowed = Arc::clone(&connections.allowed);
            let raised = Arc::clone(&connections.raised);
            senders.push(tokio::spawn(async move {
                loop {
                    // Beyond the number allowed: close the connection, wait to be needed again.
                    while slot >= allowed.load(Ordering::Relaxed) {
                        let wake = raised.notified();
                        transport.shutdown().await;
                        if slot < allowed.load(Ordering::Relaxed) {
                            break;
                        }
                        wake.await;
                    }
                    let Some(job) = work_rx.lock().await.recv().await else {
                        break;
                    };
                    let result = transport.send(&job.envelope, &job.bytes).await;
                    if done_tx.send((index, job, result)).is_err() {
                        break;
                    }
                }
                transport.shutdown().await;
            }));
        }
        Relay {
            name: lane.name,
            weight: lane.weight.max(1),
            rate: lane.rate,
            daily_left: lane.daily_left,
            taken: 0,
            in_flight: 0,
            in_flight_limit: concurrency + 1,
            work_tx: Some(work_tx),
            connections,
            out: None,
            strikes: 0,
            back_off: FIRST_BACK_OFF,
            suspects: Suspects::default(),
            refused: false,
            senders,
        }
    }

    pub(super) fn in_rotation(&self) -> bool {
        self.out.is_none()
    }

    /// Takes the relay out of the rotation for its back-off, which doubles for the next time.
    pub(super) fn take_out(&mut self, why: String, observer: &mut dyn Observer) {
        let back_off = self.back_off;
        self.back_off = (self.back_off * 2).min(LONGEST_BACK_OFF);
        observer.event(&Event::RelayOut {
            relay: &self.name,
            why: &why,
            back_off: Some(back_off),
        });
        self.out = Some(Out {
            until: Some(Instant::now() + back_off),
            why,
        });
    }

    /// A failure of the relay rather than of the message: out of the rotation after several.
    pub(super) fn strike(&mut self, error: &SendError, observer: &mut dyn Observer) {
        self.strikes += 1;
        if self.strikes >= OUT_AFTER && self.in_rotation() {
            self.take_out(
                format!("{} failures of its own in a row, the last: {error}", self.strikes),
                observer,
            );
        }
    }
}

/// Where the next message goes.
pub(super) enum Pick {
    Relay(usize),
    /// Every relay in the rotation waits for its own rate: look again then.
    At(Instant),
    /// The relay whose turn it is has every connection busy: wait for a reply.
    Reply,
    /// No relay is left: why, and whether it is only daily limits (the run ends early, no
    /// error).
    NoneLeft {
        why: String,
        resting: bool,
    },
}

/// The relays of a run.
pub(super) struct Pool {
    pub(super) relays: Vec<Relay>,
}

impl Pool {
    pub(super) fn in_flight(&self) -> usize {
        self.relays.iter().map(|r| r.in_flight).sum()
    }

    pub(super) fn any_in_rotation(&self) -> bool {
        self.relays.iter().any(Relay::in_rotation)
    }

    /// The relay for the next message: the one furthest behind its share among those in the
    /// rotation whose own rate allows a message now. A relay whose connections are all busy
    /// is waited for rather than passed over, so that the shares follow the weights.
    pub(super) fn pick(&mut self, now: Instant, observer: &mut dyn Observer) -> Pick {
        for relay in &mut self.relays {
            if relay.out.as_ref().is_some_and(|o| o.until.is_some_and(|t| t <= now)) {
                // Back from its back-off: one more failure takes it out again.
                relay.out = None;
                relay.strikes = OUT_AFTER - 1;
                relay.refused = false;
            }
            if relay.in_rotation() && relay.daily_left == Some(0) {
                let why = "its daily limit (daily_limit) is reached; it takes messages again tomorrow".to_owned();
                observer.event(&Event::RelayOut {
                    relay: &relay.name,
                    why: &why,
                    back_off: None,
                });
                relay.out = Some(Out { until: None, why });
            }
        }
        let mut order: Vec<usize> = (0..self.relays.len())
            .filter(|&i| self.relays[i].in_rotation())
            .collect();
        if order.is_empty() {
            let resting = self
                .relays
                .iter()
                .all(|r| r.out.as_ref().is_some_and(|o| o.until.is_none()));
            return Pick::NoneLeft {
                why: out_reasons(self),
                resting,
            };
        }
        // Furthest behind its share first: taken / weight, compared without division.
        order.sort_by(|&a, &b| {
            let (a, b) = (&self.relays[a], &self.relays[b]);
            (u128::from(a.taken) * u128::from(b.weight)).cmp(&(u128::from(b.taken) * u128::from(a.weight)))
        });
        let mut earliest: Option<Instant> = None;
        for i in order {
            let relay = &self.relays[i];
            let slot = relay.rate.next_slot(now);
            if slot > now + TIMER_RESOLUTION {
                earliest = Some(earliest.map_or(slot, |e| e.min(slot)));
                continue;
            }
            if relay.in_flight >= relay.in_flight_limit {
                return Pick::Reply;
            }
            return Pick::Relay(i);
        }
        Pick::At(earliest.unwrap_or(now))
    }
}

/// Each relay out of the rotation, with why.
pub(super) fn out_reasons(pool: &Pool) -> String {
    pool.relays
        .iter()
        .filter_map(|r| r.out.as_ref().map(|o| format!("{}: {}", r.name, o.why)))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn every_relay_out(why: &str) -> String {
    format!(
        "every relay is out of the rotation ({why}), so the run stopped and the recipients left stay pending; run the same command again once a relay takes mail"
    )
}

/// Records the message as being sent through `relay`, makes that durable, then hands it over.
pub(super) async fn dispatch(
    relay: &mut Relay,
    mut job: Job,
    observer: &mut dyn Observer,
    since_pause: &mut u64,
) -> Result<(), Stop> {
    if let Some(why) = observer.halt() {
        return Err(Stop(why)); // never marked: a later run sends it
    }
    if !observer.admit(&job) {
        observer.event(&Event::Withdrawn { job: &job });
        return Ok(());
    }
    job.attempts += 1;
    observer.event(&Event::Sending {
        job: &job,
        relay: &relay.name,
    });
    observer.checkpoint()?;
    relay.rate.reserve();
    relay.taken += 1;
    relay.in_flight += 1;
    if let Some(left) = &mut relay.daily_left {
        *left = left.saturating_sub(1);
    }
    *since_pause += 1;
    if let Some(tx) = &relay.work_tx {
        // Senders only stop when this channel closes, so the send cannot fail here.
        let _ = tx.send(job).await;
    }
    Ok(())
}
