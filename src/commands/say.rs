//! What a send says, printed: its report on standard output, notes and warnings on standard
//! error, and its progress as a bar on a terminal or a log line every few seconds otherwise
//! (so cron mail stays short).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use newsletter::human::{duration, thousands};
use newsletter::send::report::{RunProgress, Say};

const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Printer {
    /// Standard error is a terminal: a bar, else log lines. Asked once, not per message.
    terminal: bool,
    bar: Option<ProgressBar>,
    last_log: Option<std::time::Instant>,
}

impl Default for Printer {
    fn default() -> Self {
        Printer {
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            last_log: None,
        }
    }
}

impl Say for Printer {
    fn report(&mut self, line: &str) {
        println!("{line}");
    }

    fn note(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn progress(&mut self, p: &RunProgress) {
        let elapsed = p.started.elapsed();
        let rate = p.sent as f64 / elapsed.as_secs_f64().max(0.001);
        if self.terminal {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(p.total);
                bar.set_style(
                    ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} sent, {msg}, ETA {eta}")
                        .expect("the template is valid"),
                );
                bar
            });
            bar.set_position(p.sent);
            bar.set_message(format!("{} failed, {rate:.1}/s", p.failed));
            return;
        }
        let since = self.last_log.map_or(elapsed, |t| t.elapsed());
        if since < LOG_EVERY {
            return;
        }
        self.last_log = Some(std::time::Instant::now());
        let left = p.total.saturating_sub(p.sent + p.failed);
        let eta = if rate > 0.0 {
            format!(", about {} left", duration(Duration::from_secs_f64(left as f64 / rate)))
        } else {
            String::new()
        };
        eprintln!(
            "sent {} of {}, {} failed, {} retried, {:.1}/s{eta}",
            thousands(p.sent),
            thousands(p.total),
            thousands(p.failed),
            thousands(p.retried),
            rate
        );
    }

    fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
