//! The relays of a send (`smtp:`, one relay or a pool): each one's transports, its own rate
//! and what its daily limit leaves for today.

use anyhow::{Context, Result, bail};

use crate::config::{Config, Smtp};
use crate::deliver::run::Lane;
use crate::deliver::throttle::{Rate, TokenBucket};
use crate::human::thousands;
use crate::ledger::Ledger;
use crate::transport;

/// Says which relay an error is about, in a pool.
fn whose(config: &Config, relay: &Smtp) -> String {
    if config.smtp.pooled {
        format!("relay {}: ", relay.name())
    } else {
        String::new()
    }
}

/// What each relay's daily limit leaves for today (`None`: no limit), from the ledger's count
/// of the messages each took today (UTC).
pub fn daily_left(
    config: &Config,
    ledger: Option<&Ledger>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Option<u64>>> {
    let day = now.format("%Y-%m-%d").to_string();
    config
        .smtp
        .relays
        .iter()
        .map(|relay| {
            let Some(limit) = relay.daily_limit else {
                return Ok(None);
            };
            let used = match ledger {
                Some(l) => l.relay_messages_on(&relay.name(), &day)?,
                None => 0,
            };
            Ok(Some(limit.saturating_sub(used)))
        })
        .collect()
}

/// The pool for people: `a (weight 3, 4 connections, 20/s), b (weight 1, 4 connections, 60 of 100 left today)`.
pub fn describe(config: &Config, daily_left: &[Option<u64>]) -> String {
    config
        .smtp
        .relays
        .iter()
        .zip(daily_left)
        .map(|(relay, left)| {
            let mut parts = vec![
                format!("weight {}", relay.weight),
                format!(
                    "{} connections",
                    relay.concurrency.unwrap_or(config.throttle.concurrency)
                ),
            ];
            if let Some(rate) = &relay.rate {
                parts.push(rate.clone());
            }
            if let (Some(limit), Some(left)) = (relay.daily_limit, left) {
                parts.push(format!("{} of {} left today", thousands(*left), thousands(limit)));
            }
            format!("{} ({})", relay.name(), parts.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The most the pool takes today: when every relay has a daily limit, what they leave.
pub fn left_today(daily_left: &[Option<u64>]) -> Option<u64> {
    daily_left.iter().copied().sum()
}

/// Opens the relays for a run. Each relay is reached here (an SMTP relay's first connection,
/// SES's sending quota), so that a refusal, a TLS or a login failure shows before any
/// message. In a pool, a relay that cannot be reached is left out of this run with a warning;
/// when none can, the first's error stops the send. Relays at their daily limit are left out.
pub async fn open(
    config: &Config,
    daily_left: &[Option<u64>],
    quiet: bool,
    say: &mut dyn super::report::Say,
) -> Result<Vec<Lane>> {
    let t = &config.throttle;
    let mut lanes = Vec::new();
    let mut first_error = None;
    for (relay, left) in config.smtp.relays.iter().zip(daily_left) {
        if *left == Some(0) {
            continue;
        }
        let mut rate: Rate = match &relay.rate {
            Some(rate) => rate
                .parse()
                .map_err(|e| anyhow::anyhow!("{}rate: {e}", whose(config, relay)))?,
            None => Rate::Unlimited,
        };
        let concurrency = relay.concurrency.unwrap_or(t.concurrency).max(1);
        // The relay's transports, if it can be reached.
        let opened = transport::open(config, relay, concurrency)
            .await
            .with_context(|| whose(config, relay))?
            .map(|opened| {
                // The account's own limit (SES's MaxSendRate) caps the relay's rate.
                if let Some(max) = opened.max_rate
                    && rate.per_second().is_none_or(|r| r > max)
                {
                    rate = Rate::PerSecond(max);
                }
                opened.transports
            });
        let transports = match opened {
            Ok(transports) => transports,
            Err(e) if config.smtp.pooled => {
                if !quiet {
                    say.note(&format!("warning: relay {} is left out of this run: {e}", relay.name()));
                }
                first_error.get_or_insert(e);
                continue;
            }
            Err(e) => bail!("{}{e}", whose(config, relay)),
        };
        lanes.push(Lane {
            name: relay.name(),
            weight: relay.weight,
            transports,
            rate: TokenBucket::new(rate, t.burst),
            daily_left: *left,
        });
    }
    if lanes.is_empty() {
        match first_error {
            Some(e) => bail!("no relay of the pool can be reached; the first: {e}"),
            None => bail!("every relay is at its daily limit (smtp: daily_limit): the rest goes tomorrow"),
        }
    }
    Ok(lanes)
}

/// One relay's part in an issue's send, for `status`.
#[derive(Debug, Default, serde::Serialize)]
pub struct RelayStanding {
    pub relay: String,
    /// The issue's messages it took, by how they stand.
    pub sent: u64,
    pub failed: u64,
    pub deferred: u64,
    pub sending: u64,
    /// Messages it took today over every issue, and its limit.
    pub today: u64,
    pub daily_limit: Option<u64>,
}

/// Each relay's part in `issue`: the configured relays in order, then any other the ledger
/// names (a relay since removed, `unknown` for messages sent before pools).
pub fn standing(config: &Config, ledger: &Ledger, issue: &str) -> Result<Vec<RelayStanding>> {
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut out: Vec<RelayStanding> = config
        .smtp
        .relays
        .iter()
        .map(|r| {
            Ok(RelayStanding {
                relay: r.name(),
                today: ledger.relay_messages_on(&r.name(), &day)?,
                daily_limit: r.daily_limit,
                ..Default::default()
            })
        })
        .collect::<Result<_>>()?;
    for (relay, status, n) in ledger.relay_counts(issue)? {
        let relay = relay.unwrap_or_else(|| "unknown".into());
        let at = match out.iter().position(|r| r.relay == relay) {
            Some(at) => at,
            None => {
                out.push(RelayStanding {
                    today: ledger.relay_messages_on(&relay, &day)?,
                    relay,
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let r = &mut out[at];
        match status.as_str() {
            "sent" => r.sent += n,
            "failed" => r.failed += n,
            "deferred" => r.deferred += n,
            _ => r.sending += n,
        }
    }
    Ok(out)
}
