//! The tables behind a reader's standing: `reader_events` (the history), `suppressions` (the
//! standing derived from it, so that a send looks an address up in one read) and `forgotten`
//! (keyed hashes of erased addresses). Only [`crate::readers`] changes them: these functions
//! store and fetch, the precedence lives there.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::Sha256;

use super::{Ledger, now};

/// One change of a reader's standing, as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReaderEvent {
    pub id: i64,
    pub email: String,
    pub kind: String,
    pub source: String,
    pub issue: Option<String>,
    pub evidence: serde_json::Value,
    /// A resubscribe: the unsubscribe it answers.
    pub answers: Option<i64>,
    pub created_at: String,
}

/// What an erasure removed from the ledger.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Erased {
    pub deliveries: u64,
    pub events: u64,
    pub bounce_records: u64,
    /// Other rows that named the address (another recipient's bounce diagnostic, a run's
    /// `--where`): the address in them was replaced by `[forgotten]`.
    pub mentions: u64,
}

/// A row of the ledger that names a reader without being theirs.
#[derive(Debug, Clone, Serialize)]
pub struct Mention {
    pub table: String,
    pub column: String,
    /// Up to 80 characters each side of the address.
    pub context: String,
}

/// The words around the first (ASCII-case-insensitive) occurrence of `needle` in `text`.
fn around(text: &str, needle: &str) -> String {
    let at = text.to_ascii_lowercase().find(needle).unwrap_or(0);
    let mut start = at.saturating_sub(80);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + needle.len() + 80).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    text[start..end].to_owned()
}

/// One message the ledger holds for a reader.
#[derive(Debug, Clone, Serialize)]
pub struct ReaderDelivery {
    pub issue: String,
    pub status: String,
    pub attempts: u32,
    pub last_reply: Option<String>,
    pub message_id: String,
    pub line: u64,
    pub first_at: String,
    pub sent_at: Option<String>,
}

/// The mark left where an erased address was mentioned.
const FORGOTTEN: &str = "[forgotten]";

