//! Link-check results kept in the project's SQLite database (the ledger's file, its own
//! table), so `check` can run every few minutes without asking every site again.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};

use super::result::LinkResult;

pub struct Cache {
    conn: Connection,
    max_age: Duration,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Cache {
    pub fn open(path: &Path, max_age: Duration) -> Result<Cache> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // Its table is part of the ledger's schema.
        let conn = crate::ledger::schema::connect(path)?;
        Ok(Cache { conn, max_age })
    }

    /// A result younger than the cache's age limit.
    pub fn get(&self, url: &str, image: bool) -> Result<Option<LinkResult>> {
        let oldest = unix_now() - self.max_age.as_secs() as i64;
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT outcome FROM link_checks WHERE url = ?1 AND image = ?2 AND checked_at >= ?3",
                params![url, image, oldest],
                |row| row.get(0),
            )
            .optional()?;
        // A row written by another version that no longer parses is simply asked again.
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    pub fn put(&self, url: &str, image: bool, outcome: &LinkResult) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO link_checks (url, image, checked_at, outcome) VALUES (?1, ?2, ?3, ?4)",
            params![url, image, unix_now(), serde_json::to_string(outcome)?],
        )?;
        Ok(())
    }
}
