//! The return path in the ledger: reports handled, what they said, how far each mailbox was
//! read, and the soft-bounce history that decides `soft_limit`.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Ledger, now};

/// One recipient's part of one report, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct BounceEvent {
    pub email: Option<String>,
    pub issue: Option<String>,
    pub class: String,
    pub reason: String,
    pub status: Option<String>,
    pub diagnostic: String,
    pub action: String,
    pub report: String,
    pub created_at: String,
}

/// Per issue: the recipients with each kind of event (each counted once).
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct BounceCounts {
    pub hard: u64,
    pub soft: u64,
    pub complaints: u64,
    /// Soft bounces that are blocks of our sending (policy, reputation): no reader's fault.
    pub blocked: u64,
    /// Delay warnings: the relay was still trying; not bounces.
    pub delayed: u64,
}

impl Ledger {
    pub fn is_report_handled(&self, report: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM reports WHERE report = ?1")?
            .exists([report])?)
    }

    /// Marks `report` handled, in the same transaction as its events.
    pub fn record_report(&mut self, report: &str) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO reports (report, handled_at) VALUES (?1, ?2)")?
            .execute(params![report, now()])?;
        Ok(())
    }

    /// Records an event; returns its id (a suppression names it as its cause).
    pub fn record_bounce(&mut self, e: &BounceEvent) -> Result<i64> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO bounce_events (report, email, issue, class, reason, status, diagnostic, action, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                e.report,
                e.email,
                e.issue,
                e.class,
                e.reason,
                e.status,
                e.diagnostic,
                e.action,
                e.created_at
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn update_bounce_action(&mut self, id: i64, action: &str) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached("UPDATE bounce_events SET action = ?2 WHERE id = ?1")?
            .execute(params![id, action])?;
        Ok(())
    }

    /// The issue and address of the message we sent with this Message-ID.
    pub fn delivery_by_message_id(&self, message_id: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT issue, email FROM deliveries WHERE message_id = ?1 LIMIT 1")?
            .query_row([message_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The address of `issue`'s message whose Message-ID starts `<{issue}.{hash}@`.
    pub fn delivery_by_hash(&self, issue: &str, hash: &str) -> Result<Option<String>> {
        let prefix = format!("<{issue}.{hash}@");
        Ok(self
            .conn
            .prepare_cached("SELECT email FROM deliveries WHERE issue = ?1 AND substr(message_id, 1, ?3) = ?2 LIMIT 1")?
            .query_row(params![issue, prefix, prefix.len() as i64], |r| r.get(0))
            .optional()?)
    }

    /// The most recent issue sent (or attempted) to `email`.
    pub fn latest_issue_for(&self, email: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT issue FROM deliveries WHERE email = ?1 ORDER BY first_at DESC LIMIT 1")?
            .query_row([crate::address::key(email)], |r| r.get(0))
            .optional()?)
    }

    /// How many issues in a row, ending with the latest one that soft-bounced, soft-bounced
    /// for `email` (blocks of our sending neither count nor break the run; a delay warning
    /// alone is no bounce: the message was most likely delivered in the end).
    pub fn soft_bounce_run(&self, email: &str) -> Result<u32> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM bounce_events b WHERE b.email = d.email AND b.issue = d.issue
                            AND b.class = 'soft' AND b.reason NOT IN ('blocked', 'delayed')),
                   EXISTS (SELECT 1 FROM bounce_events b WHERE b.email = d.email AND b.issue = d.issue
                            AND b.reason = 'blocked')
             FROM deliveries d WHERE d.email = ?1 AND d.status = 'sent' ORDER BY d.first_at DESC",
        )?;
        let rows = stmt.query_map([crate::address::key(email)], |r| {
            Ok((r.get::<_, bool>(0)?, r.get::<_, bool>(1)?))
        })?;
        let mut run = 0;
        for row in rows {
            match row? {
                (true, _) => run += 1,
                (false, true) => {}
                // Sent with no report: delivered, unless no soft bounce came yet at all (the
                // newest issues' reports may still be on their way).
                (false, false) if run == 0 => {}
                (false, false) => break,
            }
        }
        Ok(run)
    }

    pub fn bounce_counts(&self, issue: &str) -> Result<BounceCounts> {
        if let Some(pruned) = self.pruned(issue)? {
            return Ok(pruned.bounces);
        }
        let mut counts = BounceCounts::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT CASE WHEN reason IN ('blocked', 'delayed') THEN reason ELSE class END,
                    count(DISTINCT email) FROM bounce_events
             WHERE issue = ?1 AND email IS NOT NULL GROUP BY 1",
        )?;
        let rows = stmt.query_map([issue], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        for row in rows {
            let (kind, n) = row?;
            match kind.as_str() {
                "hard" => counts.hard = n,
                "soft" => counts.soft = n,
                "complaint" => counts.complaints = n,
                "blocked" => counts.blocked = n,
                "delayed" => counts.delayed = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// Events of `issue` (or of every issue), newest first.
    pub fn bounce_events(&self, issue: Option<&str>) -> Result<Vec<BounceEvent>> {
        self.bounce_events_where("?1 IS NULL OR issue = ?1", issue)
    }

    /// Events about `email`, newest first.
    pub fn bounce_events_of(&self, email: &str) -> Result<Vec<BounceEvent>> {
        self.bounce_events_where("email = ?1", Some(&crate::address::key(email)))
    }

    fn bounce_events_where(&self, condition: &str, value: Option<&str>) -> Result<Vec<BounceEvent>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT email, issue, class, reason, status, diagnostic, action, report, created_at FROM bounce_events
             WHERE {condition} ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([value], |r| {
            Ok(BounceEvent {
                email: r.get(0)?,
                issue: r.get(1)?,
                class: r.get(2)?,
                reason: r.get(3)?,
                status: r.get(4)?,
                diagnostic: r.get(5)?,
                action: r.get(6)?,
                report: r.get(7)?,
                created_at: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How far `source` was read (`None`: from the start).
    pub fn cursor(&self, source: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT position FROM mailbox_cursors WHERE source = ?1")?
            .query_row([source], |r| r.get(0))
            .optional()?)
    }

    pub fn set_cursor(&mut self, source: &str, position: &str) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO mailbox_cursors (source, position) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET position = excluded.position",
            )?
            .execute(params![source, position])?;
        Ok(())
    }
}
