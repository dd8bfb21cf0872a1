//! Guard-rails for the sender's reputation: the warm-up's daily cap for a new account or
//! domain, and the circuit breaker that stops a send whose hard bounces or complaints climb
//! (SES reviews an account at 5% bounces or 0.1% complaints; Gmail's limit for spam reports
//! is 0.3%).

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};

use crate::config::{Breaker, Warmup};
use crate::human::thousands;
use crate::ledger::{BounceCounts, IssueRates, Ledger};

/// The cap of day `day` (0: the first day of sending); `None` once the ramp is over.
pub fn daily_cap(warmup: &Warmup, day: i64) -> Option<u64> {
    let last = i64::from(warmup.days) - 1;
    if day > last {
        return None;
    }
    if last <= 0 {
        return Some(warmup.until);
    }
    let growth = warmup.until as f64 / warmup.start as f64;
    let cap = warmup.start as f64 * growth.powf(day.max(0) as f64 / last as f64);
    Some((cap.round() as u64).clamp(warmup.start, warmup.until))
}

/// Where today stands on the ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Today {
    /// 1-based, for people.
    pub day: i64,
    pub days: u32,
    pub cap: u64,
    /// Messages first tried today, over every issue.
    pub used: u64,
}

impl Today {
    pub fn left(&self) -> u64 {
        self.cap.saturating_sub(self.used)
    }

    /// `day 3 of 42: 1,234 of 1,500 sent today`.
    pub fn describe(&self) -> String {
        format!(
            "warm-up day {} of {}: {} of today's {} sent",
            self.day,
            self.days,
            thousands(self.used),
            thousands(self.cap)
        )
    }
}

/// Today's cap and use at `now`, when a warm-up is configured and not over; without a
/// ledger nothing was sent yet, and today is the first day.
pub fn today(warmup: Option<&Warmup>, ledger: Option<&Ledger>, now: DateTime<Utc>) -> Result<Option<Today>> {
    let Some(warmup) = warmup else {
        return Ok(None);
    };
    let today = now.date_naive();
    let first = match ledger {
        Some(l) => l.first_send()?,
        None => None,
    }
    .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
    .map_or(today, |at| at.with_timezone(&Utc).date_naive());
    let day = (today - first).num_days();
    let Some(cap) = daily_cap(warmup, day) else {
        return Ok(None);
    };
    let midnight = start_of(today);
    Ok(Some(Today {
        day: day + 1,
        days: warmup.days,
        cap,
        used: match ledger {
            Some(l) => l.messages_since(&midnight)?,
            None => 0,
        },
    }))
}

fn start_of(day: NaiveDate) -> String {
    format!("{}T00:00:00.000Z", day.format("%Y-%m-%d"))
}

/// `n` of `of` in per cent (0 of nothing is 0%).
pub fn percent(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 * 100.0 / of as f64 }
}

/// An issue's returns against its sent messages, and what a relay or mailbox provider would
/// act on: `status` shows them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Health {
    /// Per cent of the recipients sent to.
    pub hard_bounce_rate: f64,
    pub soft_bounce_rate: f64,
    pub complaint_rate: f64,
    pub warnings: Vec<String>,
}

/// The issue's rates and warnings, judged by the circuit breaker's limits (the same that
/// stop a send: SES reviews at 5% bounces or 0.1% complaints).
pub fn health(bounces: &BounceCounts, sent: u64, limits: &Breaker) -> Health {
    let (hard, soft, complaints) = (
        percent(bounces.hard, sent),
        percent(bounces.soft, sent),
        percent(bounces.complaints, sent),
    );
    let mut warnings = Vec::new();
    if hard + soft > limits.hard_bounce_percent {
        warnings.push(format!(
            "bounce rate {:.2}% is over {}%: relays (Amazon SES, Google) review or suspend senders past it; clean the list",
            hard + soft,
            limits.hard_bounce_percent
        ));
    }
    if complaints > limits.complaint_percent {
        warnings.push(format!(
            "complaint rate {complaints:.3}% is over {}% (Gmail's limit is 0.3%): readers are marking it as spam",
            limits.complaint_percent
        ));
    }
    if bounces.blocked > 0 {
        warnings.push(format!(
            "{} of {} recipient(s) refused the message as from us (policy, spam, reputation, authentication): a problem with our sending, not with them; see `newsletter status --bounces`",
            thousands(bounces.blocked),
            thousands(sent)
        ));
    }
    Health {
        hard_bounce_rate: hard,
        soft_bounce_rate: soft,
        complaint_rate: complaints,
        warnings,
    }
}

