//! The delivery loop: one dispatcher, one task per connection. The dispatcher takes each
//! message's slot from the shared throttle, gives it to a relay of the pool (by weight, within
//! each relay's rate, connections and daily limit), schedules retries with backoff, takes a
//! failing relay out of the rotation for a while, pauses between batches and stops a run that
//! fails too often.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lettre::address::Envelope;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::throttle::{TIMER_RESOLUTION, TokenBucket};
use crate::transport::{Accepted, Fault, SendError, Transport};

/// One personalized message, ready to go.
#[derive(Debug, Clone)]
pub struct Job {
    pub email: String,
    /// Line of the recipient in the CSV file (0 for test sends).
    pub line: u64,
    pub message_id: String,
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Times the relay said to slow down (not counted as attempts): each wait is longer.
    pub throttled: u32,
    /// The ledger shows it in flight when an earlier run stopped: the recipient may have it.
    pub resent_after_crash: bool,
}

/// What happened to a message; the report and the ledger follow these.
#[derive(Debug)]
pub enum Event<'a> {
    /// About to be transmitted through `relay`: from here on the server may have it.
    Sending {
        job: &'a Job,
        relay: &'a str,
    },
    Sent {
        job: &'a Job,
        reply: String,
    },
    /// A temporary failure; tried again after `delay`.
    Retrying {
        job: &'a Job,
        error: &'a SendError,
        delay: Duration,
    },
    /// Given up: a permanent failure, or temporary ones until the attempts ran out.
    Failed {
        job: &'a Job,
        error: &'a SendError,
    },
    /// Not delivered because the relay refused the sender or the message, not the recipient:
    /// pending again, for the run after the relay is fixed.
    Requeued {
        job: &'a Job,
        error: &'a SendError,
    },
    /// Not sent: the reader unsubscribed after the run had chosen them.
    Withdrawn {
        job: &'a Job,
    },
    /// Not delivered because its relay failed or refused everyone: handed to another relay,
    /// the attempt not counted.
    Rerouted {
        job: &'a Job,
        error: &'a SendError,
    },
    /// The server turned away a connection: fewer are used from now on.
    ConnectionsLowered {
        connections: usize,
        error: &'a SendError,
    },
    /// A relay of the pool left the rotation for `back_off` (it is tried again after it),
    /// or for the rest of the day (`back_off` none: its daily limit).
    RelayOut {
        relay: &'a str,
        why: &'a str,
        back_off: Option<Duration>,
    },
}

pub trait Observer {
    fn event(&mut self, event: &Event<'_>);

    /// Called before a message is handed to a sender: make what was recorded durable. An
    /// error stops the run.
    fn checkpoint(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Whether the message may still go, asked when it is taken for sending: a reader who
    /// unsubscribed while the run was going is not sent it.
    fn admit(&mut self, _job: &Job) -> bool {
        true
    }

    /// Asked before each message: `Some(why)` stops the run before it (the circuit breaker).
    fn halt(&mut self) -> Option<String> {
        None
    }
}

/// An observer that may be absent (no ledger for test sends).
impl<T: Observer> Observer for Option<T> {
    fn event(&mut self, event: &Event<'_>) {
        if let Some(o) = self {
            o.event(event);
        }
    }

    fn checkpoint(&mut self) -> Result<(), String> {
        self.as_mut().map_or(Ok(()), Observer::checkpoint)
    }

    fn admit(&mut self, job: &Job) -> bool {
        self.as_mut().is_none_or(|o| o.admit(job))
    }

    fn halt(&mut self) -> Option<String> {
        self.as_mut().and_then(Observer::halt)
    }
}

/// Two observers, e.g. the progress report and the ledger.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn event(&mut self, event: &Event<'_>) {
        self.0.event(event);
        self.1.event(event);
    }

    fn checkpoint(&mut self) -> Result<(), String> {
        self.0.checkpoint()?;
        self.1.checkpoint()
    }

    fn admit(&mut self, job: &Job) -> bool {
        self.0.admit(job) && self.1.admit(job)
    }

