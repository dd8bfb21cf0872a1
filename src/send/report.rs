//! What a send tells the person running it, through [`Say`]: the report of a dry run, the
//! rows skipped, the failures, the final summary, and the run's progress. The library only
//! says; `commands/` prints (a progress bar on a terminal, a log line every few seconds
//! otherwise, so cron mail stays short).

use std::time::Duration;

use tokio::time::Instant;

use std::path::{Path, PathBuf};

use super::queue::Plan;
use crate::compile::Rendered;
use crate::config::Config;
use crate::config::Rate;
use crate::deliver::run::{Event, Observer, RunOutcome};
use crate::human::{duration, thousands};
use crate::recipients::Recipient;

/// Failures kept for the summary; the rest are counted.
const FAILURES_KEPT: usize = 1000;

/// Where a send's words go. `commands/send.rs` prints them; a test may keep them.
pub trait Say {
    /// A line of the send's report (standard output): what a dry run found, the summary.
    fn report(&mut self, line: &str);
    /// A warning, a note or a failure (standard error), above the progress display if any.
    fn note(&mut self, line: &str);
    /// How the run is going, after each message that is done.
    fn progress(&mut self, _progress: &RunProgress) {}
    /// The run ended: the progress display goes.
    fn done(&mut self) {}
}

/// How far a run is, for its progress display.
#[derive(Debug, Clone, Copy)]
pub struct RunProgress {
    pub total: u64,
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub started: Instant,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub line: u64,
    pub email: String,
    pub reply: String,
}

/// The run as it goes: counts for the progress display, the failures for the end, and the
/// warnings said once.
pub struct Progress<'a> {
    say: &'a mut dyn Say,
    quiet: bool,
    counts: RunProgress,
    /// The server turned a connection away and the run uses fewer.
    lowered: bool,
    failures: Vec<Failure>,
}

impl<'a> Progress<'a> {
    pub fn new(total: u64, quiet: bool, say: &'a mut dyn Say) -> Progress<'a> {
        Progress {
            say,
            quiet,
            counts: RunProgress {
                total,
                sent: 0,
                failed: 0,
                retried: 0,
                started: Instant::now(),
            },
            lowered: false,
            failures: Vec::new(),
        }
    }

    fn tick(&mut self) {
        if !self.quiet {
            self.say.progress(&self.counts);
        }
    }

    /// A warning for the user, unless quiet.
    fn warn(&mut self, line: &str) {
        if !self.quiet {
            self.say.note(&format!("warning: {line}"));
        }
    }

    /// The run ended: the failures it kept, and the progress display gone.
    pub fn finish(self) -> Vec<Failure> {
        self.say.done();
        self.failures
    }
}

impl Observer for Progress<'_> {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Sending { .. } | Event::Requeued { .. } | Event::Rerouted { .. } => return,
            Event::RelayOut { relay, why, back_off } => {
                self.warn(&match back_off {
                    Some(back_off) => format!(
                        "relay {relay} left the rotation for {} ({why}); its messages go to the others",
                        duration(*back_off)
                    ),
                    None => format!("relay {relay} rests until tomorrow: {why}"),
                });
                return;
            }
            Event::Withdrawn { job } => {
                tracing::info!("line {}: unsubscribed during the run, not sent", job.line);
                return;
            }
            Event::ConnectionsLowered { connections, error } => {
                // Said once: the rest of the run adapts without further words.
                if !self.lowered {
                    self.lowered = true;
                    self.warn(&format!(
                        "the server turned a connection away ({error}): sending over {connections} connection{} for now, more again while replies are good",
                        if *connections == 1 { "" } else { "s" }
                    ));
                }
                return;
            }
            Event::Sent { .. } => self.counts.sent += 1,
            Event::Retrying { job, error, delay } => {
                self.counts.retried += 1;
                tracing::debug!("{}: {error}; retrying in {}", job.email, duration(*delay));
            }
            Event::Failed { job, error } => {
                self.counts.failed += 1;
                if self.failures.len() < FAILURES_KEPT {
                    self.failures.push(Failure {
                        line: job.line,
                        email: job.email.clone(),
                        reply: error.reply(),
                    });
                }
            }
        }
        self.tick();
    }
}

