//! One delivery run of a send: the relays opened, the throttle, the messages made ahead of
//! the senders, progress and, for a real send, the ledger; then what the run says at its end.

use std::path::Path;

use anyhow::{Result, bail};

use super::pool;
use super::queue::Composer;
use super::recorder::Recorder;
use super::report::{self, Progress, Say};
use crate::bounces::guard;
use crate::compile::Rendered;
use crate::config::Config;
use crate::deliver::run::{self, Settings};
use crate::deliver::throttle::{Rate, TokenBucket};
use crate::ledger::Ledger;
use crate::recipients::Recipient;

/// Messages personalized ahead of the senders: enough to keep them busy, few enough that a
/// long list never sits in memory.
const QUEUE_DEPTH: usize = 32;

/// How a send ended, when it ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Success,
    /// Some recipients failed.
    Problems,
    /// Stopped by Ctrl-C or SIGTERM after recording what was in flight.
    Interrupted,
}

/// One delivery run: connections, throttle, progress and, for real sends, the ledger.
pub(super) struct Session<'a> {
    pub(super) config: &'a Config,
    pub(super) composer: &'a Composer<'a>,
    pub(super) rate: Rate,
    pub(super) quiet: bool,
    pub(super) total: u64,
    /// The recipient list, to name with the line of a failed recipient (none for test sends).
    pub(super) list: Option<&'a Path>,
    pub(super) ledger: Option<(&'a mut Ledger, &'a Rendered)>,
    /// Where the run's words go.
    pub(super) say: &'a mut dyn Say,
    /// How the run chose its recipients, for the ledger.
    pub(super) selection: Option<String>,
    /// The run sends to part of the issue's audience (--where, --limit): it never completes it.
    pub(super) partial: bool,
    /// The circuit breaker of a real send, unless it goes on despite the rates.
    pub(super) breaker: Option<crate::config::Breaker>,
    /// The list's readers the run does not send to, and why (for the summary).
    pub(super) not_sent: Option<String>,
    /// What each relay's daily limit leaves for today.
    pub(super) daily_left: Vec<Option<u64>>,
    /// The `projects` values of the readers to send: their editions are compiled ahead.
    pub(super) choices: Vec<String>,
}

impl Session<'_> {
    /// The editions the plan met compile on every core from the start, while the relays are
    /// reached (connections, TLS, logins): the producer finds them made, or waits for the one
    /// it needs, never compiling one under a lock the others wait on.
    pub(super) fn run(mut self, recipients: impl Iterator<Item = (Recipient, bool)> + Send) -> Result<Completion> {
        let composer = self.composer;
        let choices = std::mem::take(&mut self.choices);
        std::thread::scope(|scope| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            scope.spawn(move || composer.compile_ahead(&choices, cores));
            self.deliver(recipients)
        })
    }

    fn deliver(self, recipients: impl Iterator<Item = (Recipient, bool)> + Send) -> Result<Completion> {
        let config = self.config;
        // One thread drives every connection; the producer personalizes and signs on others.
        let runtime = crate::runtime()?;
        // Refused, TLS and login failures stop the run here, before any message.
        let lanes = runtime.block_on(pool::open(config, &self.daily_left, self.quiet, &mut *self.say))?;
        let t = &config.throttle;
        let settings = Settings {
            retries: t.retries,
            retry_delay: t.retry_delay,
            batch_size: t.batch_size.filter(|b| *b > 0),
            batch_pause: t.batch_pause,
            max_consecutive_failures: t.max_consecutive_failures.max(1),
        };
        let throttle = TokenBucket::new(self.rate, t.burst);
        let mut ledger_run = match self.ledger {
            Some((ledger, rendered)) => {
                let run = ledger.start_issue(
                    &rendered.slug,
                    &rendered.subject,
                    &rendered.content_hash(),
                    self.selection.as_deref(),
                    self.list,
                )?;
                Some((ledger, rendered.slug.as_str(), run))
            }
            None => None,
        };
        let recorder = ledger_run
            .as_mut()
            .map(|(ledger, issue, _)| Recorder::new(ledger, issue, self.breaker));
        let mut observers = (Progress::new(self.total, self.quiet, &mut *self.say), recorder);
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_DEPTH);
        let composer = self.composer;
        let (outcome, unpersonalized) = std::thread::scope(|scope| {
            // Signing (about 0.6 ms a message) on every core; personalizing alone (40 us) is
            // faster on one thread than the extra threads' competition with the senders'.
            let workers = match composer.dkim {
                Some(_) => std::thread::available_parallelism().map_or(1, usize::from),
                None => 1,
            };
            let producer = scope.spawn(move || composer.produce(crate::choice::grouped(recipients), tx, workers));
            let outcome = runtime.block_on(run::deliver(
                rx,
                lanes,
                throttle,
                &settings,
                &mut observers,
                interrupted(),
            ));
            (outcome, producer.join().unwrap_or_default())
        });
        let (progress, recorder) = observers;
        let failures = progress.finish();
        let say = self.say;
        for warning in self.composer.made.take_warnings() {
            say.note(&warning);
        }
        let ledger_error = recorder.and_then(|r| r.error);
        let mut suppressed = 0;

        let failed = outcome.failed + unpersonalized.len() as u64;
        let issue = self.composer.issue();
        report::failures(say, issue, self.list, &failures, &unpersonalized);
        if let Some((ledger, _, run)) = ledger_run {
            let complete = !self.partial
                && outcome.rested.is_none()
                && !outcome.interrupted
                && outcome.stopped.is_none()
                && outcome.deferred == 0
                && unpersonalized.is_empty()
                && ledger_error.is_none();
            let ended = match (&outcome.stopped, complete, &self.selection) {
                (Some(why), _, _) => why.clone(),
                (None, false, _) if outcome.rested.is_some() => {
                    "the relays' daily limits: the rest goes tomorrow".to_owned()
                }
                (None, true, _) => "complete".to_owned(),
                (None, false, Some(selection)) if self.partial => format!("part of the list: {selection}"),
                (None, false, _) => "incomplete: temporary failures left for the next run".to_owned(),
            };
            ledger.finish_run(
                run,
                outcome.sent,
                failed,
                outcome.elapsed.as_secs_f64(),
                &ended,
                complete,
            )?;
            // The addresses the server refused as missing: suppressed now, unless too many
            // at one domain failed alike (then held for `bounces review`).
            let settled = guard::settle(ledger, config.bounces.mass_guard)?;
            suppressed = settled.actions.values().filter(|a| a.starts_with("suppressed")).count() as u64;
            report::held(say, &settled.held, config.bounces.mass_guard);
        }
        if !self.quiet || failed > 0 {
            report::summary(
                say,
                issue,
                &outcome,
                self.total,
                failed,
                suppressed,
                self.not_sent.as_deref(),
            );
        }
        if let Some(e) = ledger_error {
            bail!("{e}");
        }
        if let Some(why) = &outcome.rested
            && !self.quiet
        {
            say.report(&format!(
                "{issue}: every relay left rests until tomorrow ({why}); the rest goes then"
            ));
        }
        if outcome.interrupted {
            say.note(
                "Interrupted: in-flight messages finished and were recorded; run the same command again to resume.",
            );
            return Ok(Completion::Interrupted);
        }
        if let Some(why) = outcome.stopped {
            bail!("{issue}: {why}");
        }
        Ok(if failed > 0 {
            Completion::Problems
        } else {
            Completion::Success
        })
    }
}

/// Resolves on Ctrl-C or SIGTERM: the run then stops taking recipients and lets the messages
/// in flight finish.
pub async fn interrupted() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            },
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
