//! The suppression list: addresses that never get the newsletter, with why and since when.

use anyhow::Result;
use rusqlite::params;
use serde::Serialize;

use super::{Ledger, now};

#[derive(Debug, Clone, Serialize)]
pub struct Suppression {
    pub email: String,
    pub reason: String,
    pub source: String,
    pub created_at: String,
}

impl Ledger {
    pub fn suppress(&mut self, email: &str, reason: &str, source: &str) -> Result<bool> {
        self.suppress_from(email, reason, source, None)
    }

    /// Suppresses `email`, naming the issue whose link did it; an address already suppressed
    /// keeps its first cause. Returns whether it is new.
    pub fn suppress_from(&mut self, email: &str, reason: &str, source: &str, issue: Option<&str>) -> Result<bool> {
        self.begin()?;
        let added = self
            .conn
            .prepare_cached(
                "INSERT INTO suppressions (email, reason, source, created_at, issue) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (email) DO NOTHING",
            )?
            .execute(params![email.to_lowercase(), reason, source, now(), issue])?;
        Ok(added > 0)
    }

    /// Lifts the suppression of `email` only if `source` made it (a reader resubscribing lifts
    /// their own unsubscribe, never a bounce or an operator's entry).
    pub fn unsuppress_if(&mut self, email: &str, source: &str) -> Result<bool> {
        self.begin()?;
        Ok(self
            .conn
            .prepare_cached("DELETE FROM suppressions WHERE email = ?1 AND source = ?2")?
            .execute(params![email.to_lowercase(), source])?
            > 0)
    }

    pub fn unsuppress(&mut self, email: &str) -> Result<bool> {
        self.begin()?;
        Ok(self
            .conn
            .execute("DELETE FROM suppressions WHERE email = ?1", [email.to_lowercase()])?
            > 0)
    }

    pub fn suppressions(&self) -> Result<Vec<Suppression>> {
        let mut stmt = self
            .conn
            .prepare("SELECT email, reason, source, created_at FROM suppressions ORDER BY email")?;
        let rows = stmt.query_map([], |r| {
            Ok(Suppression {
                email: r.get(0)?,
                reason: r.get(1)?,
                source: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