/// The .eml files a dry run wrote.
pub struct Written {
    pub count: u64,
    pub dir: PathBuf,
}

/// What a dry run found, for people.
pub fn dry_run(
    say: &mut dyn Say,
    config: &Config,
    rendered: &Rendered,
    list: &Path,
    plan: &Plan,
    rate: Rate,
    written: &Written,
) {
    let skipped: Vec<String> = plan
        .skipped
        .iter()
        .map(|(reason, n)| format!("{} {}", thousands(*n), reason.label()))
        .collect();
    let t = &config.throttle;
    say.report(&format!("Dry run of '{}': nothing was sent.", rendered.subject));
    say.report(&format!(
        "Recipients read: {} from {}",
        thousands(plan.rows),
        list.display()
    ));
    if plan.subscribers > 0 {
        say.report(&format!(
            "Subscribers:     {} confirmed in the ledger and not in the list",
            thousands(plan.subscribers)
        ));
    }
    say.report(&format!("To send:         {}", thousands(plan.to_send)));
    say.report(&format!(
        "Skipped:         {}{}",
        thousands(plan.skipped_total()),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join(", "))
        }
    ));
    if plan.already_sent + plan.already_failed + plan.suppressed + plan.resend > 0 {
        say.report(&format!("Ledger:          {}", resume_counts(plan)));
    }
    if let Some(selection) = plan.selection.describe() {
        say.report(&format!(
            "Selection:       {selection}: {} outside the segment, {} held back by --limit",
            thousands(plan.outside),
            thousands(plan.held_back)
        ));
    }
    say.report(&format!(
        "Throttle:        {rate}, {} connections{}",
        t.concurrency,
        t.batch_size
            .map(|b| format!(
                ", pause {} after every {b}",
                crate::config::duration::format(&t.batch_pause)
            ))
            .unwrap_or_default()
    ));
    say.report(&format!("Estimated time:  {}", eta(plan.to_send, rate)));
    say.report(&format!(
        "Wrote {} message{} to {}",
        thousands(written.count),
        if written.count == 1 { "" } else { "s" },
        written.dir.display()
    ));
}

/// The recipients a plan skipped, the first of them by line.
pub fn skipped(say: &mut dyn Say, list: &Path, plan: &Plan) {
    const SHOWN: usize = 20;
    for s in plan.skipped_rows.iter().take(SHOWN) {
        say.note(&format!(
            "skipped: {}:{}: {}: {}",
            list.display(),
            s.line,
            s.reason.label(),
            s.detail
        ));
    }
    let total = plan.skipped_total();
    if total > SHOWN as u64 {
        say.note(&format!(
            "skipped: ... and {} more rows",
            thousands(total - SHOWN as u64)
        ));
    }
    // Every one of these: the list still holds someone who asked to be forgotten.
    for line in &plan.forgotten_rows {
        say.note(&format!(
            "skipped: {}:{line}: the address was forgotten at the person's request (`newsletter subscribers forget`) and is never mailed: delete the row",
            list.display()
        ));
    }
}

/// What the ledger already held for a resumed send.
pub fn resume_counts(plan: &Plan) -> String {
    format!(
        "{} already sent, {} failed before, {} suppressed, {} possibly duplicated (in flight when a run stopped)",
        thousands(plan.already_sent),
        thousands(plan.already_failed),
        thousands(plan.suppressed),
        thousands(plan.resend)
    )
}

/// How long `count` messages take at `rate`.
pub fn eta(count: u64, rate: Rate) -> String {
    match rate.per_second() {
        Some(r) => duration(Duration::from_secs_f64(count as f64 / r)),
        None => "as fast as the server accepts".into(),
    }
}

