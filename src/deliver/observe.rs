//! What the delivery engine is given and tells: the messages (`Job`), what happened to each
//! (`Event`), the `Observer` that records and reports it, the run's settings and outcome.

use std::time::Duration;

use lettre::address::Envelope;

use crate::transport::SendError;

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

/// Why a run stops before its end, for people: the circuit breaker's reason, a ledger that
/// cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Stop(pub String);

pub trait Observer {
    fn event(&mut self, event: &Event<'_>);

    /// Called before a message is handed to a sender: make what was recorded durable. An
    /// error stops the run.
    fn checkpoint(&mut self) -> Result<(), Stop> {
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

    fn checkpoint(&mut self) -> Result<(), Stop> {
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

    fn checkpoint(&mut self) -> Result<(), Stop> {
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
