//! The tables of sign-ups and choices: `signups` (requests waiting for their confirmation),
//! `subscribers` (confirmed or imported readers, who are recipients of every send) and
//! `choices` (a reader's projects). Only [`crate::readers`] and the sign-up service change
//! them; the meaning lives there.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Ledger, now};

/// A sign-up as the form posted it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Signup {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    /// As the list column: ids joined by `;`, empty for everything.
    pub projects: String,
    pub form: String,
    pub wording: String,
    pub layout_version: String,
    pub client: serde_json::Value,
    pub posted_at: String,
    pub emailed_at: Option<String>,
    pub message_id: Option<String>,
    pub confirmed_at: Option<String>,
    /// Tries of its confirmation email so far.
    pub attempts: u32,
    /// Why the last try failed, while none has succeeded.
    pub last_error: Option<String>,
    /// When its confirmation email is tried again; `None`: sent, given up, or never tried.
    pub retry_at: Option<String>,
}

/// How one try of a confirmation email ended.
pub enum Attempt<'a> {
    Sent {
        message_id: &'a str,
    },
    /// Tried again from `retry_at`; `None`: given up (a permanent refusal, or the link expired).
    Failed {
        error: &'a str,
        retry_at: Option<String>,
    },
}

/// A confirmed (or imported) reader, as `subscribers list` prints and a send reads them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Subscriber {
    pub email: String,
    pub name: Option<String>,
    /// Empty for everything.
    pub projects: String,
    pub joined_at: String,
    /// How they joined: `confirmed` (double opt-in) or `subscribed` (imported).
    pub how: String,
}

const SELECT_SIGNUP: &str = "SELECT id, email, name, projects, form, wording, layout_version, client, posted_at,
    emailed_at, message_id, confirmed_at, attempts, last_error, retry_at FROM signups";

fn signup_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Signup> {
    let client: String = r.get(7)?;
    Ok(Signup {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        projects: r.get(3)?,
        form: r.get(4)?,
        wording: r.get(5)?,
        layout_version: r.get(6)?,
        client: serde_json::from_str(&client).unwrap_or(serde_json::Value::String(client)),
        posted_at: r.get(8)?,
        emailed_at: r.get(9)?,
        message_id: r.get(10)?,
        confirmed_at: r.get(11)?,
        attempts: r.get(12)?,
        last_error: r.get(13)?,
        retry_at: r.get(14)?,
    })
}

