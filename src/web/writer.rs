//! The one writer of `serve`: readers' requests (unsubscribe, resubscribe) queue here, and a
//! thread of its own applies all that are waiting in one transaction and one sync to disk
//! (group commit), then answers each. Every answer still waits for its change to be on disk;
//! many requests share the cost of getting there.

use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::ledger::Ledger;
use crate::readers::{self, Resubscribed};

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
}

/// What it did, once on disk.
pub enum Written {
    Unsubscribed,
    Resubscribed(Resubscribed),
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