impl Ledger {
    pub(crate) fn insert_reader_event(
        &mut self,
        email: &str,
        kind: &str,
        source: &str,
        issue: Option<&str>,
        evidence: &serde_json::Value,
        answers: Option<i64>,
    ) -> Result<i64> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO reader_events (email, kind, source, issue, evidence, answers, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                crate::address::key(email),
                kind,
                source,
                issue,
                evidence.to_string(),
                answers,
                now()
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every event of `email`, oldest first.
    pub fn reader_events(&self, email: &str) -> Result<Vec<ReaderEvent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, email, kind, source, issue, evidence, answers, created_at FROM reader_events
             WHERE email = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([crate::address::key(email)], |r| {
            let evidence: String = r.get(5)?;
            Ok(ReaderEvent {
                id: r.get(0)?,
                email: r.get(1)?,
                kind: r.get(2)?,
                source: r.get(3)?,
                issue: r.get(4)?,
                evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::String(evidence)),
                answers: r.get(6)?,
                created_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every message recorded for `email`, oldest first.
    pub fn deliveries_of(&self, email: &str) -> Result<Vec<ReaderDelivery>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT issue, status, attempts, last_reply, message_id, line, first_at, sent_at FROM deliveries
             WHERE email = ?1 ORDER BY first_at",
        )?;
        let rows = stmt.query_map([crate::address::key(email)], |r| {
            Ok(ReaderDelivery {
                issue: r.get(0)?,
                status: r.get(1)?,
                attempts: r.get(2)?,
                last_reply: r.get(3)?,
                message_id: r.get(4)?,
                line: r.get::<_, i64>(5)? as u64,
                first_at: r.get(6)?,
                sent_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stores the standing derived from the events: suppressed by `deciding`, or mailable.
    pub(crate) fn store_standing(&mut self, email: &str, deciding: Option<(&ReaderEvent, &str)>) -> Result<()> {
        self.begin()?;
        let email = crate::address::key(email);
        match deciding {
            None => {
                self.conn
                    .prepare_cached("DELETE FROM suppressions WHERE email = ?1")?
                    .execute([&email])?;
            }
            Some((event, reason)) => {
                let cause = event.evidence.get("bounce_event").and_then(serde_json::Value::as_i64);
                self.conn
                    .prepare_cached(
                        "INSERT INTO suppressions (email, reason, source, created_at, issue, cause, kind, event)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (email) DO UPDATE SET reason = ?2, source = ?3, created_at = ?4, issue = ?5,
                           cause = ?6, kind = ?7, event = ?8",
                    )?
                    .execute(params![
                        email,
                        reason,
                        event.source,
                        event.created_at,
                        event.issue,
                        cause,
                        event.kind,
                        event.id
                    ])?;
            }
        }
        Ok(())
    }

    /// The key of the forgotten addresses' hashes, beside the ledger (`newsletter.key`): kept
    /// out of the database, so that a copy of the database alone cannot confirm a guessed
    /// address.
    pub(super) fn forget_key_path(&self) -> PathBuf {
        self.path.with_extension("key")
    }

    /// The key, read once it exists.
    fn forget_key(&self) -> Result<Option<&[u8; 32]>> {
        if let Some(key) = self.forget_key.get() {
            return Ok(Some(key));
        }
        let path = self.forget_key_path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!("{} is damaged (not 32 bytes): restore it from a backup", path.display())
                })?;
                Ok(Some(self.forget_key.get_or_init(|| key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub(super) fn create_forget_key(&self) -> Result<&[u8; 32]> {
        if let Some(key) = self.forget_key()? {
            return Ok(key);
        }
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| anyhow::anyhow!("the operating system gave no random bytes"))?;
        crate::private::write_new(&self.forget_key_path(), &key)?;
        Ok(self.forget_key.get_or_init(|| key))
    }

    fn forgotten_hash(key: &[u8; 32], email: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(crate::address::key(email).as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key to recognize forgotten addresses by; `None` when no one was forgotten. With
    /// people forgotten and the key file gone this is an error: nobody can be told apart from
    /// them, and what depends on it fails closed.
    fn lookup_key(&self) -> Result<Option<&[u8; 32]>> {
        // Most lists have no one forgotten: one look at the table, no file and no hash.
        if !self.anyone_forgotten()? {
            return Ok(None);
        }
        match self.forget_key()? {
            Some(key) => Ok(Some(key)),
            None => bail!("{}", self.missing_key_message()),
        }
    }

    fn anyone_forgotten(&self) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM forgotten)")?
            .query_row([], |r| r.get(0))?)
    }

    /// What to do about a missing key file, when people were forgotten; `None`: nothing
    /// missing. For `serve`'s start and `/healthz`.
    pub fn missing_forget_key(&self) -> Result<Option<String>> {
        Ok((self.anyone_forgotten()? && self.forget_key()?.is_none()).then(|| self.missing_key_message()))
    }

    fn missing_key_message(&self) -> String {
        format!(
            "{} is missing, so the addresses erased by `subscribers forget` cannot be recognized: restore it from the backup of {} (sign-ups are refused until then)",
            self.forget_key_path().display(),
            self.path.display()
        )
    }

    /// Whether `email` was erased at its owner's request.
    pub fn is_forgotten(&self, email: &str) -> Result<bool> {
        let Some(key) = self.lookup_key()? else {
            return Ok(false);
        };
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM forgotten WHERE hash = ?1")?
            .exists([Self::forgotten_hash(key, email)])?)
    }

    /// When `email` was forgotten.
    pub fn forgotten_at(&self, email: &str) -> Result<Option<String>> {
        let Some(key) = self.lookup_key()? else {
            return Ok(None);
        };
        Ok(self
            .conn
            .prepare_cached("SELECT created_at FROM forgotten WHERE hash = ?1")?
            .query_row([Self::forgotten_hash(key, email)], |r| r.get(0))
            .optional()?)
    }

    /// Erases every trace of `email` from the database and keeps its keyed hash. Deleted
    /// content is overwritten (`secure_delete`), the file rebuilt and the write-ahead log
    /// emptied, so that the address is not left in the file's free space either.
    pub(crate) fn erase(&mut self, email: &str) -> Result<Erased> {
        let email = crate::address::key(email);
        let hash = Self::forgotten_hash(self.create_forget_key()?, &email);
        self.commit()?;
        self.conn.pragma_update(None, "secure_delete", "ON")?;
        self.begin()?;
        // The issues this reader got stay published without their delivery.
        self.mark_went_out(None)?;
        let mut erased = Erased::default();
        let delete = |sql: &str| -> Result<u64> { Ok(self.conn.execute(sql, [&email])? as u64) };
        erased.deliveries = delete("DELETE FROM deliveries WHERE email = ?1")?;
        erased.events = delete("DELETE FROM reader_events WHERE email = ?1")?;
        erased.bounce_records = delete("DELETE FROM bounce_events WHERE email = ?1")?;
        delete("DELETE FROM suppressions WHERE email = ?1")?;
        erased.events += delete("DELETE FROM signups WHERE email = ?1")?;
        delete("DELETE FROM subscribers WHERE email = ?1")?;
        delete("DELETE FROM choices WHERE email = ?1")?;
        erased.bounce_records += delete("DELETE FROM deferred_suppressions WHERE email = ?1")?;
        erased.mentions = self.scrub(&email)?;
        self.conn.execute(
            "INSERT OR IGNORE INTO forgotten (hash, created_at) VALUES (?1, ?2)",
            params![hash, now()],
        )?;
        self.commit()?;
        // Rows rewritten before (a delivery going from sending to sent) leave their old bytes
        // in the pages' free space: rebuilding the file drops them. Old page images stay in
        // the write-ahead log until a checkpoint copies the new ones over them and the log is
        // emptied; the service's readers may hold it a moment.
        self.conn.execute_batch("VACUUM")?;
        for _ in 0..50 {
            let busy: i64 = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        self.conn.pragma_update(None, "secure_delete", "OFF")?;
        Ok(erased)
    }

    /// Replaces the address wherever another row mentions it, in every text column.
    fn scrub(&mut self, email: &str) -> Result<u64> {
        let mut changed = 0;
        for (table, column) in self.text_columns()? {
            // Names come from the schema itself, quoted.
            let sql = format!(
                "UPDATE \"{table}\" SET \"{column}\" = scrub(\"{column}\", ?1) WHERE instr(lower(\"{column}\"), ?1) > 0"
            );
            changed += self.conn.execute(&sql, [email])? as u64;
        }
        Ok(changed)
    }

    /// Every text column of every table: where [`Ledger::erase`] scrubs the address and
    /// [`Ledger::mentions`] finds it.
    fn text_columns(&self) -> Result<Vec<(String, String)>> {
        let tables: Vec<String> = self
            .conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut columns = Vec::new();
        for table in tables {
            let names: Vec<String> = self
                .conn
                .prepare("SELECT name FROM pragma_table_info(?1) WHERE type = 'TEXT'")?
                .query_map([&table], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            columns.extend(names.into_iter().map(|c| (table.clone(), c)));
        }
        Ok(columns)
    }

    /// What other rows say of `email` (another reader's bounce diagnostic, mail to the
    /// unsubscribe address, a run's `--where`): everything `forget` would scrub beyond the
    /// reader's own rows, each as the words around the address.
    pub fn mentions(&self, email: &str) -> Result<Vec<Mention>> {
        let email = crate::address::key(email);
        let columns = self.text_columns()?;
        let mut found = Vec::new();
        for (table, column) in &columns {
            if column == "email" {
                continue;
            }
            // The reader's own rows are exported in their own right.
            let not_own = if columns.iter().any(|(t, c)| t == table && c == "email") {
                " AND (email IS NULL OR email <> ?1)"
            } else {
                ""
            };
            let sql = format!("SELECT \"{column}\" FROM \"{table}\" WHERE instr(lower(\"{column}\"), ?1) > 0{not_own}");
            let mut stmt = self.conn.prepare(&sql)?;
            let texts = stmt.query_map([&email], |r| r.get::<_, String>(0))?;
            for text in texts {
                found.push(Mention {
                    table: table.clone(),
                    column: column.clone(),
                    context: around(&text?, &email),
                });
            }
        }
        Ok(found)
    }

    /// Registers `scrub(text, address)`: the text with every case of the address replaced.
    pub(crate) fn register_scrub(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        use rusqlite::functions::FunctionFlags;
        conn.create_scalar_function(
            "scrub",
            2,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| {
                let text: Option<String> = ctx.get(0)?;
                let needle: String = ctx.get(1)?;
                Ok(text.map(|t| replace_ignoring_case(&t, &needle, FORGOTTEN)))
            },
        )
    }
}

/// `text` with every ASCII-case-insensitive occurrence of `needle` (lower case) replaced.
fn replace_ignoring_case(text: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return text.to_owned();
    }
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(needle) {
        if at < last {
            continue;
        }
        out.push_str(&text[last..at]);
        out.push_str(with);
        last = at + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_ignores_case_and_keeps_the_rest() {
        assert_eq!(
            replace_ignoring_case(
                "550 <Alice@Example.org>: no; alice@example.org",
                "alice@example.org",
                "[x]"
            ),
            "550 <[x]>: no; [x]"
        );
        assert_eq!(replace_ignoring_case("nothing", "a@b", "[x]"), "nothing");
    }
}