    fn halt(&mut self) -> Option<String> {
        self.0.halt().or_else(|| self.1.halt())
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub retries: u32,
    pub retry_delay: Duration,
    pub batch_size: Option<u64>,
    pub batch_pause: Duration,
    pub max_consecutive_failures: u32,
}

#[derive(Debug, Default)]
pub struct RunOutcome {
    pub sent: u64,
    /// Permanent failures, and temporary ones whose retries ran out.
    pub failed: u64,
    /// Of `failed`, the temporary ones: a later run tries them again.
    pub deferred: u64,
    /// Stopped by Ctrl-C or SIGTERM: in-flight messages finished, no new ones taken.
    pub interrupted: bool,
    /// Why the run stopped before the end of the list, if it did.
    pub stopped: Option<String>,
    /// Left pending because the relay refused the sender or the message (see `Event::Requeued`).
    pub requeued: u64,
    /// Ended early because every relay left reached its daily limit: the rest goes tomorrow.
    pub rested: Option<String>,
    pub elapsed: Duration,
}

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

struct Retry {
    due: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Retry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Retry {}
impl PartialOrd for Retry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Retry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// The same permanent refusal (the address taken out) for this many different recipients in
/// a row is the relay refusing the message or the sender, not the recipients.
const RELAY_REFUSAL_AFTER: usize = 3;

/// Failures of the relay itself in a row (connections refused, timeouts, 421) after which it
/// leaves the rotation.
const OUT_AFTER: u32 = 3;

/// A relay's first back-off; each further one is twice as long, up to `LONGEST_BACK_OFF`.
const FIRST_BACK_OFF: Duration = Duration::from_secs(30);
const LONGEST_BACK_OFF: Duration = Duration::from_secs(15 * 60);

/// The longest wait after a relay's "slow down" (SES's throttling).
const LONGEST_THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// Replies without trouble after which one more connection is tried, once the server has
/// turned one away; doubled after each further refusal.
const RAISE_AFTER: u64 = 100;

/// Permanent refusals that may turn out to be the relay's, held back until the next reply
/// tells which.
#[derive(Default)]
struct Suspects {
    reply: String,
    jobs: Vec<(Job, SendError)>,
}

/// The delivery loop's record of what happened, shared by its event handlers.
struct Tally<'a> {
    outcome: RunOutcome,
    settings: &'a Settings,
    observer: &'a mut dyn Observer,
    consecutive_failures: u32,
}

impl Tally<'_> {
    fn sent(&mut self, job: &Job, accepted: &Accepted) {
        self.consecutive_failures = 0;
        self.outcome.sent += 1;
        self.observer.event(&Event::Sent {
            job,
            reply: accepted.reply.clone(),
        });
    }

    fn failed(&mut self, job: &Job, error: &SendError) {
        self.consecutive_failures += 1;
        self.outcome.failed += 1;
        self.outcome.deferred += u64::from(error.is_transient());
        self.observer.event(&Event::Failed { job, error });
        if self.consecutive_failures >= self.settings.max_consecutive_failures && self.outcome.stopped.is_none() {
            self.outcome.stopped = Some(format!(
                "stopped after {} failures in a row; the last: {error}",
                self.consecutive_failures
            ));
        }
    }

    fn requeue(&mut self, job: &Job, error: &SendError) {
        self.outcome.requeued += 1;
        self.observer.event(&Event::Requeued { job, error });
    }

    /// The suspects were refused one by one after all: record them as failed.
    fn settle(&mut self, suspects: &mut Suspects) {
        for (job, error) in std::mem::take(&mut suspects.jobs) {
            self.failed(&job, &error);
        }
    }
}

/// How many senders may hold a connection; lowered when the server turns connections away,
/// raised again slowly while replies are good.
struct Connections {
    allowed: Arc<AtomicUsize>,
    raised: Arc<Notify>,
    most: usize,
    good: u64,
    raise_after: u64,
}

impl Connections {
    fn new(most: usize) -> Connections {
        Connections {
            allowed: Arc::new(AtomicUsize::new(most)),
            raised: Arc::new(Notify::new()),
            most,
            good: 0,
            raise_after: RAISE_AFTER,
        }
    }

