//! The delivery loop: one dispatcher, one task per connection. The dispatcher takes each
//! message's slot from the shared throttle, gives it to a relay of the pool (by weight, within
//! each relay's rate, connections and daily limit), schedules retries with backoff, takes a
//! failing relay out of the rotation for a while, pauses between batches and stops a run that
//! fails too often.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

pub use super::observe::{Event, Job, Observer, RunOutcome, Settings, Stop};
pub use super::relays::Lane;
use super::relays::{Done, Pick, Pool, Relay, Suspects, dispatch, every_relay_out, out_reasons};
use super::throttle::{TIMER_RESOLUTION, TokenBucket};
use crate::transport::{Accepted, Fault, SendError};

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

/// The longest wait after a relay's "slow down" (SES's throttling).
const LONGEST_THROTTLE_WAIT: Duration = Duration::from_secs(60);

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
                        tally.outcome.stopped = Some(why.0);
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
