//! The ledger: an SQLite database (WAL) of who was sent which issue, in which state, with the
//! server's last reply; the suppression list; and the runs. What makes a send resumable.
//!
//! A message is recorded `sending` and committed before it is handed to a connection, and
//! `sent` only once the server accepted it. After a crash the rows still `sending` are the
//! messages that were in flight: they are sent again and counted as possibly duplicated.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

mod archive;
pub mod backup;
mod bounces;
pub mod dmarc;
mod held;
mod readers;
mod reading;
mod reputation;
pub mod retention;
pub mod schema;
mod secrets;
mod signups;
mod suppressions;

pub use archive::Archived;
pub use bounces::{BounceCounts, BounceEvent};
pub use held::{DeferredRow, HeldGroup};
pub use readers::{Erased, Mention, ReaderDelivery, ReaderEvent};
pub use reading::{CountChange, ReadingCount, StoredLink};
pub use reputation::IssueRates;
pub use secrets::{SecretChanged, SecretCheck, kept_fingerprint};
pub use signups::{Attempt, Signup, Subscriber};
pub use suppressions::Suppression;

/// Where a recipient stands for one issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Handed to the server; if still so at the next run, the run was cut short.
    Sending,
    Sent,
    /// A temporary failure whose retries ran out: tried again by the next run.
    Deferred,
    /// A permanent failure: not tried again.
    Failed,
}

impl Status {
    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "sending" => Status::Sending,
            "sent" => Status::Sent,
            "deferred" => Status::Deferred,
            "failed" => Status::Failed,
            _ => return None,
        })
    }
}

