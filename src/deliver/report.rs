//! What a send tells its user: a progress bar on a terminal, a log line every few seconds
//! otherwise (so cron mail stays short), and a final summary.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use std::path::{Path, PathBuf};

use super::queue::Plan;
use super::run::{Event, Observer, RunOutcome};
use crate::compile::Rendered;
use crate::config::Config;
use crate::config::Rate;
use crate::human::{duration, thousands};
use crate::recipients::Recipient;

/// Failures kept for the summary; the rest are counted.
const FAILURES_KEPT: usize = 1000;
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Failure {
    pub line: u64,
    pub email: String,
    pub reply: String,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    total: u64,
    sent: u64,
    failed: u64,
    retried: u64,
    /// The server turned a connection away and the run uses fewer.
    lowered: bool,
    /// Unsubscribed while the run was going: not sent.
    pub withdrawn: u64,
    pub failures: Vec<Failure>,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    pub fn new(total: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} sent, {msg}, ETA {eta}")
                    .expect("the template is valid"),
            );
            bar.set_message("0 failed");
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            quiet,
            total,
            sent: 0,
            failed: 0,
            retried: 0,
            lowered: false,
            withdrawn: 0,
            failures: Vec::new(),
            started: now,
            last_log: now,
        }
    }

    fn tick(&mut self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.sent);
            let rate = self.sent as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!("{} failed, {rate:.1}/s", self.failed));
        } else if !self.quiet && self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            let rate = self.sent as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            let left = self.total.saturating_sub(self.sent + self.failed);
            let eta = if rate > 0.0 {
                format!(", about {} left", duration(Duration::from_secs_f64(left as f64 / rate)))
            } else {
                String::new()
            };
            eprintln!(
                "sent {} of {}, {} failed, {} retried, {:.1}/s{eta}",
                thousands(self.sent),
                thousands(self.total),
                thousands(self.failed),
                thousands(self.retried),
                rate
            );
        }
    }

    /// A line for the user, above the bar when there is one.
    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("warning: {line}")),
            None if !self.quiet => eprintln!("warning: {line}"),
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Sending { .. } | Event::Requeued { .. } | Event::Rerouted { .. } => return,
            Event::RelayOut { relay, why, back_off } => {
                self.say(&match back_off {
                    Some(back_off) => format!(
                        "relay {relay} left the rotation for {} ({why}); its messages go to the others",
                        duration(*back_off)
                    ),
                    None => format!("relay {relay} rests until tomorrow: {why}"),
                });
                return;
            }
            Event::Withdrawn { job } => {
                self.withdrawn += 1;
                tracing::info!("line {}: unsubscribed during the run, not sent", job.line);
                return;
            }
            Event::ConnectionsLowered { connections, error } => {
                // Said once: the rest of the run adapts without further words.
                if !self.lowered {
                    self.lowered = true;
                    self.say(&format!(
                        "the server turned a connection away ({error}): sending over {connections} connection{} for now, more again while replies are good",
                        if *connections == 1 { "" } else { "s" }
                    ));
                }
                return;
            }
            Event::Sent { .. } => self.sent += 1,
            Event::Retrying { job, error, delay } => {
                self.retried += 1;
                tracing::debug!("{}: {error}; retrying in {}", job.email, duration(*delay));
            }
            Event::Failed { job, error } => {
                self.failed += 1;
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
pub fn dry_run(config: &Config, rendered: &Rendered, list: &Path, plan: &Plan, rate: Rate, written: &Written) {
    let skipped: Vec<String> = plan
        .skipped
        .iter()
        .map(|(reason, n)| format!("{} {}", thousands(*n), reason.label()))
        .collect();
    let t = &config.throttle;
    println!("Dry run of '{}': nothing was sent.", rendered.subject);
    println!("Recipients read: {} from {}", thousands(plan.rows), list.display());
    if plan.subscribers > 0 {
        println!(
            "Subscribers:     {} confirmed in the ledger and not in the list",
            thousands(plan.subscribers)
        );
    }
    println!("To send:         {}", thousands(plan.to_send));
    println!(
        "Skipped:         {}{}",
        thousands(plan.skipped_total()),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join(", "))
        }
    );
    if plan.already_sent + plan.already_failed + plan.suppressed + plan.resend > 0 {
        println!("Ledger:          {}", resume_counts(plan));
    }
    if let Some(selection) = plan.selection.describe() {
        println!(
            "Selection:       {selection}: {} outside the segment, {} held back by --limit",
            thousands(plan.outside),
            thousands(plan.held_back)
        );
    }
    println!(
        "Throttle:        {rate}, {} connections{}",
        t.concurrency,
        t.batch_size
            .map(|b| format!(
                ", pause {} after every {b}",
                crate::config::duration::format(&t.batch_pause)
            ))
            .unwrap_or_default()
    );
    println!("Estimated time:  {}", eta(plan.to_send, rate));
    println!(
        "Wrote {} message{} to {}",
        thousands(written.count),
        if written.count == 1 { "" } else { "s" },
        written.dir.display()
    );
}

/// The recipients a plan skipped, the first of them by line.
pub fn skipped(list: &Path, plan: &Plan) {
    const SHOWN: usize = 20;
    for s in plan.skipped_rows.iter().take(SHOWN) {
        eprintln!(
            "skipped: {}:{}: {}: {}",
            list.display(),
            s.line,
            s.reason.label(),
            s.detail
        );
    }
    let total = plan.skipped_total();
    if total > SHOWN as u64 {
        eprintln!("skipped: ... and {} more rows", thousands(total - SHOWN as u64));
    }
    // Every one of these: the list still holds someone who asked to be forgotten.
    for line in &plan.forgotten_rows {
        eprintln!(
            "skipped: {}:{line}: the address was forgotten at the person's request (`newsletter subscribers forget`) and is never mailed: delete the row",
            list.display()
        );
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
pub fn failures(issue: &str, list: Option<&Path>, failed: &[Failure], unpersonalized: &[(Recipient, String)]) {
    let at = |line: u64| match list {
        Some(list) => format!("{}:{line} ", list.display()),
        None => String::new(),
    };
    for f in failed {
        eprintln!("failed: {issue}: {}{}: {}", at(f.line), f.email, f.reply);
    }
    for (r, why) in unpersonalized {
        eprintln!("failed: {issue}: {}{}: {why}", at(r.line), r.email);
    }
}

/// The run's last line, naming its issue.
/// `not_sent`: the list's other readers, as [`not_sent`] says them.
pub fn summary(issue: &str, outcome: &RunOutcome, total: u64, failed: u64, suppressed: u64, not_sent: Option<&str>) {
    let secs = outcome.elapsed.as_secs_f64().max(0.001);
    println!(
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
    );
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
pub fn held(groups: &[crate::ledger::HeldGroup], limit: u32) {
    for group in groups {
        let what = if group.id == 0 {
            "a real run would hold them for `newsletter bounces review`".to_owned()
        } else {
            format!("see `newsletter bounces review {}`", group.id)
        };
        eprintln!(
            "warning: not suppressed: {} readers at {} failed with one diagnostic, more than bounces.mass_guard ({limit}): \"{}\"; {what}",
            group.readers,
            group.domain,
            group.diagnostic.chars().take(200).collect::<String>(),
        );
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
