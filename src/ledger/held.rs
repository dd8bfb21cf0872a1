//! Suppressions that wait for the end of their run, and the groups the mass guard holds for
//! the operator (see `bounces::guard`).

use anyhow::Result;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use super::{Ledger, now};

/// A waiting suppression.
#[derive(Debug, Clone)]
pub struct DeferredRow {
    pub id: i64,
    pub email: String,
    pub issue: Option<String>,
    pub kind: String,
    pub source: String,
    pub domain: String,
    pub signature: String,
    pub diagnostic: String,
    pub evidence: Value,
}

/// A group of suppressions held for the operator.
#[derive(Debug, Clone, Serialize)]
pub struct HeldGroup {
    pub id: i64,
    pub domain: String,
    /// One reader's diagnostic, as the receiver wrote it.
    pub diagnostic: String,
    pub readers: u64,
    /// held, accepted or rejected.
    pub state: String,
    pub created_at: String,
    pub decided_at: Option<String>,
}

const ROW: &str =
    "SELECT id, email, issue, kind, source, domain, signature, diagnostic, evidence FROM deferred_suppressions";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeferredRow> {
    let evidence: String = r.get(8)?;
    Ok(DeferredRow {
        id: r.get(0)?,
        email: r.get(1)?,
        issue: r.get(2)?,
        kind: r.get(3)?,
        source: r.get(4)?,
        domain: r.get(5)?,
        signature: r.get(6)?,
        diagnostic: r.get(7)?,
        evidence: serde_json::from_str(&evidence).unwrap_or(Value::Null),
    })
}

const GROUP: &str =
    "SELECT g.id, g.domain, g.diagnostic, (SELECT count(*) FROM deferred_suppressions d WHERE d.grp = g.id),
        g.state, g.created_at, g.decided_at FROM held_groups g";

fn group(r: &rusqlite::Row<'_>) -> rusqlite::Result<HeldGroup> {
    Ok(HeldGroup {
        id: r.get(0)?,
        domain: r.get(1)?,
        diagnostic: r.get(2)?,
        readers: r.get::<_, i64>(3)? as u64,
        state: r.get(4)?,
        created_at: r.get(5)?,
        decided_at: r.get(6)?,
    })
}

impl Ledger {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_deferred(
        &mut self,
        email: &str,
        issue: Option<&str>,
        kind: &str,
        source: &str,
        domain: &str,
        signature: &str,
        diagnostic: &str,
        evidence: &Value,
    ) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO deferred_suppressions (email, issue, kind, source, domain, signature, diagnostic, evidence, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9)",
            )?
            .execute(params![
                crate::address::key(email),
                issue,
                kind,
                source,
                domain,
                signature,
                diagnostic,
                evidence.to_string(),
                now()
            ])?;
        Ok(())
    }

    pub(crate) fn deferred_pending(&self) -> Result<Vec<DeferredRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{ROW} WHERE state = 'pending' ORDER BY id"))?;
        Ok(stmt.query_map([], row)?.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn deferred_in_group(&self, group: i64) -> Result<Vec<DeferredRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{ROW} WHERE grp = ?1 AND state = 'held' ORDER BY id"))?;
        Ok(stmt.query_map([group], row)?.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn set_deferred(&mut self, id: i64, state: &str, group: Option<i64>) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached("UPDATE deferred_suppressions SET state = ?2, grp = coalesce(?3, grp) WHERE id = ?1")?
            .execute(params![id, state, group])?;
        Ok(())
    }

    /// The group still waiting for the operator with this domain and signature.
    pub(crate) fn open_group(&self, domain: &str, signature: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM held_groups WHERE domain = ?1 AND signature = ?2 AND state = 'held'")?
            .query_row(params![domain, signature], |r| r.get(0))
            .optional()?)
    }

    pub(crate) fn create_group(&mut self, domain: &str, signature: &str, diagnostic: &str) -> Result<i64> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO held_groups (domain, signature, diagnostic, state, created_at) VALUES (?1, ?2, ?3, 'held', ?4)",
            )?
            .execute(params![domain, signature, diagnostic, now()])?;
        Ok(self.conn.last_insert_rowid())
    }

    pub(crate) fn decide_group(&mut self, id: i64, state: &str) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached("UPDATE held_groups SET state = ?2, decided_at = ?3 WHERE id = ?1")?
            .execute(params![id, state, now()])?;
        Ok(())
    }

    pub fn held_group(&self, id: i64) -> Result<Option<HeldGroup>> {
        Ok(self
            .conn
            .prepare_cached(&format!("{GROUP} WHERE g.id = ?1"))?
            .query_row([id], group)
            .optional()?)
    }

    /// Every group, or those still waiting for the operator; newest first.
    pub fn held_groups(&self, waiting_only: bool) -> Result<Vec<HeldGroup>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{GROUP} WHERE ?1 = 0 OR g.state = 'held' ORDER BY g.id DESC"))?;
        Ok(stmt
            .query_map([waiting_only], group)?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// The readers of a group.
    pub fn group_readers(&self, id: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT email FROM deferred_suppressions WHERE grp = ?1 ORDER BY email")?;
        Ok(stmt.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
    }
}
