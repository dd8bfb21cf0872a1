//! The suppression list: the addresses whose standing forbids mail, each with the event that
//! decides it (derived by [`crate::readers`] from the reader's history).

use anyhow::Result;
use serde::Serialize;

use super::Ledger;

#[derive(Debug, Clone, Serialize)]
pub struct Suppression {
    pub email: String,
    /// The deciding event's kind: unsubscribed, soft-limit, hard-bounce, suppressed (by the
    /// operator), complaint.
    pub kind: String,
    pub reason: String,
    pub source: String,
    pub created_at: String,
    /// The deciding event (`subscribers show EMAIL` has the whole history).
    pub event: Option<i64>,
}

impl Ledger {
    pub fn suppressions(&self) -> Result<Vec<Suppression>> {
        let mut stmt = self.conn.prepare(
            "SELECT email, coalesce(kind, 'suppressed'), reason, source, created_at, event FROM suppressions ORDER BY email",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Suppression {
                email: r.get(0)?,
                kind: r.get(1)?,
                reason: r.get(2)?,
                source: r.get(3)?,
                created_at: r.get(4)?,
                event: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
