//! What `serve` counts of clicks and reads, and how: the signed paths checked, the issues'
//! links read once, each request judged (`crate::clicks::machine`) and counted in memory
//! (`crate::clicks::tally`), the counts written every `analytics.flush` in one transaction.
//! Nothing of a request is kept but its count (the client's address only within the burst
//! window, in memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::http::{HeaderMap, Method, header};

use super::error::Failure;
use super::{App, Peer, client};
use crate::clicks::links::LinkTable;
use crate::clicks::machine::{self, Reason};
use crate::clicks::path::{Signer, Target};
use crate::clicks::tally::{Burst, Key, Tally, What};
use crate::ledger::CountChange;

/// What `serve` keeps for counting: the signer, the issues' links as stored, the counts.
pub struct Counter {
    /// The current secret's, then the previous one's during a rotation.
    signers: Vec<Signer>,
    links: Tables,
    /// The links of issues as their files are now, for test sends' and previews' links to
    /// issues not sent yet (or links added since).
    drafts: Tables,
    tally: Mutex<Tally>,
    burst: Burst,
}

impl Counter {
    pub fn new(config: &crate::config::Config, secrets: &crate::unsubscribe::Secrets) -> Counter {
        let a = &config.analytics;
        Counter {
            signers: std::iter::once(&secrets.current)
                .chain(&secrets.previous)
                .map(Signer::new)
                .collect(),
            links: Mutex::default(),
            drafts: Mutex::default(),
            tally: Mutex::default(),
            burst: Burst {
                links: a.burst_links.max(1),
                window: a.burst_window,
            },
        }
    }

    /// The target of a signed path, when one of our secrets signed it.
    pub fn check(&self, path: &str) -> Option<Target> {
        self.signers.iter().find_map(|s| s.check(path))
    }

    /// Counts one request.
    pub fn count(&self, key: Key, client: Option<&str>) {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        tally.record(key, client, self.burst, Instant::now());
    }

    fn take(&self) -> Vec<(Key, i64)> {
        let (changes, forgotten) = {
            let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
            tally.take(self.burst, Instant::now())
        };
        // The clients let go of are freed after the lock, not while requests wait for it.
        drop(forgotten);
        changes
    }
}

type Tables = Mutex<HashMap<String, Arc<LinkTable>>>;

/// `issue`'s table from `cache`, else made by `load` off the runtime's threads and kept
/// (unless empty: only an issue that was sent, or has a file, has links).
async fn cached(
    app: &Arc<App>,
    cache: impl Fn(&Counter) -> &Tables,
    issue: &str,
    load: impl FnOnce(&App, &str) -> anyhow::Result<LinkTable> + Send + 'static,
) -> Result<Arc<LinkTable>, Failure> {
    let known = cache(&app.counter)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(issue)
        .cloned();
    if let Some(table) = known {
        return Ok(table);
    }
    let (reader, name) = (Arc::clone(app), issue.to_owned());
    let table = tokio::task::spawn_blocking(move || load(&reader, &name))
        .await
        .map_err(|e| anyhow::anyhow!("the link lookup stopped: {e}"))
        .and_then(|r| r)
        .map_err(|cause| Failure::Internal {
            shown: "The link cannot be followed right now.",
            cause,
        })?;
    let table = Arc::new(table);
    if !table.links.is_empty() {
        cache(&app.counter)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(issue.to_owned(), Arc::clone(&table));
    }
    Ok(table)
}

/// The issue's links, read once from the ledger through the archive's connection.
pub async fn links(app: &Arc<App>, issue: &str) -> Result<Arc<LinkTable>, Failure> {
    cached(
        app,
        |c| &c.links,
        issue,
        |app, name| Ok(LinkTable::from_stored(app.archive().links_of(name)?)),
    )
    .await
}

/// The links of `issue` as a send would number them now: those stored, then its file's (for a
/// test send's or a preview's link, which the MAC marks as one; never for a counted link).
pub async fn draft_links(app: &Arc<App>, issue: &str) -> Result<Arc<LinkTable>, Failure> {
    cached(
        app,
        |c| &c.drafts,
        issue,
        |app, name| {
            // The name is one our MAC vouches for, and only ever a key of the newsletters folder.
            let stored = app.archive().links_of(name)?;
            let Ok(file) = crate::issue::find(name, &app.config.newsletters) else {
                return Ok(LinkTable::from_stored(stored));
            };
            let issue = crate::issue::Issue::load(&file)?;
            let (sections, rendered) = crate::compose_with_sections(&issue, &app.config)?;
            Ok(LinkTable::merged(stored, &LinkTable::new(&sections, &rendered)))
        },
    )
    .await
}

/// The request's reason, and the client it is counted for.
pub fn judge(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    peer: Option<&Peer>,
    target: &Target,
    after_made: bool,
) -> (Reason, String) {
    let a = &app.config.analytics;
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    // A page of the archive was not made for anyone: only the method and the agent count.
    let (made, min_delay) = if after_made {
        (target.stamp.minute, a.min_delay.as_secs())
    } else {
        (0, 0)
    };
    let reason = machine::judge(method == Method::GET, agent, now, made, min_delay);
    let client = client::limit_key(app.proxies.client(peer.map(|p| p.0.ip()), headers));
    (reason, client)
}

/// A view of an issue's page in the archive, counted as a read by the same rules (but the
/// time since a message was made, which a page does not have).
pub fn count_page_view(app: &App, issue: &str, method: &Method, headers: &HeaderMap, peer: Option<&Peer>) {
    let target = Target {
        issue: issue.to_owned(),
        n: 0,
        stamp: crate::clicks::Stamp { minute: 0, test: false },
    };
    let (reason, client) = judge(app, method, headers, peer, &target, false);
    app.counter.count(
        Key {
            issue: issue.to_owned(),
            what: What::Page,
            day: chrono::Utc::now().date_naive(),
            reason,
        },
        Some(&client),
    );
}

/// Writes the counts gathered since the last time, in one transaction.
pub async fn flush(app: &Arc<App>) {
    let changes = app.counter.take();
    if changes.is_empty() {
        return;
    }
    let writer = Arc::clone(app);
    let written = tokio::task::spawn_blocking(move || {
        let rows: Vec<CountChange<'_>> = changes
            .iter()
            .map(|(k, delta)| {
                let (kind, n) = k.what.stored();
                CountChange {
                    issue: &k.issue,
                    kind,
                    n,
                    day: k.day.to_string(),
                    reason: k.reason.as_str(),
                    delta: *delta,
                }
            })
            .collect();
        writer.ledger().add_counts(&rows)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("cannot write the counts of clicks and reads: {e:#}"),
        Err(e) => tracing::error!("cannot write the counts of clicks and reads: {e}"),
    }
}

/// Every `analytics.flush`, the counts gathered are written.
pub async fn flush_periodically(app: Arc<App>) {
    let mut every = tokio::time::interval(app.config.analytics.flush.max(std::time::Duration::from_millis(10)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        flush(&app).await;
    }
}
