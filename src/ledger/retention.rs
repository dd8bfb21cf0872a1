//! Keeping only what is needed: an old issue's per-reader records reduced to its counts,
//! unconfirmed sign-ups deleted after their window, and the file's freed pages given back
//! without stopping `serve`. What decides a reader's standing (reader_events, forgotten hashes,
//! the suppression list) is never touched here.
//!
//! An issue is marked pruned, with its counts, before any of its rows go: from then on its
//! figures come from the counts alone, so a prune cut short leaves figures right and the
//! next prune deletes what is left.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{BounceCounts, Counts, Ledger, Status, now};

/// Rows deleted per transaction: short enough that `serve`'s writes wait milliseconds.
const BATCH: i64 = 20_000;
/// Free pages given back per step of the incremental vacuum.
const VACUUM_STEP: i64 = 2_000;

/// Messages of one relay (none: from before relay pools) with one status: how many, and how
/// many of them possibly duplicated.
pub(super) type RelayCount = (Option<String>, String, u64, u64);

/// An issue's figures as they were when its per-reader records were pruned.
#[derive(Debug, Clone, Serialize)]
pub struct PrunedIssue {
    pub pruned_at: String,
    pub first_at: Option<String>,
    pub counts: Counts,
    pub bounces: BounceCounts,
    /// (hard bounces, complaints) as `issue_returns` counts them.
    pub returns: (u64, u64),
}

/// What a prune removed, or would.
#[derive(Debug, Default, Serialize)]
pub struct Pruning {
    /// Issues whose per-reader records go (now or in this run).
    pub issues: Vec<String>,
    pub deliveries: u64,
    pub bounce_records: u64,
    pub unconfirmed_signups: u64,
    /// The file's size before and after (after: as it would be, unknown in a dry run).
    pub bytes_before: u64,
    pub bytes_after: Option<u64>,
}