/// Why `rates` trip the breaker, if they do: one line with the rate, the limit and what to do.
pub fn tripped(breaker: &Breaker, issue: &str, rates: IssueRates) -> Option<String> {
    if rates.messages < breaker.min_messages.max(1) {
        return None;
    }
    let percent = |n: u64| n as f64 * 100.0 / rates.messages as f64;
    let (what, rate, limit, key) = if percent(rates.hard) >= breaker.hard_bounce_percent {
        (
            "hard bounces",
            percent(rates.hard),
            breaker.hard_bounce_percent,
            "hard_bounce_percent",
        )
    } else if percent(rates.complaints) >= breaker.complaint_percent {
        (
            "complaints",
            percent(rates.complaints),
            breaker.complaint_percent,
            "complaint_percent",
        )
    } else {
        return None;
    };
    Some(format!(
        "stopped by the circuit breaker: {what} are {rate:.2}% of the {} messages of {issue} so far (limit {limit}%, throttle.breaker.{key}); see `newsletter status {issue} --bounces`, clean the list, then `newsletter send {issue} --resume-despite-rates` to go on deliberately",
        thousands(rates.messages)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_grows_exponentially_from_start_to_until_then_ends() {
        let w = Warmup {
            start: 200,
            until: 200_000,
            days: 42,
        };
        assert_eq!(daily_cap(&w, 0), Some(200));
        // 200 × 1000^(1/41)
        assert_eq!(daily_cap(&w, 1), Some(237));
        assert_eq!(daily_cap(&w, 41), Some(200_000));
        assert_eq!(daily_cap(&w, 42), None);
        let one = Warmup {
            start: 50,
            until: 80,
            days: 1,
        };
        assert_eq!((daily_cap(&one, 0), daily_cap(&one, 1)), (Some(80), None));
    }

    #[test]
    fn health_warns_past_the_breaker_s_limits() {
        let limits = Breaker::default();
        let counts = |hard, soft, complaints, blocked| BounceCounts {
            hard,
            soft,
            complaints,
            blocked,
            delayed: 0,
        };
        let fine = health(&counts(30, 10, 0, 0), 1000, &limits);
        assert_eq!((fine.hard_bounce_rate, fine.soft_bounce_rate), (3.0, 1.0));
        assert!(fine.warnings.is_empty());
        let bad = health(&counts(40, 20, 2, 3), 1000, &limits);
        assert_eq!(bad.warnings.len(), 3, "{:?}", bad.warnings);
        assert!(
            bad.warnings[0].starts_with("bounce rate 6.00% is over 5%"),
            "{:?}",
            bad.warnings
        );
        assert!(
            bad.warnings[1].starts_with("complaint rate 0.200% is over 0.1%"),
            "{:?}",
            bad.warnings
        );
        assert!(bad.warnings[2].starts_with("3 of 1,000 recipient(s) refused the message as from us"));
        assert_eq!(
            health(&counts(0, 0, 0, 0), 0, &limits).hard_bounce_rate,
            0.0,
            "nothing sent"
        );
    }

    #[test]
    fn the_breaker_trips_at_either_limit_once_enough_went() {
        let b = Breaker::default();
        let rates = |messages, hard, complaints| IssueRates {
            messages,
            hard,
            complaints,
        };
        assert_eq!(tripped(&b, "x", rates(499, 400, 0)), None, "too few to judge");
        assert_eq!(tripped(&b, "x", rates(1000, 49, 0)), None);
        let hard = tripped(&b, "2025-07", rates(1000, 50, 0)).unwrap();
        assert!(
            hard.contains("hard bounces are 5.00% of the 1,000 messages of 2025-07 so far (limit 5%"),
            "{hard}"
        );
        assert!(hard.contains("--resume-despite-rates"));
        assert_eq!(tripped(&b, "x", rates(1000, 0, 0)), None);
        let complaints = tripped(&b, "x", rates(2000, 0, 2)).unwrap();
        assert!(complaints.contains("complaints are 0.10%"), "{complaints}");
    }
}
