//! A consistent copy of the ledger taken while `serve` answers and a send runs (SQLite's
//! online backup, in one step: one read transaction, so the copy is the database at one
//! instant and writers are never blocked in WAL mode), with its key file; and the way back.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use sha2::Sha256;

use super::{Ledger, schema};

/// What a backup or a restore did.
#[derive(Debug, Serialize)]
pub struct Copied {
    pub file: String,
    pub key: String,
    pub bytes: u64,
    pub seconds: f64,
    /// A restore: where the ledger it replaced (with --force) was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_kept_at: Option<String>,
}

/// The key file beside the backup `file`: `FILE.key` (a ledger's own is `newsletter.key`).
pub fn key_path_of_backup(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

fn key_mac(key: &[u8; 32]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(b"newsletter ledger key check");
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

impl Ledger {
    /// Records what the key gives, once (a ledger whose key came before this check was kept
    /// records it at its first backup, from the key file beside it).
    fn record_key_check(&mut self, key: &[u8; 32]) -> Result<()> {
        self.begin()?;
        self.conn.execute(
            "INSERT INTO key_check (id, mac) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
            [key_mac(key)],
        )?;
        self.commit()?;
        Ok(())
    }

    /// Copies the ledger to `to` (which must not exist) and its key to `to.key` (0600). The
    /// key is made first when there is none yet, so that a backup is always a pair.
    pub fn backup(&mut self, to: &Path) -> Result<Copied> {
        let key_to = key_path_of_backup(to);
        for path in [to, key_to.as_path()] {
            if path.exists() {
                bail!(
                    "{} exists: name a new file (a backup never overwrites one)",
                    path.display()
                );
            }
        }
        let key = *self.create_forget_key().with_context(|| {
            format!(
                "cannot read the key file {}, without which a restored ledger cannot recognize forgotten readers: check its owner and mode, then back up again",
                self.forget_key_path().display()
            )
        })?;
        self.record_key_check(&key)?;
        let started = Instant::now();
        let partial = to.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        // Created private first: SQLite keeps the mode of the file it opens.
        crate::private::touch(&partial)?;
        {
            let mut copy =
                Connection::open(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
            let backup = rusqlite::backup::Backup::new(&self.conn, &mut copy)?;
            // One step: the whole database under one read transaction.
            backup.step(-1)?;
            drop(backup);
            // One file, no write-ahead log beside it.
            copy.pragma_update(None, "journal_mode", "DELETE")?;
            check_integrity(&copy, &partial)?;
        }
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, to).with_context(|| format!("cannot write {}", to.display()))?;
        crate::private::write_new(&key_to, &key)?;
        Ok(Copied {
            file: to.display().to_string(),
            key: key_to.display().to_string(),
            bytes: std::fs::metadata(to)?.len(),
            seconds: started.elapsed().as_secs_f64(),
            replaced_kept_at: None,
        })
    }
}

fn check_integrity(conn: &Connection, path: &Path) -> Result<()> {
    let verdict = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .unwrap_or_else(|e| e.to_string());
    if verdict != "ok" {
        bail!(
            "{} is damaged (SQLite's integrity check: {verdict}): use an older backup",
            path.display()
        );
    }
    Ok(())
}

/// Restores the backup `from` (and `from.key`) as the ledger at `ledger`: refused when a
/// ledger is there unless `force` (which keeps it beside, renamed), and refused when the
/// backup fails its integrity check, comes from a newer release, or its key is not the one it
/// was taken with.
pub fn restore(from: &Path, ledger: &Path, force: bool) -> Result<Copied> {
    let key_from = key_path_of_backup(from);
    let started = Instant::now();
    let copy = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open the backup {}", from.display()))?;
    check_integrity(&copy, from)?;
    let version: usize = copy
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?
        .max(0) as usize;
    if version > schema::current_version() {
        bail!(
            "{} was written by a newer newsletter (schema {version}, this one knows {}): restore it with that release",
            from.display(),
            schema::current_version()
        );
    }
    let key: [u8; 32] = std::fs::read(&key_from)
        .with_context(|| {
            format!(
                "cannot read {}: a backup is restored with the key taken with it (without it, readers who asked to be forgotten cannot be recognized)",
                key_from.display()
            )
        })?
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} is damaged (not 32 bytes)", key_from.display()))?;
    let recorded: Option<String> = copy
        .query_row("SELECT mac FROM key_check WHERE id = 1", [], |r| r.get(0))
        .optional()
        .unwrap_or(None);
    if recorded.is_some_and(|mac| mac != key_mac(&key)) {
        bail!(
            "{} is not the key {} was taken with: find the .key file made with this backup",
            key_from.display(),
            from.display()
        );
    }
    let key_to = ledger.with_extension("key");
    let mut replaced_kept_at = None;
    if ledger.exists() {
        if !force {
            bail!(
                "{} exists (a live ledger, {} bytes): restoring would replace it; stop `serve` and cron, then add --force (it is kept beside, renamed)",
                ledger.display(),
                std::fs::metadata(ledger).map(|m| m.len()).unwrap_or(0)
            );
        }
        let Some(_lock) = super::try_lock(ledger)? else {
            bail!(
                "a send is running on {}: let it stop before restoring over it",
                ledger.display()
            );
        };
        let Some(_unserved) = super::try_lock_unserved(ledger)? else {
            bail!(
                "`newsletter serve` is running on {}: stop it (it would go on writing to the replaced file), then restore",
                ledger.display()
            );
        };
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let kept = ledger.with_extension(format!("db.before-restore-{stamp}"));
        // The live file's last commits are in its write-ahead log: fold them in first.
        if let Ok(live) = Connection::open(ledger) {
            let _ = live.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        std::fs::rename(ledger, &kept).with_context(|| format!("cannot move {} aside", ledger.display()))?;
        if key_to.exists() {
            std::fs::rename(&key_to, kept.with_extension("key"))?;
        }
        replaced_kept_at = Some(kept.display().to_string());
    }
    for stale in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(ledger.with_extension(stale));
    }
    if let Some(dir) = ledger.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private::create_dir(dir)?;
    }
    let partial = ledger.with_extension("restoring");
    let _ = std::fs::remove_file(&partial);
    crate::private::touch(&partial)?;
    {
        let mut target = Connection::open(&partial)?;
        let backup = rusqlite::backup::Backup::new(&copy, &mut target)?;
        backup.step(-1)?;
        drop(backup);
        target.pragma_update(None, "journal_mode", "WAL")?;
    }
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, ledger)?;
    if !key_to.exists() {
        crate::private::write_new(&key_to, &key)?;
    }
    // Upgraded to this release's schema, and the key's check recorded.
    let mut restored = Ledger::open(ledger)?;
    restored.record_key_check(&key)?;
    Ok(Copied {
        file: ledger.display().to_string(),
        key: key_to.display().to_string(),
        bytes: std::fs::metadata(ledger)?.len(),
        seconds: started.elapsed().as_secs_f64(),
        replaced_kept_at,
    })
}