impl Ledger {
    /// The issue's stored figures, if its per-reader records were pruned.
    pub fn pruned(&self, issue: &str) -> Result<Option<PrunedIssue>> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT pruned_at, first_at, hard, soft, complaints, blocked, delayed, returned_hard,
                        returned_complaints FROM pruned_issues WHERE issue = ?1",
            )?
            .query_row([issue], |r| {
                let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
                Ok(PrunedIssue {
                    pruned_at: r.get(0)?,
                    first_at: r.get(1)?,
                    counts: Counts::default(),
                    bounces: BounceCounts {
                        hard: n(2)?,
                        soft: n(3)?,
                        complaints: n(4)?,
                        blocked: n(5)?,
                        delayed: n(6)?,
                    },
                    returns: (n(7)?, n(8)?),
                })
            })
            .optional()?;
        let Some(mut pruned) = found else { return Ok(None) };
        for (_, status, n, duplicated) in self.pruned_relay_counts(issue)? {
            pruned.counts.possibly_duplicated += duplicated;
            match Status::parse(&status) {
                Some(Status::Sent) => pruned.counts.sent += n,
                Some(Status::Failed) => pruned.counts.failed += n,
                Some(Status::Deferred) => pruned.counts.deferred += n,
                Some(Status::Sending) => pruned.counts.sending += n,
                None => {}
            }
        }
        Ok(Some(pruned))
    }

    /// A pruned issue's messages by relay and status.
    pub(super) fn pruned_relay_counts(&self, issue: &str) -> Result<Vec<RelayCount>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT relay, status, messages, duplicated FROM pruned_deliveries WHERE issue = ?1 ORDER BY relay, status",
        )?;
        let rows = stmt.query_map([issue], |r| {
            let relay: String = r.get(0)?;
            Ok((
                (!relay.is_empty()).then_some(relay),
                r.get(1)?,
                r.get::<_, i64>(2)?.max(0) as u64,
                r.get::<_, i64>(3)?.max(0) as u64,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every pruned issue and when, oldest first.
    pub fn pruned_issues(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT issue, pruned_at FROM pruned_issues ORDER BY issue")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Reduces the per-reader records of issues completed before `deliveries_before` to their
    /// counts, deletes sign-ups posted before `signups_before` and never confirmed, and gives
    /// the file's freed pages back. Times are RFC 3339 UTC. A dry run only counts.
    pub fn prune(
        &mut self,
        deliveries_before: Option<&str>,
        signups_before: Option<&str>,
        dry_run: bool,
    ) -> Result<Pruning> {
        self.commit()?;
        let mut pruning = Pruning {
            bytes_before: self.file_bytes()?,
            ..Pruning::default()
        };
        if let Some(before) = deliveries_before {
            // Newly old issues, and any a prune cut short left rows of.
            let mut stmt = self.conn.prepare(
                "SELECT issue FROM issues WHERE state = 'complete' AND COALESCE(completed_at, started_at) < ?1
                    AND issue NOT IN (SELECT issue FROM pruned_issues)
                 UNION SELECT p.issue FROM pruned_issues p
                    WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.issue = p.issue)
                       OR EXISTS (SELECT 1 FROM bounce_events b WHERE b.issue = p.issue)
                 ORDER BY 1",
            )?;
            pruning.issues = stmt
                .query_map([before], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
        }
        for issue in &pruning.issues {
            pruning.deliveries += self.count("SELECT count(*) FROM deliveries WHERE issue = ?1", issue)?;
            pruning.bounce_records += self.count("SELECT count(*) FROM bounce_events WHERE issue = ?1", issue)?;
        }
        let unconfirmed = "FROM signups WHERE confirmed_at IS NULL AND posted_at < ?1";
        if let Some(before) = signups_before {
            pruning.unconfirmed_signups = self.count(&format!("SELECT count(*) {unconfirmed}"), before)?;
        }
        if dry_run {
            return Ok(pruning);
        }
        for issue in &pruning.issues {
            self.keep_counts(issue)?;
            self.delete_in_batches(
                "DELETE FROM deliveries WHERE issue = ?1 AND email IN
                   (SELECT email FROM deliveries WHERE issue = ?1 LIMIT ?2)",
                issue,
            )?;
            self.delete_in_batches(
                "DELETE FROM bounce_events WHERE id IN (SELECT id FROM bounce_events WHERE issue = ?1 LIMIT ?2)",
                issue,
            )?;
        }
        if let Some(before) = signups_before {
            self.delete_in_batches(
                &format!("DELETE FROM signups WHERE id IN (SELECT id {unconfirmed} LIMIT ?2)"),
                before,
            )?;
        }
        self.give_space_back()?;
        pruning.bytes_after = Some(self.file_bytes()?);
        Ok(pruning)
    }

    fn count(&self, sql: &str, arg: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(sql, [arg], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Stores the issue's figures, in one transaction, unless they are stored already.
    fn keep_counts(&mut self, issue: &str) -> Result<()> {
        if self.pruned(issue)?.is_some() {
            return Ok(());
        }
        let bounces = self.bounce_counts(issue)?;
        let (hard, complaints) = self.issue_returns(issue)?;
        let first_at: Option<String> =
            self.conn
                .query_row("SELECT min(first_at) FROM deliveries WHERE issue = ?1", [issue], |r| {
                    r.get(0)
                })?;
        self.begin()?;
        self.conn.execute(
            "INSERT INTO pruned_deliveries (issue, relay, status, messages, duplicated)
             SELECT issue, COALESCE(relay, ''), status, count(*), sum(possibly_duplicated)
               FROM deliveries WHERE issue = ?1 GROUP BY 2, 3",
            [issue],
        )?;
        self.conn.execute(
            "INSERT INTO pruned_issues (issue, pruned_at, first_at, hard, soft, complaints, blocked, delayed,
                                        returned_hard, returned_complaints)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                issue,
                now(),
                first_at,
                bounces.hard as i64,
                bounces.soft as i64,
                bounces.complaints as i64,
                bounces.blocked as i64,
                bounces.delayed as i64,
                hard as i64,
                complaints as i64
            ],
        )?;
        self.commit()?;
        Ok(())
    }

    /// Runs `sql` (a DELETE of at most ?2 rows chosen by ?1) until it deletes nothing, one
    /// short transaction at a time.
    fn delete_in_batches(&mut self, sql: &str, arg: &str) -> Result<()> {
        loop {
            self.begin()?;
            let n = self.conn.execute(sql, params![arg, BATCH])?;
            self.commit()?;
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Returns freed pages to the file system a step at a time, so that writers wait only
    /// for a step. A file made before incremental vacuum was on is rebuilt once (VACUUM), which
    /// makes writers wait for the whole rebuild.
    fn give_space_back(&mut self) -> Result<()> {
        let mode: i64 = self.conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        if mode != 2 {
            self.conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            self.conn.execute_batch("VACUUM")?;
        }
        let free = |conn: &rusqlite::Connection| -> rusqlite::Result<i64> {
            conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))
        };
        let mut left = free(&self.conn)?;
        while left > 0 {
            self.conn
                .query_row(&format!("PRAGMA incremental_vacuum({VACUUM_STEP})"), [], |_| Ok(()))
                .optional()?;
            let now_left = free(&self.conn)?;
            if now_left >= left {
                break;
            }
            left = now_left;
        }
        // The pages left the database; the write-ahead log still holds copies until it is
        // checkpointed and truncated.
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .optional()?;
        Ok(())
    }

    /// The database file's size in bytes (its pages).
    pub fn file_bytes(&self) -> Result<u64> {
        let (pages, size): (i64, i64) = self.conn.query_row(
            "SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((pages * size).max(0) as u64)
    }

    /// When `task` last ran (RFC 3339), for what runs at most once a day.
    pub fn last_run_of(&self, task: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT last_at FROM maintenance WHERE task = ?1")?
            .query_row([task], |r| r.get(0))
            .optional()?)
    }

    pub fn mark_run_of(&mut self, task: &str) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO maintenance (task, last_at) VALUES (?1, ?2)
                 ON CONFLICT (task) DO UPDATE SET last_at = excluded.last_at",
            )?
            .execute(params![task, now()])?;
        self.commit()?;
        Ok(())
    }
}
