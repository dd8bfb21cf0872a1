//! Which unsubscribe secret signs this ledger's links. A secret changed by mistake (a new
//! shell, a new `openssl rand`) kills every unsubscribe link already sent, silently: `send`
//! and `serve` compare a fingerprint of theirs with the one the ledger keeps, and refuse a
//! different one unless it is a rotation (the old one given as the previous secret).

use anyhow::Result;
use rusqlite::{OptionalExtension, params};
use thiserror::Error;

use super::{Ledger, now};
use crate::unsubscribe::{PREVIOUS_SECRET_VAR, SECRET_VAR, Secret};

#[derive(Debug, Error)]
#[error(
    "{SECRET_VAR} is not the secret that signed the links this ledger's issues carry (since {since}: {issues}): every unsubscribe link already sent would stop working. Put that secret back; to change it, give the new one as {SECRET_VAR} and the old one as {PREVIOUS_SECRET_VAR}, to send and serve alike, for as long as the old issues' links matter"
)]
pub struct SecretChanged {
    pub since: String,
    /// The issues sent since, as the message names them.
    pub issues: String,
}

/// What the ledger made of the secret it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretCheck {
    /// The secret it keeps.
    Same,
    /// None was kept yet: this one is, from now on.
    First,
    /// The previous secret was the one kept: the new one is, from now on.
    Rotated,
}

impl Ledger {
    /// Compares `current` (and, during a rotation, `previous`) with the secret this ledger's
    /// links were signed with, and keeps `current` when it is the first or a rotation.
    pub fn adopt_secret(&mut self, current: &Secret, previous: Option<&Secret>) -> Result<SecretCheck> {
        let kept: Option<(String, String)> = self
            .conn
            .query_row("SELECT fingerprint, since FROM secret_in_use", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let mine = current.fingerprint();
        let check = match kept {
            Some((fingerprint, _)) if fingerprint == mine => return Ok(SecretCheck::Same),
            None => SecretCheck::First,
            Some((fingerprint, _)) if previous.is_some_and(|p| p.fingerprint() == fingerprint) => SecretCheck::Rotated,
            Some((_, since)) => {
                let issues: Vec<String> = self
                    .conn
                    .prepare("SELECT issue FROM issues WHERE started_at >= ?1 ORDER BY started_at")?
                    .query_map(params![since], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let issues = if issues.is_empty() {
                    "no issue yet, but serve's links".to_owned()
                } else {
                    issues.join(", ")
                };
                return Err(SecretChanged { since, issues }.into());
            }
        };
        self.conn.execute(
            "INSERT INTO secret_in_use (id, fingerprint, since) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, since = excluded.since",
            params![mine, now()],
        )?;
        Ok(check)
    }
}

/// The fingerprint of the secret the ledger at `path` keeps, read without changing or
/// creating anything (`newsletter doctor`); none when the ledger or the record is missing.
pub fn kept_fingerprint(path: &std::path::Path) -> Result<Option<String>> {
    if !path.is_file() {
        return Ok(None);
    }
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let table: Option<String> = conn
        .query_row("SELECT name FROM sqlite_master WHERE name = 'secret_in_use'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if table.is_none() {
        return Ok(None);
    }
    Ok(conn
        .query_row("SELECT fingerprint FROM secret_in_use", [], |r| r.get(0))
        .optional()?)
}
