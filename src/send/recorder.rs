//! Writes a run's events into the ledger, committing before each message goes out, and
//! marks for suppression the addresses a server says do not exist (settled through the mass
//! guard when the run ends).

use anyhow::Result;
use serde_json::json;

use super::reputation;
use crate::bounces::guard;
use crate::config::Breaker;
use crate::deliver::run::{Event, Job, Observer, Stop};
use crate::ledger::{IssueRates, Ledger};
use crate::readers::Kind;
use crate::transport::Fault;

/// Records a run's events in the ledger, committing before each message goes out.
pub struct Recorder<'a> {
    pub ledger: &'a mut Ledger,
    pub issue: &'a str,
    pub error: Option<String>,
    /// The circuit breaker; none when the send goes on despite the rates.
    breaker: Option<Breaker>,
    /// Messages asked about so far: the breaker looks at every CHECK_EVERY-th.
    since_check: u64,
    /// The issue's messages before this run (read once), and those this run finished.
    earlier: Option<u64>,
    finished: u64,
}

/// The breaker reads the issue's rates before the first message and then every so many: the
/// counts take a few milliseconds on a large list.
const CHECK_EVERY: u64 = 50;

impl<'a> Recorder<'a> {
    pub fn new(ledger: &'a mut Ledger, issue: &'a str, breaker: Option<Breaker>) -> Recorder<'a> {
        Recorder {
            ledger,
            issue,
            error: None,
            breaker,
            since_check: 0,
            earlier: None,
            finished: 0,
        }
    }

    fn record(&mut self, event: &Event<'_>) -> Result<()> {
        // An outcome is committed at once: the write lock is never held while the run waits
        // for a throttle slot, so `serve` can record unsubscribes in between. (A `sending`
        // row is committed by `checkpoint`, before its message goes.)
        if !matches!(event, Event::Sending { .. }) {
            self.record_event(event)?;
            self.ledger.commit()?;
            return Ok(());
        }
        self.record_event(event)
    }

    fn record_event(&mut self, event: &Event<'_>) -> Result<()> {
        match event {
            Event::Sending { job, relay } => self.ledger.record_sending(
                self.issue,
                &job.email,
                job.line,
                &job.message_id,
                job.resent_after_crash,
                relay,
            )?,
            Event::Sent { job, reply } => {
                self.finished += 1;
                self.ledger.record_outcome(self.issue, &job.email, "sent", reply)?
            }
            Event::Retrying { job, error, .. } => {
                self.ledger
                    .record_outcome(self.issue, &job.email, "deferred", &error.reply())?
            }
            Event::Requeued { job, error } | Event::Rerouted { job, error } => {
                self.ledger.record_unsent(self.issue, &job.email, &error.reply())?
            }
            Event::ConnectionsLowered { .. } | Event::Withdrawn { .. } | Event::RelayOut { .. } => {}
            Event::Failed { job, error } => {
                let reply = error.reply();
                let status = if error.is_transient() { "deferred" } else { "failed" };
                self.finished += u64::from(!error.is_transient());
                self.ledger.record_outcome(self.issue, &job.email, status, &reply)?;
                if error.fault == Fault::Mailbox {
                    // Suppressed at the end of the run, through the mass guard.
                    guard::defer(
                        self.ledger,
                        &guard::Deferred {
                            email: &job.email,
                            issue: Some(self.issue),
                            kind: Kind::HardBounce,
                            source: "send",
                            diagnostic: &reply,
                            evidence: json!({ "diagnostic": reply, "message_id": job.message_id }),
                        },
                    )?;
                }
            }
        }
        Ok(())
    }
}

impl Observer for Recorder<'_> {
    fn event(&mut self, event: &Event<'_>) {
        if self.error.is_none()
            && let Err(e) = self.record(event)
        {
            self.error = Some(format!(
                "cannot write the ledger {}: {e:#}",
                self.ledger.path().display()
            ));
        }
    }

    fn admit(&mut self, job: &Job) -> bool {
        // When the list cannot be read the message goes: the run's start checked it.
        !self.ledger.is_suppressed(&job.email).unwrap_or(false)
    }

    fn halt(&mut self) -> Option<String> {
        let breaker = self.breaker?;
        let due = self.since_check.is_multiple_of(CHECK_EVERY);
        self.since_check += 1;
        if !due {
            return None;
        }
        // The messages are counted as they finish: a pass over a large issue's deliveries
        // every few messages would make a send quadratic.
        let rates = (|| -> Result<IssueRates> {
            let earlier = match self.earlier {
                Some(n) => n,
                None => *self.earlier.insert(self.ledger.issue_messages(self.issue)?),
            };
            let (hard, complaints) = self.ledger.issue_returns(self.issue)?;
            Ok(IssueRates {
                messages: earlier + self.finished,
                hard,
                complaints,
            })
        })();
        match rates {
            Ok(rates) => reputation::tripped(&breaker, self.issue, rates),
            Err(e) => Some(format!(
                "cannot read the ledger {}: {e:#}",
                self.ledger.path().display()
            )),
        }
    }

    fn checkpoint(&mut self) -> Result<(), Stop> {
        if let Some(e) = &self.error {
            return Err(Stop(e.clone()));
        }
        self.ledger
            .commit()
            .map_err(|e| Stop(format!("cannot write the ledger {}: {e}", self.ledger.path().display())))
    }
}