    fn lower(&mut self) -> Option<usize> {
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

    fn good_reply(&mut self) {
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
    fn release(&self) {
        self.allowed.store(usize::MAX, Ordering::Relaxed);
        self.raised.notify_waiters();
    }
}

/// Why a relay is out of the rotation.
struct Out {
    /// Back in the rotation then; none: resting until tomorrow (its daily limit).
    until: Option<Instant>,
    why: String,
}

/// One relay as the loop runs it.
struct Relay {
    name: String,
    weight: u32,
    rate: TokenBucket,
    daily_left: Option<u64>,
    /// Messages handed to it in this run: its share against its weight.
    taken: u64,
    in_flight: usize,
    /// In flight at most: one per connection and one waiting for the first to be free.
    in_flight_limit: usize,
    work_tx: Option<mpsc::Sender<Job>>,
    connections: Connections,
    out: Option<Out>,
    /// Failures of the relay itself in a row.
    strikes: u32,
    back_off: Duration,
    suspects: Suspects,
    /// It refused the sender or the message: its permanent failures are not the recipients'.
    refused: bool,
    senders: Vec<JoinHandle<()>>,
}

/// A job that came back from a relay.
type Done = (usize, Job, Result<Accepted, SendError>);

impl Relay {
    fn start(index: usize, lane: Lane, done_tx: &mpsc::UnboundedSender<Done>) -> Relay {
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

    fn in_rotation(&self) -> bool {
        self.out.is_none()
    }

    /// Takes the relay out of the rotation for its back-off, which doubles for the next time.
    fn take_out(&mut self, why: String, observer: &mut dyn Observer) {
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
    fn strike(&mut self, error: &SendError, observer: &mut dyn Observer) {
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
enum Pick {
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
struct Pool {
    relays: Vec<Relay>,
}

impl Pool {
    fn in_flight(&self) -> usize {
        self.relays.iter().map(|r| r.in_flight).sum()
    }

    fn any_in_rotation(&self) -> bool {
        self.relays.iter().any(Relay::in_rotation)
    }

    /// The relay for the next message: the one furthest behind its share among those in the
    /// rotation whose own rate allows a message now. A relay whose connections are all busy
    /// is waited for rather than passed over, so that the shares follow the weights.
    fn pick(&mut self, now: Instant, observer: &mut dyn Observer) -> Pick {
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

/// Sends every job from `jobs` through the relays of `lanes` and reports each step to
/// `observer`.
pub async fn deliver(
    mut jobs: mpsc::Receiver<Job>,
    lanes: Vec<Lane>,
    mut throttle: TokenBucket,
    settings: &Settings,
    observer: &mut dyn Observer,
    interrupt: impl std::future::Future<Output = ()>,
) -> RunOutcome {
    let started = Instant::now();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut pool = Pool {
        relays: lanes
            .into_iter()
            .enumerate()
            .map(|(i, lane)| Relay::start(i, lane, &done_tx))
            .collect(),
    };
    drop(done_tx);
    let mut tally = Tally {
        outcome: RunOutcome::default(),
        settings,
        observer,
        consecutive_failures: 0,
    };
    let mut retries: BinaryHeap<Reverse<Retry>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut retry = |job: Job, delay: Duration, retries: &mut BinaryHeap<Reverse<Retry>>| {
        seq += 1;
        retries.push(Reverse(Retry {
            due: Instant::now() + delay,
            seq,
            job,
        }));
    };
    let mut jobs_open = true;
    let mut since_pause = 0u64;
    // The next message, waiting for its throttle slot, then for a relay.
    let mut ready: Option<(Job, Instant)> = None;
    tokio::pin!(interrupt);

    loop {
        let in_flight = pool.in_flight();
        let pausing = settings.batch_size.is_some_and(|size| since_pause >= size);
        if pausing && in_flight == 0 {
            tokio::time::sleep(settings.batch_pause).await;
            since_pause = 0;
            continue;
        }
        let stopping = tally.outcome.stopped.is_some() || tally.outcome.rested.is_some();
        if stopping {
            ready = None; // never marked: the next run sends it
        }
        if in_flight == 0 && (stopping || (!jobs_open && retries.is_empty() && ready.is_none())) {
            break;
        }
        let can_take = !stopping && !pausing && ready.is_none();
        // A slot due within the timer's resolution goes now: tokio fires a timer, even an
        // elapsed one, on its next millisecond tick, which would make every message late
        // (and cap a run near 1,000 messages/s). Slots advance by exact intervals, so sending
        // up to 1 ms early keeps the long-run rate exact.
        let now = Instant::now();
        let mut wake = ready.as_ref().map(|(_, slot)| *slot);
        let mut wait_reply = false;
        if let Some((_, due)) = &ready
            && *due <= now + TIMER_RESOLUTION
        {
            match pool.pick(now, tally.observer) {
                Pick::Relay(i) => {
                    let (job, _) = ready.take().expect("checked above");
                    if let Err(why) = dispatch(&mut pool.relays[i], job, tally.observer, &mut since_pause).await {
                        tally.outcome.stopped = Some(why);
                    }
                    continue;
                }
                Pick::At(at) => wake = Some(at),
                Pick::Reply => wait_reply = true,
                Pick::NoneLeft { why, resting: true } => {
                    tally.outcome.rested = Some(why);
                    continue;
                }
                Pick::NoneLeft { why, resting: false } => {
                    tally.outcome.stopped = Some(every_relay_out(&why));
                    continue;
                }
            }
        }
        let next_retry = retries.peek().map(|Reverse(r)| r.due);
        tokio::select! {
            biased;
            _ = &mut interrupt, if !stopping => {
                tally.outcome.interrupted = true;
                tally.outcome.stopped = Some("interrupted".into());
            }
            Some((index, mut job, result)) = done_rx.recv() => {
                let relay = &mut pool.relays[index];
                relay.in_flight -= 1;
                match result {
                    Ok(accepted) => {
                        relay.strikes = 0;
                        relay.connections.good_reply();
                        tally.settle(&mut relay.suspects);
                        tally.sent(&job, &accepted);
                    }
                    Err(error) if error.fault == Fault::Busy && !stopping && relay.connections.lower().is_some() => {
                        let connections = relay.connections.allowed.load(Ordering::Relaxed);
                        tally.observer.event(&Event::ConnectionsLowered { connections, error: &error });
                        // Not the recipient's failure: the attempt does not count.
                        job.attempts -= 1;
                        let delay = settings.retry_delay.min(Duration::from_secs(1));
                        tally.observer.event(&Event::Retrying { job: &job, error: &error, delay });
                        retry(job, delay, &mut retries);
                    }
                    Err(error) if error.fault == Fault::Throttled => {
                        // The relay's pace, not the reader's failure: the attempt does not
                        // count, and each wait doubles (up to a minute).
                        job.attempts -= 1;
                        job.throttled += 1;
                        let delay = (settings.retry_delay.max(Duration::from_millis(100))
                            * 2u32.saturating_pow(job.throttled.min(10) - 1))
                        .min(LONGEST_THROTTLE_WAIT);
                        tally.observer.event(&Event::Retrying { job: &job, error: &error, delay });
                        retry(job, delay, &mut retries);
                    }
                    Err(error) if error.is_relays() && !error.permanent => {
                        relay.strike(&error, tally.observer);
                        let elsewhere = pool.relays.iter().enumerate().any(|(i, r)| i != index && r.in_rotation());
                        if !pool.any_in_rotation() {
                            // Nowhere to go: pending for the next run, the attempt not counted.
                            tally.requeue(&job, &error);
                            if tally.outcome.stopped.is_none() {
                                tally.outcome.stopped = Some(every_relay_out(&out_reasons(&pool)));
                            }
                        } else if job.attempts <= settings.retries {
                            // Another relay takes it at once; the same one after the delay.
                            let delay = if elsewhere {
                                Duration::ZERO
                            } else {
                                settings.retry_delay * 2u32.saturating_pow(job.attempts.saturating_sub(1))
                            };
                            tally.observer.event(&Event::Retrying { job: &job, error: &error, delay });
                            retry(job, delay, &mut retries);
                        } else {
                            tally.failed(&job, &error);
                        }
                    }
                    Err(error) if error.is_transient() && job.attempts <= settings.retries => {
                        let delay = settings.retry_delay * 2u32.saturating_pow(job.attempts.saturating_sub(1));
                        tally.observer.event(&Event::Retrying { job: &job, error: &error, delay });
                        retry(job, delay, &mut retries);
                    }
                    Err(error) if error.is_transient() => tally.failed(&job, &error),
                    Err(error) => {
                        for job in refused(&mut pool, index, job, error, &mut tally) {
                            retry(job, Duration::ZERO, &mut retries);
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() && !wait_reply => {}
            _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if can_take && next_retry.is_some() => {
                if let Some(Reverse(retry)) = retries.pop() {
                    ready = Some((retry.job, throttle.reserve()));
                }
            }
            job = jobs.recv(), if can_take && jobs_open => {
                match job {
                    Some(job) => ready = Some((job, throttle.reserve())),
                    None => jobs_open = false,
                }
            }
        }
        if pool.in_flight() == 0 && (tally.outcome.stopped.is_some() || tally.outcome.rested.is_some()) {
            for relay in &mut pool.relays {
                relay.work_tx = None;
            }
        }
    }
    for relay in &mut pool.relays {
        tally.settle(&mut relay.suspects);
        relay.work_tx = None;
        relay.connections.release();
    }
    // Retries still waiting when the run ended early stay as they were recorded (deferred).
    for relay in pool.relays {
        for sender in relay.senders {
            let _ = sender.await;
        }
    }
    let mut outcome = tally.outcome;
    outcome.elapsed = started.elapsed();
    outcome
}

/// Each relay out of the rotation, with why.
fn out_reasons(pool: &Pool) -> String {
    pool.relays
        .iter()
        .filter_map(|r| r.out.as_ref().map(|o| format!("{}: {}", r.name, o.why)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn every_relay_out(why: &str) -> String {
    format!(
        "every relay is out of the rotation ({why}), so the run stopped and the recipients left stay pending; run the same command again once a relay takes mail"
    )
}

/// A permanent refusal from relay `index`: the recipient's, or the relay's when it refuses
/// the sender or gives several recipients in a row the same refusal. A relay refusing
/// everyone leaves the rotation and its messages go to the others (returned, to send again
/// at once); with no other relay, the run stops and they stay pending.
fn refused(pool: &mut Pool, index: usize, job: Job, error: SendError, tally: &mut Tally<'_>) -> Vec<Job> {
    let elsewhere = |pool: &Pool| {
        pool.relays
            .iter()
            .enumerate()
            .any(|(i, r)| i != index && r.in_rotation())
    };
    let relay = &mut pool.relays[index];
    if !error.permanent {
        tally.failed(&job, &error);
        return Vec::new();
    }
    let mut put_back = Vec::new();
    if relay.refused {
        put_back.push((job, error));
    } else if matches!(error.fault, Fault::Local | Fault::Mailbox) {
        tally.settle(&mut relay.suspects);
        tally.failed(&job, &error);
        return Vec::new();
    } else {
        let what = if error.fault == Fault::Sender {
            "the relay refused the sender".to_owned()
        } else {
            let same = error.refusal.clone();
            if relay.suspects.reply != same {
                tally.settle(&mut relay.suspects);
                relay.suspects.reply = same;
            }
            if relay.suspects.jobs.len() + 1 < RELAY_REFUSAL_AFTER {
                relay.suspects.jobs.push((job, error));
                return Vec::new();
            }
            format!("the relay gave {RELAY_REFUSAL_AFTER} different recipients in a row the same refusal")
        };
        let reply = error.detail.clone();
        relay.refused = true;
        put_back.push((job, error));
        put_back.append(&mut relay.suspects.jobs);
        if elsewhere(pool) {
            pool.relays[index].take_out(format!("{what}: {reply}"), tally.observer);
        } else if pool.relays.len() > 1 {
            // The last relay of a pool: the run stops, naming every relay's reason.
            pool.relays[index].take_out(format!("{what}: {reply}"), tally.observer);
            tally.outcome.stopped = Some(every_relay_out(&out_reasons(pool)));
        } else {
            tally.outcome.stopped = Some(format!(
                "{what}, so the run stopped and those recipients stay pending (nothing was recorded against them): {reply}; fix the relay or the sender (from.address, return_path, smtp.username) and run the same command again"
            ));
        }
    }
    if elsewhere(pool) && tally.outcome.stopped.is_none() {
        return put_back
            .into_iter()
            .map(|(mut job, error)| {
                job.attempts -= 1;
                tally.observer.event(&Event::Rerouted {
                    job: &job,
                    error: &error,
                });
                job
            })
            .collect();
    }
    for (job, error) in &put_back {
        tally.requeue(job, error);
    }
    Vec::new()
}

/// Records the message as being sent through `relay`, makes that durable, then hands it over.
async fn dispatch(
    relay: &mut Relay,
    mut job: Job,
    observer: &mut dyn Observer,
    since_pause: &mut u64,
) -> Result<(), String> {
    if let Some(why) = observer.halt() {
        return Err(why); // never marked: a later run sends it
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
