//! The archive's pages as they were sent: stored by an issue's first real run, read by
//! `serve` and `archive --out` without the issue's file, replaced only by `archive publish`.

use anyhow::{Context, Result};
use rusqlite::{OptionalExtension, params};

use super::{Ledger, now};

/// One issue of the archive, as the index and the feed list it.
#[derive(Debug, Clone, PartialEq)]
pub struct Archived {
    pub issue: String,
    /// With the archive's neutral fields.
    pub subject: String,
    pub preheader: Option<String>,
    /// When its page was stored: the start of its first real run.
    pub published_at: String,
}

/// An issue is public once a message of it went out and its `send_at`, if any, has passed
/// (a `--limit` part of a future issue stays out). That a message went out is kept on the
/// issue at the end of each run (`went_out_at`), so that no erasure of deliveries unpublishes
/// it; while its first run goes, its deliveries say it.
const VISIBLE: &str = "(send_at IS NULL OR send_at <= ?1)
     AND (went_out_at IS NOT NULL
          OR EXISTS (SELECT 1 FROM deliveries d WHERE d.issue = archive.issue AND d.status = 'sent'))";

impl Ledger {
    /// Stores the issue's page, unless one is stored and `replace` is false; says whether it
    /// wrote. `send_at`: RFC 3339 in UTC, as `now()` writes times.
    pub fn store_archive(
        &mut self,
        issue: &str,
        subject: &str,
        preheader: Option<&str>,
        send_at: Option<&str>,
        page: &str,
        replace: bool,
    ) -> Result<bool> {
        self.commit()?;
        let sql = if replace {
            "INSERT INTO archive (issue, subject, preheader, send_at, published_at, page) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (issue) DO UPDATE SET subject = ?2, preheader = ?3, send_at = ?4, page = ?6"
        } else {
            "INSERT INTO archive (issue, subject, preheader, send_at, published_at, page) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (issue) DO NOTHING"
        };
        let n = self
            .conn
            .execute(sql, params![issue, subject, preheader, send_at, now(), page])
            .context("cannot store the archive's page")?;
        Ok(n > 0)
    }

    /// Keeps on the issue's archive page that a message of it went out (at the end of a run,
    /// and before deliveries are erased).
    pub(crate) fn mark_went_out(&self, issue: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE archive SET went_out_at = ?2 WHERE went_out_at IS NULL AND (?1 IS NULL OR issue = ?1)
               AND EXISTS (SELECT 1 FROM deliveries d WHERE d.issue = archive.issue AND d.status = 'sent')",
            params![issue, now()],
        )?;
        Ok(())
    }

    /// Whether a message of the issue went out.
    pub fn has_sent(&self, issue: &str) -> Result<bool> {
        if let Some(pruned) = self.pruned(issue)? {
            return Ok(pruned.counts.sent > 0);
        }
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM deliveries WHERE issue = ?1 AND status = 'sent' LIMIT 1")?
            .exists([issue])?)
    }

    pub fn has_archive(&self, issue: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM archive WHERE issue = ?1")?
            .exists([issue])?)
    }

    /// The public issues, newest first.
    pub fn archived(&self) -> Result<Vec<Archived>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT issue, subject, preheader, published_at FROM archive WHERE {VISIBLE}
             ORDER BY published_at DESC, issue DESC"
        ))?;
        let rows = stmt.query_map([now()], |r| {
            Ok(Archived {
                issue: r.get(0)?,
                subject: r.get(1)?,
                preheader: r.get(2)?,
                published_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A public issue's page.
    pub fn archive_page(&self, issue: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT page FROM archive WHERE issue = ?2 AND {VISIBLE}"))?
            .query_row(params![now(), issue], |r| r.get(0))
            .optional()?)
    }
}
