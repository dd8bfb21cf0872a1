//! DMARC aggregate reports as read: one per reporting organisation and report id (a re-read
//! changes nothing), their rows as reported, and the ones that could not be read.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Ledger, now};

/// One aggregate report: who reported, on which domain's mail, over which days, under which
/// published policy, and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feedback {
    pub org: String,
    pub report_id: String,
    pub domain: String,
    /// The published `p=`: none, quarantine or reject.
    pub policy: String,
    /// Unix seconds, as reported.
    pub begin: i64,
    pub end: i64,
    /// The file, or the mailbox and message, it was read from.
    pub file: String,
}

/// One row of a report: mail from one source with one outcome. Values are as reported
/// (lowercased), empty when the report left them out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub source_ip: String,
    pub messages: u64,
    pub disposition: String,
    /// The policy-evaluated results: `pass` means aligned.
    pub dkim: String,
    pub spf: String,
    pub header_from: String,
    /// The DKIM result that decides (the header_from domain's, or the first reported).
    pub dkim_domain: String,
    pub dkim_selector: String,
    pub dkim_result: String,
    /// The SPF result as checked: its domain is the MAIL FROM's (or HELO's).
    pub spf_domain: String,
    pub spf_result: String,
}

/// A report held in the ledger.
pub struct Held {
    pub feedback: Feedback,
    pub rows: Vec<Row>,
}

/// A report that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub file: String,
    pub why: String,
}

impl Ledger {
    /// Keeps a report, in the caller's transaction (committed with the mailbox's cursor):
    /// false when the ledger held it already.
    pub fn store_dmarc(&mut self, feedback: &Feedback, rows: &[Row]) -> Result<bool> {
        self.begin()?;
        let id: Option<i64> = self
            .conn
            .prepare_cached(
                "INSERT INTO dmarc_reports (org, report_id, domain, policy, begin_at, end_at, source, read_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (org, report_id) DO NOTHING RETURNING id",
            )?
            .query_row(
                params![
                    feedback.org,
                    feedback.report_id,
                    feedback.domain,
                    feedback.policy,
                    feedback.begin,
                    feedback.end,
                    feedback.file,
                    now()
                ],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else { return Ok(false) };
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO dmarc_rows (report, source_ip, messages, disposition, dkim, spf, header_from,
                                     dkim_domain, dkim_selector, dkim_result, spf_domain, spf_result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for row in rows {
            insert.execute(params![
                id,
                row.source_ip,
                row.messages as i64,
                row.disposition,
                row.dkim,
                row.spf,
                row.header_from,
                row.dkim_domain,
                row.dkim_selector,
                row.dkim_result,
                row.spf_domain,
                row.spf_result
            ])?;
        }
        Ok(true)
    }

    /// Notes a report that could not be read (once), in the caller's transaction.
    pub fn store_dmarc_unreadable(&mut self, unreadable: &Unreadable) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO dmarc_unreadable (source, why, read_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (source, why) DO NOTHING",
            )?
            .execute(params![unreadable.file, unreadable.why, now()])?;
        Ok(())
    }

    /// The reports whose days end at or after `since` (Unix seconds), oldest first.
    pub fn dmarc_reports_since(&self, since: i64) -> Result<Vec<Held>> {
        let mut reports = self.conn.prepare_cached(
            "SELECT id, org, report_id, domain, policy, begin_at, end_at, source FROM dmarc_reports
              WHERE end_at >= ?1 ORDER BY end_at, id",
        )?;
        let mut rows = self.conn.prepare_cached(
            "SELECT source_ip, messages, disposition, dkim, spf, header_from, dkim_domain,
                    dkim_selector, dkim_result, spf_domain, spf_result
               FROM dmarc_rows WHERE report = ?1",
        )?;
        let heads = reports
            .query_map([since], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Feedback {
                        org: r.get(1)?,
                        report_id: r.get(2)?,
                        domain: r.get(3)?,
                        policy: r.get(4)?,
                        begin: r.get(5)?,
                        end: r.get(6)?,
                        file: r.get(7)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut held = Vec::with_capacity(heads.len());
        for (id, feedback) in heads {
            let rows = rows
                .query_map([id], |r| {
                    Ok(Row {
                        source_ip: r.get(0)?,
                        messages: r.get::<_, i64>(1)?.max(0) as u64,
                        disposition: r.get(2)?,
                        dkim: r.get(3)?,
                        spf: r.get(4)?,
                        header_from: r.get(5)?,
                        dkim_domain: r.get(6)?,
                        dkim_selector: r.get(7)?,
                        dkim_result: r.get(8)?,
                        spf_domain: r.get(9)?,
                        spf_result: r.get(10)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            held.push(Held { feedback, rows });
        }
        Ok(held)
    }

    /// The reports that could not be read, noted at or after `since` (RFC 3339).
    pub fn dmarc_unreadable_since(&self, since: &str) -> Result<Vec<Unreadable>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT source, why FROM dmarc_unreadable WHERE read_at >= ?1 ORDER BY read_at, rowid")?;
        let found = stmt
            .query_map([since], |r| {
                Ok(Unreadable {
                    file: r.get(0)?,
                    why: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(found)
    }
}
