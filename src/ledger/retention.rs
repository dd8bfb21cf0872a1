//! Keeping only what is needed: an old issue's per-reader records reduced to its counts,
//! unconfirmed sign-ups deleted after their window, and the file's freed pages given back
//! without stopping `serve`. What decides a reader's standing (reader_events, forgotten hashes,
//! the suppression list) is never touched here.
//!
//! An issue is marked pruned, with its counts, before any of its rows go: from then on its
//! figures come from the counts alone, so a prune cut short leaves figures right and the
//! next prune deletes what is left.

use std::time::{Duration, Instant};

use anyhow::Result;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{BounceCounts, Counts, Ledger, Status, now};

/// Rows deleted per transaction: short enough that `serve`'s writes wait milliseconds.
const BATCH: i64 = 2_000;
/// Free pages given back per step of the incremental vacuum.
const VACUUM_STEP: i64 = 256;

/// Messages of one relay (none: from before relay pools) with one status: how many, and how
/// many of them possibly duplicated.
pub(super) type RelayCount = (Option<String>, String, u64, u64);

/// Waits as long as the step that started at `step` took: the lock is free half the time, so
/// `serve`, whose writes wait for it in short sleeps, is never starved by a prune that would
/// otherwise take the lock again the moment it let it go.
fn make_way(step: Instant) {
    std::thread::sleep(step.elapsed().max(Duration::from_millis(2)));
}

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
        // Read before the write transaction: the scan of the issue's rows holds no lock that
        // serve's writes wait for.
        let bounces = self.bounce_counts(issue)?;
        let (hard, complaints) = self.issue_returns(issue)?;
        let first_at: Option<String> =
            self.conn
                .query_row("SELECT min(first_at) FROM deliveries WHERE issue = ?1", [issue], |r| {
                    r.get(0)
                })?;
        let by_relay: Vec<(String, String, i64, i64)> = self
            .conn
            .prepare(
                "SELECT COALESCE(relay, ''), status, count(*), sum(possibly_duplicated)
                   FROM deliveries WHERE issue = ?1 GROUP BY 1, 2",
            )?
            .query_map([issue], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        self.begin()?;
        for (relay, status, messages, duplicated) in by_relay {
            self.conn.execute(
                "INSERT INTO pruned_deliveries (issue, relay, status, messages, duplicated) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![issue, relay, status, messages, duplicated],
            )?;
        }
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
            let step = Instant::now();
            self.begin()?;
            let n = self.conn.execute(sql, params![arg, BATCH])?;
            self.commit()?;
            self.checkpoint()?;
            if n == 0 {
                return Ok(());
            }
            make_way(step);
        }
    }

    /// Copies what the write-ahead log holds into the database without waiting for anyone,
    /// so that the log stays short and serve's commits never inherit a large checkpoint.
    fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .optional()?;
        Ok(())
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
            let step = Instant::now();
            self.conn
                .query_row(&format!("PRAGMA incremental_vacuum({VACUUM_STEP})"), [], |_| Ok(()))
                .optional()?;
            self.checkpoint()?;
            let now_left = free(&self.conn)?;
            if now_left >= left {
                break;
            }
            left = now_left;
            make_way(step);
        }
        self.checkpoint()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger made before incremental vacuum: its first prune turns it on and the file shrinks;
    /// the issue's figures stay; a second prune finds nothing.
    #[test]
    fn an_old_file_is_converted_and_gives_its_space_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA auto_vacuum = NONE; CREATE TABLE placeholder (x);")
            .unwrap();
        let mut ledger = Ledger::open(&path).unwrap();
        ledger
            .conn
            .execute_batch(
                "INSERT INTO issues (issue, subject, state, started_at, completed_at)
                     VALUES ('2020-01', 's', 'complete', '2020-01-01T00:00:00.000Z', '2020-01-02T00:00:00.000Z');
                 WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
                 INSERT INTO deliveries (issue, email, line, status, message_id, first_at, updated_at, relay)
                 SELECT '2020-01', 'r' || i || '@example.org', i + 2, CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'sent' END,
                        '<' || i || '@x>', '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z', 'main' FROM n;",
            )
            .unwrap();
        let before = ledger.counts("2020-01").unwrap();
        let mode = |l: &Ledger| -> i64 { l.conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap() };
        assert_eq!(mode(&ledger), 0);
        let done = ledger.prune(Some("2021-01-01T00:00:00.000Z"), None, false).unwrap();
        assert_eq!(done.deliveries, 10_000);
        assert!(done.bytes_after.unwrap() < done.bytes_before / 2, "{done:?}");
        assert_eq!(mode(&ledger), 2);
        let after = ledger.counts("2020-01").unwrap();
        assert_eq!((after.sent, after.failed), (before.sent, before.failed));
        assert_eq!((after.sent, after.failed), (9_900, 100));
        assert_eq!(ledger.relay_counts("2020-01").unwrap().len(), 2);
        assert!(
            ledger
                .prune(Some("2021-01-01T00:00:00.000Z"), None, false)
                .unwrap()
                .issues
                .is_empty()
        );
    }
}
