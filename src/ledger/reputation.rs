//! What the reputation guard-rails read: how much was sent each day, and an issue's hard
//! bounces and complaints against its messages.

use anyhow::Result;

use super::Ledger;

/// An issue's messages so far and the readers who bounced hard or complained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IssueRates {
    /// Messages the server took or refused for good.
    pub messages: u64,
    /// Readers whose message bounced hard: reports read by `bounces`, and the addresses the
    /// server refused as missing during the send.
    pub hard: u64,
    pub complaints: u64,
}

impl Ledger {
    /// When the first message of any issue was first tried (RFC 3339), if one was.
    pub fn first_send(&self) -> Result<Option<String>> {
        Ok(self.conn.query_row(
            "SELECT min(t) FROM (SELECT min(first_at) AS t FROM deliveries
                                     UNION ALL SELECT min(first_at) FROM pruned_issues)",
            [],
            |r| r.get(0),
        )?)
    }

    /// Messages first tried at or after `since` (RFC 3339), over every issue.
    pub fn messages_since(&self, since: &str) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM deliveries WHERE first_at >= ?1")?
            .query_row([since], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The issue's messages so far: a pass over its deliveries, for the start of a run.
    pub fn issue_messages(&self, issue: &str) -> Result<u64> {
        if let Some(pruned) = self.pruned(issue)? {
            return Ok(pruned.counts.sent + pruned.counts.failed);
        }
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM deliveries WHERE issue = ?1 AND status IN ('sent', 'failed')")?
            .query_row([issue], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The issue's readers who bounced hard or complained: through indexes, cheap to ask
    /// again and again during a run.
    pub fn issue_returns(&self, issue: &str) -> Result<(u64, u64)> {
        if let Some(pruned) = self.pruned(issue)? {
            return Ok(pruned.returns);
        }
        let (hard, complaints): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT
                    (SELECT count(*) FROM (
                        SELECT email FROM bounce_events WHERE issue = ?1 AND class = 'hard' AND email IS NOT NULL
                        UNION SELECT email FROM deferred_suppressions WHERE issue = ?1 AND kind = 'hard-bounce')),
                    (SELECT count(DISTINCT email) FROM bounce_events
                        WHERE issue = ?1 AND class = 'complaint' AND email IS NOT NULL)",
            )?
            .query_row([issue], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((hard as u64, complaints as u64))
    }
}
