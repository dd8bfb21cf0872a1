//! The one writer of `serve`: readers' requests (unsubscribe, resubscribe) queue here, and a
//! thread of its own applies all that are waiting in one transaction and one sync to disk
//! (group commit), then answers each. Every answer still waits for its change to be on disk;
//! many requests share the cost of getting there.

use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::ledger::{Attempt, Ledger, Signup};
use crate::readers::{self, Confirmed, Resubscribed};

/// A change a reader asks for.
pub enum Write {
    Unsubscribe {
        email: String,
        issue: Option<String>,
        evidence: Value,
    },
    Resubscribe {
        email: String,
        issue: Option<String>,
        evidence: Value,
    },
    /// A sign-up posted: stored, and emailed unless the address had one within
    /// `per_address` or may not be mailed.
    SignUp { signup: Box<Signup>, per_address: Duration },
    /// A try of the confirmation email: its Message-ID, or why not and when to try again.
    Emailed {
        id: i64,
        outcome: std::result::Result<String, (String, Option<String>)>,
    },
    /// The confirmation link's button, for the sign-up `id` of `email`.
    Confirm { id: i64, email: String, client: Value },
    Choose {
        email: String,
        projects: String,
        evidence: Value,
    },
}

/// What it did, once on disk.
pub enum Written {
    Unsubscribed,
    Resubscribed(Resubscribed),
    /// The sign-up to email (with its id), or none: limited or refused, silently.
    SignedUp(Option<Box<Signup>>),
    /// Not taken: people were forgotten and the key that recognizes them is missing (the
    /// line says what to restore). Fails closed, and fails nothing else in the batch.
    KeyMissing(String),
    Emailed,
    /// `None`: no such sign-up for that address.
    Confirmed(Option<Confirmed>),
    Chose,
}

type Reply = tokio::sync::oneshot::Sender<Option<Written>>;

/// The most requests one transaction takes.
const BATCH: usize = 512;

pub type Requests = mpsc::Sender<(Write, Reply)>;

/// Starts the writer thread over `ledger`; requests go through the returned sender, and the
/// thread ends when every sender is gone.
pub fn start(ledger: Arc<Mutex<Ledger>>, resubscribe_within: Duration) -> Requests {
    let (tx, rx) = mpsc::channel::<(Write, Reply)>();
    std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter().take(BATCH - 1));
            let results = {
                let mut ledger = ledger.lock().unwrap_or_else(PoisonError::into_inner);
                apply(&mut ledger, resubscribe_within, &batch)
            };
            for ((_, reply), result) in batch.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
    });
    tx
}

/// Applies a batch in one transaction: every result, or none when it could not be committed.
fn apply(ledger: &mut Ledger, within: Duration, batch: &[(Write, Reply)]) -> Vec<Option<Written>> {
    let applied: Result<Vec<Written>> = (|| {
        // Every decision below reads inside this one write transaction, so that nothing
        // committed by another process (`subscribers forget`) slips between a read and a write.
        ledger.begin()?;
        let mut out = Vec::with_capacity(batch.len());
        for (write, _) in batch {
            out.push(match write {
                Write::Unsubscribe { email, issue, evidence } => {
                    readers::unsubscribe(ledger, email, ONE_CLICK, issue.as_deref(), evidence.clone())?;
                    Written::Unsubscribed
                }
                Write::Resubscribe { email, issue, evidence } => Written::Resubscribed(readers::resubscribe(
                    ledger,
                    email,
                    issue.as_deref(),
                    within,
                    evidence.clone(),
                )?),
                Write::SignUp { signup, per_address } => match ledger.missing_forget_key()? {
                    Some(missing) => Written::KeyMissing(missing),
                    None => Written::SignedUp(sign_up(ledger, signup, *per_address)?.map(Box::new)),
                },
                Write::Emailed { id, outcome } => {
                    let attempt = match outcome {
                        Ok(message_id) => Attempt::Sent { message_id },
                        Err((error, retry_at)) => Attempt::Failed {
                            error,
                            retry_at: retry_at.clone(),
                        },
                    };
                    ledger.signup_attempted(*id, &attempt)?;
                    Written::Emailed
                }
                Write::Confirm { id, email, client } => Written::Confirmed(
                    match ledger.signup(*id)?.filter(|s| s.email == crate::address::key(email)) {
                        Some(signup) => Some(readers::confirm(ledger, &signup, client.clone())?),
                        None => None,
                    },
                ),
                Write::Choose {
                    email,
                    projects,
                    evidence,
                } => {
                    readers::choose(ledger, email, projects, PREFERENCES, evidence.clone())?;
                    Written::Chose
                }
            });
        }
        ledger.commit()?;
        Ok(out)
    })();
    match applied {
        Ok(done) => done.into_iter().map(Some).collect(),
        Err(e) => {
            tracing::error!("cannot record readers' requests: {e:#}");
            ledger.rollback();
            batch.iter().map(|_| None).collect()
        }
    }
}

/// The source recorded for an unsubscribe through the link.
const ONE_CLICK: &str = "one-click";
/// The source recorded for a choice made in the preference centre.
const PREFERENCES: &str = "preferences";

/// Stores a sign-up; returns it (with its id) when its confirmation email should go now.
fn sign_up(ledger: &mut Ledger, signup: &Signup, per_address: Duration) -> Result<Option<Signup>> {
    if !readers::may_be_asked(ledger, &signup.email)? {
        // The same work as an accepted sign-up (a row written and synced), so that the time
        // of the answer does not tell a complained or forgotten address from another.
        ledger.count_refused_signup()?;
        return Ok(None);
    }
    let recent = ledger.last_confirmation_email(&signup.email)?.is_some_and(|at| {
        chrono::DateTime::parse_from_rfc3339(&at).is_ok_and(|at| {
            chrono::Utc::now()
                .signed_duration_since(at)
                .to_std()
                .unwrap_or_default()
                < per_address
        })
    });
    let id = ledger.insert_signup(signup, !recent)?;
    Ok((!recent).then(|| Signup { id, ..signup.clone() }))
}