/// The recipients a run could not send to, each with its list and line.
pub fn failures(
    say: &mut dyn Say,
    issue: &str,
    list: Option<&Path>,
    failed: &[Failure],
    unpersonalized: &[(Recipient, String)],
) {
    let at = |line: u64| match list {
        Some(list) => format!("{}:{line} ", list.display()),
        None => String::new(),
    };
    for f in failed {
        say.note(&format!("failed: {issue}: {}{}: {}", at(f.line), f.email, f.reply));
    }
    for (r, why) in unpersonalized {
        say.note(&format!("failed: {issue}: {}{}: {why}", at(r.line), r.email));
    }
}

/// The run's last line, naming its issue.
/// `not_sent`: the list's other readers, as [`not_sent`] says them.
pub fn summary(
    say: &mut dyn Say,
    issue: &str,
    outcome: &RunOutcome,
    total: u64,
    failed: u64,
    suppressed: u64,
    not_sent: Option<&str>,
) {
    let secs = outcome.elapsed.as_secs_f64().max(0.001);
    say.report(&format!(
        "{issue}: Sent {} of {} in {} ({:.1}/s); {} failed{}.{}",
        thousands(outcome.sent),
        thousands(total),
        duration(outcome.elapsed),
        outcome.sent as f64 / secs,
        thousands(failed),
        if suppressed > 0 {
            format!(", {suppressed} of them suppressed from now on (mailbox does not exist)")
        } else {
            String::new()
        },
        not_sent.map(|n| format!(" Not sent: {n}.")).unwrap_or_default()
    ));
}

/// Everyone of the list a run did not send to, and why: `1 skipped (invalid address: line 3),
/// 2 suppressed, 5 already sent`. None when it sent to everyone.
pub fn not_sent(plan: &Plan) -> Option<String> {
    let mut parts = Vec::new();
    let skipped = plan.skipped_total();
    if skipped > 0 {
        let mut reasons: Vec<String> = plan
            .skipped
            .iter()
            .map(|(reason, n)| {
                let lines: Vec<String> = plan
                    .skipped_rows
                    .iter()
                    .filter(|r| r.reason == *reason)
                    .take(5)
                    .map(|r| r.line.to_string())
                    .collect();
                let more = if *n > lines.len() as u64 { ", …" } else { "" };
                let word = if lines.len() == 1 { "line" } else { "lines" };
                format!(
                    "{} {}: {word} {}{more}",
                    thousands(*n),
                    reason.label(),
                    lines.join(", ")
                )
            })
            .collect();
        reasons.sort();
        parts.push(format!("{} skipped ({})", thousands(skipped), reasons.join("; ")));
    }
    for (n, what) in [
        (plan.suppressed, "suppressed or forgotten"),
        (plan.already_sent, "already sent"),
        (plan.already_failed, "failed in an earlier run"),
        (plan.outside, "outside the segment"),
        (plan.held_back, "left for a later run"),
    ] {
        if n > 0 {
            parts.push(format!("{} {what}", thousands(n)));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The groups the mass guard held back, one warning each.
pub fn held(say: &mut dyn Say, groups: &[crate::ledger::HeldGroup], limit: u32) {
    for group in groups {
        let what = if group.id == 0 {
            "a real run would hold them for `newsletter bounces review`".to_owned()
        } else {
            format!("see `newsletter bounces review {}`", group.id)
        };
        say.note(&format!(
            "warning: not suppressed: {} readers at {} failed with one diagnostic, more than bounces.mass_guard ({limit}): \"{}\"; {what}",
            group.readers,
            group.domain,
            group.diagnostic.chars().take(200).collect::<String>(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_durations_read_like_prose() {
        assert_eq!(thousands(54321), "54,321");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(duration(Duration::from_secs(5432)), "1h 30m");
        assert_eq!(duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(duration(Duration::from_secs(42)), "42s");
    }
}