impl Ledger {
    /// Stores a sign-up; `emailing`: its confirmation email goes now (the per-address limit
    /// counts it from here, before it is sent, so that requests at once cannot pass it).
    pub fn insert_signup(&mut self, s: &Signup, emailing: bool) -> Result<i64> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO signups (email, name, projects, form, wording, layout_version, client, posted_at, emailed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                crate::address::key(&s.email),
                s.name,
                s.projects,
                s.form,
                s.wording,
                s.layout_version,
                s.client.to_string(),
                s.posted_at,
                emailing.then(now),
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Counts a sign-up refused for its address's standing, without the address.
    pub fn count_refused_signup(&mut self) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO signup_refusals (day, refused) VALUES (substr(?1, 1, 10), 1)
                 ON CONFLICT (day) DO UPDATE SET refused = refused + 1",
            )?
            .execute([now()])?;
        Ok(())
    }

    /// When the last confirmation email to `email` went (or started to go).
    pub fn last_confirmation_email(&self, email: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT max(emailed_at) FROM signups WHERE email = ?1")?
            .query_row([crate::address::key(email)], |r| r.get(0))?)
    }

    pub fn signup(&self, id: i64) -> Result<Option<Signup>> {
        Ok(self
            .conn
            .prepare_cached(&format!("{SELECT_SIGNUP} WHERE id = ?1"))?
            .query_row([id], signup_row)
            .optional()?)
    }

    /// Every sign-up posted with `email`, oldest first.
    pub fn signups_of(&self, email: &str) -> Result<Vec<Signup>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT_SIGNUP} WHERE email = ?1 ORDER BY id"))?;
        let rows = stmt.query_map([crate::address::key(email)], signup_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a try of the sign-up's confirmation email. Given up, it no longer counts
    /// against the per-address limit, so that the reader's next sign-up is emailed.
    pub fn signup_attempted(&mut self, id: i64, attempt: &Attempt<'_>) -> Result<()> {
        self.begin()?;
        match attempt {
            Attempt::Sent { message_id } => self.conn.execute(
                "UPDATE signups SET message_id = ?2, attempts = attempts + 1, last_error = NULL, retry_at = NULL
                 WHERE id = ?1",
                params![id, message_id],
            )?,
            Attempt::Failed { error, retry_at } => self.conn.execute(
                "UPDATE signups SET attempts = attempts + 1, last_error = ?2, retry_at = ?3,
                     emailed_at = CASE WHEN ?3 IS NULL THEN NULL ELSE emailed_at END
                 WHERE id = ?1",
                params![id, error, retry_at],
            )?,
        };
        Ok(())
    }

    /// Sign-ups whose confirmation email is due to be tried again at `now`.
    pub fn signups_due(&self, now: &str) -> Result<Vec<Signup>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{SELECT_SIGNUP} WHERE retry_at IS NOT NULL AND retry_at <= ?1 AND confirmed_at IS NULL ORDER BY retry_at"
        ))?;
        let rows = stmt.query_map([now], signup_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Confirmation emails not sent yet: (waiting to be tried again, given up), with the
    /// latest error, for `status`.
    pub fn unsent_confirmations(&self) -> Result<(u64, u64, Option<String>)> {
        Ok(self.conn.query_row(
            "SELECT count(retry_at),
                    count(*) - count(retry_at),
                    (SELECT last_error FROM signups WHERE message_id IS NULL AND last_error IS NOT NULL
                     ORDER BY id DESC LIMIT 1)
             FROM signups WHERE message_id IS NULL AND last_error IS NOT NULL AND confirmed_at IS NULL",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get(2)?)),
        )?)
    }

    pub(crate) fn signup_confirmed(&mut self, id: i64, at: &str) -> Result<()> {
        self.begin()?;
        self.conn
            .execute("UPDATE signups SET confirmed_at = ?2 WHERE id = ?1", params![id, at])?;
        Ok(())
    }

    pub(crate) fn store_subscriber(&mut self, email: &str, name: Option<&str>, event: i64) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO subscribers (email, name, event, joined_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (email) DO UPDATE SET name = coalesce(excluded.name, name), event = excluded.event",
            )?
            .execute(params![crate::address::key(email), name, event, now()])?;
        Ok(())
    }

    pub(crate) fn store_choice(&mut self, email: &str, projects: &str, event: i64) -> Result<()> {
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO choices (email, projects, event, chosen_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (email) DO UPDATE SET projects = excluded.projects, event = excluded.event,
                 chosen_at = excluded.chosen_at",
            )?
            .execute(params![crate::address::key(email), projects, event, now()])?;
        Ok(())
    }

    pub fn is_subscriber(&self, email: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM subscribers WHERE email = ?1")?
            .exists([crate::address::key(email)])?)
    }

    /// The projects `email` chose (empty: everything); `None`: they never chose.
    pub fn choice_of(&self, email: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT projects FROM choices WHERE email = ?1")?
            .query_row([crate::address::key(email)], |r| r.get(0))
            .optional()?)
    }

    /// The distinct choices readers made (at most `limit`): the editions a send may need.
    pub fn distinct_choices(&self, limit: usize) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT DISTINCT projects FROM choices LIMIT ?1")?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Confirmed and imported readers, oldest first; `mailable_only`: without those whose
    /// standing forbids mail.
    pub fn subscribers(&self, mailable_only: bool) -> Result<Vec<Subscriber>> {
        let mut stmt = self.conn.prepare(
            "SELECT s.email, s.name, coalesce(c.projects, ''), s.joined_at, e.kind FROM subscribers s
             JOIN reader_events e ON e.id = s.event
             LEFT JOIN choices c ON c.email = s.email
             WHERE ?1 = 0 OR NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)
             ORDER BY s.joined_at, s.email",
        )?;
        let rows = stmt.query_map([mailable_only], |r| {
            Ok(Subscriber {
                email: r.get(0)?,
                name: r.get(1)?,
                projects: r.get(2)?,
                joined_at: r.get(3)?,
                how: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
