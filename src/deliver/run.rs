//! The delivery loop: one dispatcher, one task per connection. The dispatcher hands out
//! messages, schedules retries with backoff, pauses between batches and stops a run that
//! fails too often; each sender takes a token from the shared throttle before every message.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lettre::AsyncTransport;
use lettre::address::Envelope;
use lettre::transport::smtp::response::Response;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::time::Instant;

use super::reply::{mailbox_does_not_exist, without_recipient};
use super::smtp::{SendError, Stage};
use super::throttle::{TIMER_RESOLUTION, TokenBucket};

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
    /// The ledger shows it in flight when an earlier run stopped: the recipient may have it.
    pub resent_after_crash: bool,
}

/// What happened to a message; the report and the ledger follow these.
#[derive(Debug)]
pub enum Event<'a> {
    /// About to be transmitted: from here on the server may have it.
    Sending {
        job: &'a Job,
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
    /// The server turned away a connection: fewer are used from now on.
    ConnectionsLowered {
        connections: usize,
        error: &'a SendError,
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
    pub elapsed: Duration,
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
    suspects: Suspects,
    /// The relay refused the sender or the message: every permanent failure from now on is
    /// put back rather than recorded against a recipient.
    relay_refused: bool,
}

impl Tally<'_> {
    fn sent(&mut self, job: &Job, response: &Response) {
        self.settle_suspects();
        self.consecutive_failures = 0;
        self.outcome.sent += 1;
        let reply = response.message().collect::<Vec<_>>().join(" ");
        self.observer.event(&Event::Sent {
            job,
            reply: format!("{} {reply}", response.code()),
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
    fn settle_suspects(&mut self) {
        for (job, error) in std::mem::take(&mut self.suspects.jobs) {
            self.failed(&job, &error);
        }
    }

    /// A permanent refusal: the recipient's, or the relay's when it refuses the sender or
    /// gives several recipients in a row the same refusal.
    fn refused(&mut self, job: Job, error: SendError) {
        let SendError::Permanent { reply, stage } = &error else {
            return self.failed(&job, &error);
        };
        if self.relay_refused {
            return self.requeue(&job, &error);
        }
        if *stage == Stage::Local || mailbox_does_not_exist(reply) {
            self.settle_suspects();
            return self.failed(&job, &error);
        }
        let what = if *stage == Stage::Sender {
            "the relay refused the sender".to_owned()
        } else {
            let same = without_recipient(reply, &job.email);
            if self.suspects.reply != same {
                self.settle_suspects();
                self.suspects.reply = same;
            }
            if self.suspects.jobs.len() + 1 < RELAY_REFUSAL_AFTER {
                self.suspects.jobs.push((job, error));
                return;
            }
            format!("the relay gave {RELAY_REFUSAL_AFTER} different recipients in a row the same refusal")
        };
        self.relay_refused = true;
        self.outcome.stopped = Some(format!(
            "{what}, so the run stopped and those recipients stay pending (nothing was recorded against them): {reply}; fix the relay or the sender (from.address, return_path, smtp.username) and run the same command again"
        ));
        self.requeue(&job, &error);
        for (job, error) in std::mem::take(&mut self.suspects.jobs) {
            self.requeue(&job, &error);
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

/// Sends every job from `jobs` through `transports` (one sender each, so the number of
/// transports is the most connections used) and reports each step to `observer`.
pub async fn deliver<T>(
    mut jobs: mpsc::Receiver<Job>,
    transports: Vec<T>,
    mut throttle: TokenBucket,
    settings: &Settings,
    observer: &mut dyn Observer,
    interrupt: impl std::future::Future<Output = ()>,
) -> RunOutcome
where
    T: AsyncTransport<Ok = Response, Error = SendError> + Send + Sync + 'static,
{
    let started = Instant::now();
    let concurrency = transports.len().max(1);
    // A message is marked `sending` when its slot comes and at most one marked message waits
    // for a free sender: that one is ready the moment a sender finishes, instead of after the
    // ledger's commit (a third more messages a second on one connection), and a crash reports
    // at most one message too many as possibly duplicated.
    let in_flight_limit = concurrency + 1;
    let (work_tx, work_rx) = mpsc::channel::<Job>(in_flight_limit);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Job, Result<Response, SendError>)>();
    let mut connections = Connections {
        allowed: Arc::new(AtomicUsize::new(concurrency)),
        raised: Arc::new(Notify::new()),
        most: concurrency,
        good: 0,
        raise_after: RAISE_AFTER,
    };
    let mut senders = Vec::new();
    for (index, transport) in transports.into_iter().enumerate() {
        let work_rx = Arc::clone(&work_rx);
        let done_tx = done_tx.clone();
        let allowed = Arc::clone(&connections.allowed);
        let raised = Arc::clone(&connections.raised);
        senders.push(tokio::spawn(async move {
            loop {
                // Beyond the number allowed: close the connection, wait to be needed again.
                while index >= allowed.load(Ordering::Relaxed) {
                    let wake = raised.notified();
                    transport.shutdown().await;
                    if index < allowed.load(Ordering::Relaxed) {
                        break;
                    }
                    wake.await;
                }
                let Some(job) = work_rx.lock().await.recv().await else {
                    break;
                };
                let result = transport.send_raw(&job.envelope, &job.bytes).await;
                if done_tx.send((job, result)).is_err() {
                    break;
                }
            }
            transport.shutdown().await;
        }));
    }
    drop(done_tx);

    let mut tally = Tally {
        outcome: RunOutcome::default(),
        settings,
        observer,
        consecutive_failures: 0,
        suspects: Suspects::default(),
        relay_refused: false,
    };
    let mut retries: BinaryHeap<Reverse<Retry>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut in_flight = 0usize;
    let mut jobs_open = true;
    let mut since_pause = 0u64;
    let mut work_tx = Some(work_tx);
    // The next message, waiting for its throttle slot.
    let mut ready: Option<(Job, Instant)> = None;
    tokio::pin!(interrupt);

    loop {
        let pausing = settings.batch_size.is_some_and(|size| since_pause >= size);
        if pausing && in_flight == 0 {
            tokio::time::sleep(settings.batch_pause).await;
            since_pause = 0;
            continue;
        }
        let stopping = tally.outcome.stopped.is_some();
        if stopping {
            ready = None; // never marked: the next run sends it
        }
        let can_take = !stopping && !pausing && in_flight < in_flight_limit && ready.is_none();
        if in_flight == 0 && (stopping || (!jobs_open && retries.is_empty() && ready.is_none())) {
            break;
        }
        let slot = ready.as_ref().map(|(_, slot)| *slot);
        let next_retry = retries.peek().map(|Reverse(r)| r.due);
        let Some(tx) = work_tx.as_ref() else { break };
        // A slot due within the timer's resolution goes now: tokio fires a timer, even an
        // elapsed one, on its next millisecond tick, which would make every message late
        // (and cap a run near 1,000 messages/s). Slots advance by exact intervals, so sending
        // up to 1 ms early keeps the long-run rate exact.
        if let Some((_, due)) = &ready
            && *due <= Instant::now() + TIMER_RESOLUTION
        {
            let (job, _) = ready.take().expect("checked above");
            if let Err(why) = dispatch(tx, job, tally.observer, &mut in_flight, &mut since_pause).await {
                tally.outcome.stopped = Some(why);
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = &mut interrupt, if !stopping => {
                tally.outcome.interrupted = true;
                tally.outcome.stopped = Some("interrupted".into());
            }
            Some((mut job, result)) = done_rx.recv() => {
                in_flight -= 1;
                match result {
                    Ok(response) => {
                        connections.good_reply();
                        tally.sent(&job, &response);
                    }
                    Err(error @ SendError::Busy { .. }) if !stopping && connections.lower().is_some() => {
                        let connections = connections.allowed.load(Ordering::Relaxed);
                        tally.observer.event(&Event::ConnectionsLowered { connections, error: &error });
                        // Not the recipient's failure: the attempt does not count.
                        job.attempts -= 1;
                        let delay = settings.retry_delay.min(Duration::from_secs(1));
                        tally.observer.event(&Event::Retrying { job: &job, error: &error, delay });
                        seq += 1;
                        retries.push(Reverse(Retry { due: Instant::now() + delay, seq, job }));
                    }
                    Err(error) if error.is_transient() && job.attempts <= settings.retries => {
                        let delay = settings.retry_delay * 2u32.saturating_pow(job.attempts.saturating_sub(1));
                        tally.observer.event(&Event::Retrying { job: &job, error: &error, delay });
                        seq += 1;
                        retries.push(Reverse(Retry { due: Instant::now() + delay, seq, job }));
                    }
                    Err(error) if error.is_transient() => tally.failed(&job, &error),
                    Err(error) => tally.refused(job, error),
                }
            }
            _ = tokio::time::sleep_until(slot.unwrap_or_else(Instant::now)), if slot.is_some() => {
                if let Some((job, _)) = ready.take()
                    && let Err(why) = dispatch(tx, job, tally.observer, &mut in_flight, &mut since_pause).await
                {
                    tally.outcome.stopped = Some(why);
                }
            }
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
        if in_flight == 0 && tally.outcome.stopped.is_some() {
            work_tx = None;
        }
    }
    tally.settle_suspects();
    drop(work_tx);
    connections.release();
    for sender in senders {
        let _ = sender.await;
    }
    let mut outcome = tally.outcome;
    outcome.elapsed = started.elapsed();
    outcome
}

/// Records the message as being sent, makes that durable, then hands it to a sender.
async fn dispatch(
    tx: &mpsc::Sender<Job>,
    mut job: Job,
    observer: &mut dyn Observer,
    in_flight: &mut usize,
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
    observer.event(&Event::Sending { job: &job });
    observer.checkpoint()?;
    *in_flight += 1;
    *since_pause += 1;
    // Senders only stop when this channel closes, so the send cannot fail here.
    let _ = tx.send(job).await;
    Ok(())
}