/// Counts for `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
    pub deferred: u64,
    /// In flight when a run stopped; sent again by the next run.
    pub sending: u64,
    pub possibly_duplicated: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub email: String,
    pub line: u64,
    pub status: Status,
    pub attempts: u32,
    pub last_reply: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IssueState {
    pub issue: String,
    pub subject: String,
    pub complete: bool,
    /// Its last run has not finished: it is running now, or was killed.
    pub running: bool,
    pub started_at: String,
    pub completed_at: Option<String>,
    /// The recipient list its last run read (none before release 18 recorded it).
    pub last_list: Option<String>,
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    in_transaction: bool,
    /// The key of the forgotten addresses' hashes, once read (see `readers`).
    forget_key: std::cell::OnceCell<[u8; 32]>,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Ledger {
    /// Opens (creating it and its folder if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private::create_dir(dir)?;
        }
        crate::private::touch(path)?;
        let conn = schema::connect(path)?;
        Ledger::register_scrub(&conn)?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
            in_transaction: false,
            forget_key: std::cell::OnceCell::new(),
        })
    }

    /// Commits that survive the process being killed but may be lost, the last few, to a
    /// power cut: for a send, whose every message is a commit and whose lost records only
    /// mean a resend flagged as possibly duplicated. Everything else (an unsubscribe a web
    /// request acknowledges, an operator's change, a bounce report let go) is synced to disk
    /// before it is reported done.
    pub fn relax_durability(&mut self) -> Result<()> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the same database, for another thread.
    pub fn reopen(&self) -> Result<Ledger> {
        Ledger::open(&self.path)
    }

    pub fn status(&self, issue: &str, email: &str) -> Result<Option<Status>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status FROM deliveries WHERE issue = ?1 AND email = ?2")?;
        let status: Option<String> = stmt
            .query_row(params![issue, crate::address::key(email)], |r| r.get(0))
            .optional()?;
        Ok(status.as_deref().and_then(Status::parse))
    }

    /// Whether `email` must not be mailed: its standing is a suppression, or it was forgotten.
    pub fn is_suppressed(&self, email: &str) -> Result<bool> {
        Ok(self.is_listed(email)? || self.is_forgotten(email)?)
    }

    /// Whether the suppression list holds `email` (its standing, not whether it was forgotten).
    pub fn is_listed(&self, email: &str) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM suppressions WHERE email = ?1")?;
        Ok(stmt.exists(params![crate::address::key(email)])?)
    }

    pub(crate) fn begin(&mut self) -> rusqlite::Result<()> {
        if !self.in_transaction {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Makes everything recorded so far durable.
    pub fn commit(&mut self) -> rusqlite::Result<()> {
        if self.in_transaction {
            self.conn.execute_batch("COMMIT")?;
            self.in_transaction = false;
        }
        Ok(())
    }

    /// Forgets everything recorded since the last commit.
    pub fn rollback(&mut self) {
        if self.in_transaction {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.in_transaction = false;
        }
    }

    /// One message about to go out: `resend` if it was in flight when a run stopped.
    pub fn record_sending(
        &mut self,
        issue: &str,
        email: &str,
        line: u64,
        message_id: &str,
        resend: bool,
        relay: &str,
    ) -> rusqlite::Result<()> {
        self.begin()?;
        let now = now();
        self.conn
            .prepare_cached(
                "INSERT INTO deliveries (issue, email, line, status, attempts, message_id, possibly_duplicated, first_at, updated_at, relay)
                 VALUES (?1, ?2, ?3, 'sending', 1, ?4, ?5, ?6, ?6, ?7)
                 ON CONFLICT (issue, email) DO UPDATE SET
                   status = 'sending', attempts = attempts + 1, line = ?3,
                   possibly_duplicated = possibly_duplicated OR ?5, updated_at = ?6, relay = ?7",
            )?
            .execute(params![issue, crate::address::key(email), line as i64, message_id, resend, now, relay])?;
        self.conn
            .prepare_cached(
                "INSERT INTO relay_days (relay, day, messages) VALUES (?1, ?2, 1)
                 ON CONFLICT (relay, day) DO UPDATE SET messages = messages + 1",
            )?
            .execute(params![relay, &now[..10]])?;
        Ok(())
    }

    /// Messages handed to `relay` on `day` (YYYY-MM-DD, UTC), over every issue.
    pub fn relay_messages_on(&self, relay: &str, day: &str) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(sum(messages), 0) FROM relay_days WHERE relay = ?1 AND day = ?2",
                params![relay, day],
                |r| r.get(0),
            )
            .context("cannot read the relays' daily counts")?;
        Ok(n as u64)
    }

    /// The issue's messages by the relay that took them, and how they stand: (relay, status,
    /// count); messages from before pools have no relay.
    pub fn relay_counts(&self, issue: &str) -> Result<Vec<(Option<String>, String, u64)>> {
        if self.pruned(issue)?.is_some() {
            let kept = self.pruned_relay_counts(issue)?;
            return Ok(kept
                .into_iter()
                .map(|(relay, status, n, _)| (relay, status, n))
                .collect());
        }
        let mut stmt = self.conn.prepare(
            "SELECT relay, status, count(*) FROM deliveries WHERE issue = ?1 GROUP BY relay, status ORDER BY relay, status",
        )?;
        let rows = stmt.query_map([issue], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The message did not go out, for reasons that are not the recipient's: pending again,
    /// with the attempt not counted.
    pub fn record_unsent(&mut self, issue: &str, email: &str, reply: &str) -> rusqlite::Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'deferred', attempts = max(attempts - 1, 0), last_reply = ?3, updated_at = ?4
                 WHERE issue = ?1 AND email = ?2",
            )?
            .execute(params![issue, crate::address::key(email), reply, now()])?;
        Ok(())
    }

    /// How a message ended: `sent`, `deferred` (tried again later) or `failed`.
    pub fn record_outcome(&mut self, issue: &str, email: &str, status: &str, reply: &str) -> rusqlite::Result<()> {
        self.begin()?;
        let now = now();
        self.conn
            .prepare_cached(
                "UPDATE deliveries SET status = ?3, last_reply = ?4, updated_at = ?5,
                   sent_at = CASE WHEN ?3 = 'sent' THEN ?5 ELSE sent_at END
                 WHERE issue = ?1 AND email = ?2",
            )?
            .execute(params![issue, crate::address::key(email), status, reply, now])?;
        Ok(())
    }

    /// Marks failed the recipients still deferred after `max_attempts` attempts; returns how many.
    pub fn give_up(&mut self, issue: &str, max_attempts: u32) -> Result<u64> {
        self.commit()?;
        let n = self.conn.execute(
            "UPDATE deliveries SET status = 'failed', updated_at = ?3,
               last_reply = coalesce(last_reply, '') || ' (given up after ' || attempts || ' attempts)'
             WHERE issue = ?1 AND status = 'deferred' AND attempts >= ?2",
            params![issue, max_attempts, now()],
        )?;
        Ok(n as u64)
    }

    /// Records a run's start. The issue keeps the content hash of its first run.
    pub fn start_issue(
        &mut self,
        issue: &str,
        subject: &str,
        content_hash: &str,
        selection: Option<&str>,
        list: Option<&Path>,
    ) -> Result<i64> {
        self.commit()?;
        self.conn.execute(
            "INSERT INTO issues (issue, subject, state, started_at, content_hash) VALUES (?1, ?2, 'sending', ?3, ?4)
             ON CONFLICT (issue) DO UPDATE SET subject = ?2, content_hash = coalesce(content_hash, ?4)",
            params![issue, subject, now(), content_hash],
        )?;
        self.conn.execute(
            "INSERT INTO runs (issue, started_at, selection, list) VALUES (?1, ?2, ?3, ?4)",
            params![
                issue,
                now(),
                selection,
                list.map(|l| std::fs::canonicalize(l)
                    .unwrap_or_else(|_| l.to_path_buf())
                    .display()
                    .to_string())
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// What the issue's first run sent, when it differs from `content_hash` (of the issue as
    /// composed now): that run's start.
    pub fn changed_since_sent(&self, issue: &str, content_hash: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT started_at FROM issues WHERE issue = ?1 AND content_hash IS NOT NULL AND content_hash != ?2",
                params![issue, content_hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records how a run ended; `complete` marks the issue's delivery done for cron.
    pub fn finish_run(
        &mut self,
        run: i64,
        sent: u64,
        failed: u64,
        seconds: f64,
        ended: &str,
        complete: bool,
    ) -> Result<()> {
        self.commit()?;
        let issue: String = self
            .conn
            .query_row("SELECT issue FROM runs WHERE id = ?1", [run], |r| r.get(0))?;
        self.conn.execute(
            "UPDATE runs SET finished_at = ?2, sent = ?3, failed = ?4, seconds = ?5, ended = ?6 WHERE id = ?1",
            params![run, now(), sent as i64, failed as i64, seconds, ended],
        )?;
        if complete {
            self.conn.execute(
                "UPDATE issues SET state = 'complete', completed_at = ?2 WHERE issue = ?1",
                params![issue, now()],
            )?;
        }
        self.mark_went_out(Some(&issue))
    }

    /// Whether the file answers a query: `/healthz`.
    pub fn is_reachable(&self) -> bool {
        self.conn
            .query_row("SELECT count(*) FROM issues", [], |r| r.get::<_, i64>(0))
            .is_ok()
    }

    /// Every issue whose send has started, newest first.
    pub fn started_issues(&self) -> Result<Vec<IssueState>> {
        let names: Vec<String> = self
            .conn
            .prepare_cached("SELECT issue FROM issues ORDER BY started_at DESC, issue DESC")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for name in names {
            if let Some(state) = self.issue_state(&name)? {
                out.push(state);
            }
        }
        Ok(out)
    }

    pub fn issue_state(&self, issue: &str) -> Result<Option<IssueState>> {
        Ok(self
            .conn
            .query_row(
                "SELECT issue, subject, state, started_at, completed_at,
                   EXISTS (SELECT 1 FROM runs WHERE runs.issue = issues.issue AND finished_at IS NULL
                           AND id = (SELECT max(id) FROM runs r WHERE r.issue = issues.issue)),
                   (SELECT list FROM runs WHERE runs.issue = issues.issue ORDER BY id DESC LIMIT 1)
                 FROM issues WHERE issue = ?1",
                [issue],
                |r| {
                    Ok(IssueState {
                        issue: r.get(0)?,
                        subject: r.get(1)?,
                        complete: r.get::<_, String>(2)? == "complete",
                        started_at: r.get(3)?,
                        completed_at: r.get(4)?,
                        running: r.get(5)?,
                        last_list: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn counts(&self, issue: &str) -> Result<Counts> {
        if let Some(pruned) = self.pruned(issue)? {
            return Ok(pruned.counts);
        }
        let mut counts = Counts::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT status, count(*), sum(possibly_duplicated) FROM deliveries WHERE issue = ?1 GROUP BY status",
        )?;
        let rows = stmt.query_map([issue], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        for row in rows {
            let (status, n, dup) = row?;
            counts.possibly_duplicated += dup;
            match Status::parse(&status) {
                Some(Status::Sent) => counts.sent = n,
                Some(Status::Failed) => counts.failed = n,
                Some(Status::Deferred) => counts.deferred = n,
                Some(Status::Sending) => counts.sending = n,
                None => {}
            }
        }
        Ok(counts)
    }

    /// Messages per second over every run of the issue, counting only time spent sending.
    pub fn achieved_rate(&self, issue: &str) -> Result<Option<f64>> {
        let (sent, seconds): (Option<f64>, Option<f64>) = self.conn.query_row(
            "SELECT sum(sent), sum(seconds) FROM runs WHERE issue = ?1 AND finished_at IS NOT NULL",
            [issue],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(match (sent, seconds) {
            (Some(s), Some(t)) if t > 0.0 => Some(s / t),
            _ => None,
        })
    }

    /// Recipients who have not got the issue, most recent first.
    pub fn undelivered(&self, issue: &str, limit: Option<usize>) -> Result<Vec<DeliveryRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT email, line, status, attempts, last_reply, updated_at FROM deliveries
             WHERE issue = ?1 AND status != 'sent' ORDER BY updated_at DESC, email LIMIT ?2",
        )?;
        let limit = limit.map_or(-1, |l| l as i64);
        let rows = stmt.query_map(params![issue, limit], |r| {
            Ok(DeliveryRecord {
                email: r.get(0)?,
                line: r.get::<_, i64>(1)? as u64,
                status: Status::parse(&r.get::<_, String>(2)?).unwrap_or(Status::Deferred),
                attempts: r.get(3)?,
                last_reply: r.get(4)?,
                updated_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Another run holds the lock; `main` maps this to its own exit code.
#[derive(Debug, thiserror::Error)]
#[error("another `newsletter send` is running (it holds {0}); this run stops without sending")]
pub struct Locked(pub PathBuf);

/// Whether a send holds the lock beside `ledger` now.
pub fn is_running(ledger: &Path) -> bool {
    let path = ledger.with_extension("lock");
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .is_ok_and(|file| matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Takes the lock beside the ledger for as long as the returned file lives. The operating
/// system releases it when the process ends, however it ends, so a stale lock never blocks.
pub fn lock(ledger: &Path) -> Result<std::fs::File> {
    let path = ledger.with_extension("lock");
    match lock_file(&path)? {
        Some(file) => Ok(file),
        None => Err(Locked(path).into()),
    }
}

/// The lock every `serve` on `ledger` holds shared while it runs, and a restore takes alone:
/// a restore cannot replace the file under a running service, nor a service start mid-restore.
fn serve_lock_path(ledger: &Path) -> PathBuf {
    ledger.with_extension("serve.lock")
}

/// Held by `serve` for as long as the returned file lives; `None` while a restore runs.
pub fn serving(ledger: &Path) -> Result<Option<std::fs::File>> {
    let path = serve_lock_path(ledger);
    let file = open_lock(&path)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::anyhow!("cannot lock {}: {e}", path.display())),
    }
}

/// Taken by a restore: `None` while a `serve` runs on the ledger.
pub fn try_lock_unserved(ledger: &Path) -> Result<Option<std::fs::File>> {
    lock_file(&serve_lock_path(ledger))
}

/// [`lock`], or `None` when another send holds it.
pub fn try_lock(ledger: &Path) -> Result<Option<std::fs::File>> {
    lock_file(&ledger.with_extension("lock"))
}

/// Opens (creating it and its folder) the lock file `path`.
fn open_lock(path: &Path) -> Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private::create_dir(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}

/// Locks `path` (creating it): `None` when another process holds it.
pub fn lock_file(path: &Path) -> Result<Option<std::fs::File>> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::anyhow!("cannot lock {}: {e}", path.display())),
    }
}
