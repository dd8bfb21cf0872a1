//! What readers did with an issue, as counts only: the issue's links as first sent (number,
//! URL, section, project), and per issue, what (a link, the archive page, the image), UTC day
//! and reason, a number. Never an address, token, IP, agent or time of a request.

use anyhow::Result;
use rusqlite::params;

use super::Ledger;

/// One link of an issue as stored at its first send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLink {
    pub n: u32,
    pub url: String,
    pub section: String,
    pub project: Option<String>,
}

/// One stored count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingCount {
    /// `link`, `page` or `open`.
    pub kind: String,
    /// The link's number; 0 for the page and the image.
    pub n: u32,
    /// YYYY-MM-DD, UTC.
    pub day: String,
    pub reason: String,
    pub count: i64,
}

/// A change to a count, as `serve` writes them.
pub struct CountChange<'a> {
    pub issue: &'a str,
    pub kind: &'a str,
    pub n: u32,
    pub day: String,
    pub reason: &'a str,
    pub delta: i64,
}

impl Ledger {
    /// Stores the issue's links; a number stored by an earlier run keeps its link (the
    /// numbering is `clicks::LinkTable::merged`'s).
    pub fn store_links(&mut self, issue: &str, links: &[StoredLink]) -> Result<()> {
        self.begin()?;
        {
            let mut insert = self.conn.prepare_cached(
                "INSERT INTO issue_links (issue, n, url, section, project) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (issue, n) DO NOTHING",
            )?;
            for link in links {
                insert.execute(params![issue, link.n, link.url, link.section, link.project])?;
            }
        }
        self.commit()?;
        Ok(())
    }

    /// The links stored for `issue` (none before its first send).
    pub fn links_of(&self, issue: &str) -> Result<Vec<StoredLink>> {
        read_links(&self.conn, issue)
    }

    /// Adds the changes in one transaction.
    pub fn add_counts(&mut self, changes: &[CountChange<'_>]) -> Result<()> {
        self.begin()?;
        {
            let mut add = self.conn.prepare_cached(
                "INSERT INTO reading_counts (issue, kind, n, day, reason, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (issue, kind, n, day, reason) DO UPDATE SET count = count + excluded.count",
            )?;
            for c in changes {
                add.execute(params![c.issue, c.kind, c.n, c.day, c.reason, c.delta])?;
            }
        }
        self.commit()?;
        Ok(())
    }

    /// Every count of `issue`.
    pub fn counts_of(&self, issue: &str) -> Result<Vec<ReadingCount>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, n, day, reason, count FROM reading_counts WHERE issue = ?1 AND count != 0
             ORDER BY kind, n, day, reason",
        )?;
        let rows = stmt.query_map(params![issue], |r| {
            Ok(ReadingCount {
                kind: r.get(0)?,
                n: r.get(1)?,
                day: r.get(2)?,
                reason: r.get(3)?,
                count: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl Ledger {
    /// Readers who unsubscribed from `issue`'s own link or mailto.
    pub fn unsubscribes_of(&self, issue: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT count(DISTINCT email) FROM reader_events WHERE kind = 'unsubscribed' AND issue = ?1",
            params![issue],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// Readers' events of `kinds` from `since` up to, not including, `until` (YYYY-MM-DD).
    pub fn reader_events_between(&self, kinds: &[&str], since: &str, until: &str) -> Result<u64> {
        let mut n = 0i64;
        for kind in kinds {
            n += self.conn.query_row(
                "SELECT count(*) FROM reader_events WHERE kind = ?1 AND created_at >= ?2 AND created_at < ?3",
                params![kind, since, until],
                |r| r.get::<_, i64>(0),
            )?;
        }
        Ok(n.max(0) as u64)
    }
}

fn read_links(conn: &rusqlite::Connection, issue: &str) -> Result<Vec<StoredLink>> {
    let mut stmt =
        conn.prepare_cached("SELECT n, url, section, project FROM issue_links WHERE issue = ?1 ORDER BY n")?;
    let rows = stmt.query_map(params![issue], |r| {
        Ok(StoredLink {
            n: r.get(0)?,
            url: r.get(1)?,
            section: r.get(2)?,
            project: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
