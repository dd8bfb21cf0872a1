//! From the recipient list to personalized messages: the plan (counts, skipped rows) and the
//! producer that feeds the delivery loop without holding the list in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::Result;
use lettre::Address;
use lettre::address::Envelope;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::bounces::verp::{self, Verp};
use crate::choice::{self, Choice};
use crate::compile::Editions;
use crate::deliver::run::Job;
use crate::dkim::Signer;
use crate::ledger::{Ledger, Status, Subscriber};
use crate::personalize::Personalizer;
use crate::recipients::{KnownList, Recipient, Recipients, SkipReason, Skipped};

/// Rows of a list that are kept for the report; the rest are only counted.
const SKIPPED_KEPT: usize = 1000;

/// What a run does with one valid recipient, given the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `resend`: in flight when an earlier run stopped, so possibly received already.
    Send {
        resend: bool,
    },
    AlreadySent,
    /// A permanent failure in an earlier run.
    AlreadyFailed,
    Suppressed,
    /// Erased at the person's request (`subscribers forget`) but still in the list.
    Forgotten,
    /// Not in the segment (`segment:` or `--where`).
    Outside,
}

/// Which recipients of the list a run takes, given the ledger.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub issue: String,
    /// `send --retry-failed`: recipients who failed permanently get one more attempt.
    pub retry_failed: bool,
    /// Only recipients whose columns have these values: every column must match one of its
    /// values (case-insensitive).
    pub filter: Vec<(String, Vec<String>)>,
    /// `send --limit N`: the first N recipients still to send, then stop.
    pub limit: Option<u64>,
}

impl Selection {
    fn admits(&self, r: &Recipient) -> bool {
        self.filter.iter().all(|(column, values)| {
            let value = if column == "email" {
                Some(r.email.as_str())
            } else {
                r.fields.get(column).map(String::as_str)
            };
            value.is_some_and(|v| values.iter().any(|w| w.trim().eq_ignore_ascii_case(v.trim())))
        })
    }

    /// For the ledger's record of the run, and for people: `country=KE; limit 100`.
    pub fn describe(&self) -> Option<String> {
        let mut parts: Vec<String> = self
            .filter
            .iter()
            .map(|(column, values)| format!("{column}={}", values.join("|")))
            .collect();
        if let Some(n) = self.limit {
            parts.push(format!("limit {n}"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Every filtered column exists in the list.
    fn check_columns(&self, list: &Path, headers: &[String]) -> Result<()> {
        for (column, _) in &self.filter {
            if column != "email" && !headers.contains(column) {
                anyhow::bail!(
                    "{}:1: the segment names column `{column}`, which the list does not have (columns: {}){}",
                    list.display(),
                    headers.join(", "),
                    crate::suggest::did_you_mean(column, headers.iter().map(String::as_str))
                );
            }
        }
        Ok(())
    }
}

/// Parses `--where COLUMN=VALUE` arguments (several for one column: any of the values).
pub fn parse_where(args: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    let mut filter: Vec<(String, Vec<String>)> = Vec::new();
    for arg in args {
        let Some((column, value)) = arg.split_once('=') else {
            anyhow::bail!("--where `{arg}`: write COLUMN=VALUE, e.g. --where country=KE");
        };
        let column = column.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        match filter.iter_mut().find(|(c, _)| *c == column) {
            Some((_, values)) => values.push(value.to_owned()),
            None => filter.push((column, vec![value.to_owned()])),
        }
    }
    Ok(filter)
}

pub fn decide(ledger: Option<&Ledger>, selection: &Selection, recipient: &Recipient) -> Result<Decision> {
    if !selection.admits(recipient) {
        return Ok(Decision::Outside);
    }
    let Some(ledger) = ledger else {
        return Ok(Decision::Send { resend: false });
    };
    if ledger.is_listed(&recipient.email)? {
        return Ok(Decision::Suppressed);
    }
    if ledger.is_forgotten(&recipient.email)? {
        return Ok(Decision::Forgotten);
    }
    Ok(match ledger.status(&selection.issue, &recipient.email)? {
        Some(Status::Sent) => Decision::AlreadySent,
        Some(Status::Failed) if selection.retry_failed => Decision::Send { resend: false },
        Some(Status::Failed) => Decision::AlreadyFailed,
        Some(Status::Sending) => Decision::Send { resend: true },
        Some(Status::Deferred) | None => Decision::Send { resend: false },
    })
}

/// The recipients of a list, then the confirmed subscribers the list lacks (`subscribed`),
/// that a run sends to, in order, with their resend flag; each with the projects they chose
/// themselves, if they did. Owns its ledger handle, so that it can run on the producer's
/// thread.
pub fn selected(
    list: &Path,
    known: KnownList,
    subscribed: Vec<Recipient>,
    ledger: Option<Ledger>,
    selection: Selection,
) -> Result<impl Iterator<Item = (Recipient, bool)> + Send> {
    let limit = selection
        .limit
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    Ok(Recipients::open_known(list, known)?
        .filter_map(|row| row.ok()?.ok())
        .chain(subscribed)
        .filter_map(
            move |mut recipient| match decide(ledger.as_ref(), &selection, &recipient) {
                Ok(Decision::Send { resend }) => {
                    if let Some(ledger) = &ledger {
                        match ledger.choice_of(&recipient.email) {
                            Ok(Some(projects)) => {
                                recipient.fields.insert(choice::COLUMN.to_owned(), projects);
                            }
                            Ok(None) => {}
                            Err(e) => tracing::error!("{e:#}"),
                        }
                    }
                    Some((recipient, resend))
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::error!("{e:#}");
                    None
                }
            },
        )
        .take(limit))
}

/// The most distinct `projects` values a plan keeps for compiling ahead (five projects make 32
/// choices; written orders and spellings add some): beyond, editions compile on first use.
const CHOICES_KEPT: usize = 1024;

/// What a send would do with a recipient list.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub rows: u64,
    pub to_send: u64,
    /// Of `to_send`: in flight when a run stopped, sent again.
    pub resend: u64,
    pub already_sent: u64,
    pub already_failed: u64,
    /// Suppressed or forgotten: never mailed.
    pub suppressed: u64,
    /// Of `suppressed`: the lines of the rows whose address was forgotten (the first ones),
    /// which the list should lose.
    pub forgotten_rows: Vec<u64>,
    /// Outside the segment (`segment:`, `--where`).
    pub outside: u64,
    /// Still to send, but beyond `--limit`: for a later run.
    pub held_back: u64,
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The first skipped rows with their line and reason.
    pub skipped_rows: Vec<Skipped>,
    /// The first valid recipient, to check personalization before anything is sent.
    #[serde(skip)]
    pub first: Option<Recipient>,
    /// For the send's own pass over the list.
    #[serde(skip)]
    pub known: KnownList,
    /// Confirmed subscribers (in the ledger) whom the list does not have; the run takes them
    /// after the list's rows.
    #[serde(skip)]
    pub subscribed: Vec<Recipient>,
    /// How many of the recipients counted above are such subscribers.
    pub subscribers: u64,
    /// The distinct values of the `projects` column among the readers to send (at most
    /// `CHOICES_KEPT`): the editions to compile ahead.
    #[serde(skip)]
    pub choices: HashSet<String>,
    #[serde(skip)]
    pub selection: Selection,
}

impl Plan {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn count(&mut self, row: &Result<Recipient, Skipped>, decision: Option<Decision>) {
        self.rows += 1;
        match row {
            Ok(r) => {
                if self.first.is_none() {
                    self.first = Some(r.clone());
                }
                match decision.unwrap_or(Decision::Send { resend: false }) {
                    Decision::Send { resend } => {
                        self.to_send += 1;
                        self.resend += u64::from(resend);
                        if let Some(value) = r.fields.get(choice::COLUMN)
                            && self.choices.len() < CHOICES_KEPT
                        {
                            self.choices.insert(value.clone());
                        }
                    }
                    Decision::AlreadySent => self.already_sent += 1,
                    Decision::AlreadyFailed => self.already_failed += 1,
                    Decision::Suppressed => self.suppressed += 1,
                    Decision::Forgotten => {
                        self.suppressed += 1;
                        if self.forgotten_rows.len() < SKIPPED_KEPT {
                            self.forgotten_rows.push(r.line);
                        }
                    }
                    Decision::Outside => self.outside += 1,
                }
            }
            Err(skipped) => {
                *self.skipped.entry(skipped.reason).or_default() += 1;
                if self.skipped_rows.len() < SKIPPED_KEPT {
                    self.skipped_rows.push(skipped.clone());
                }
            }
        }
    }
}

/// Reads the whole list once, counting what a run would send and skip.
pub fn plan(path: &Path, ledger: Option<&Ledger>, selection: Selection) -> Result<Plan> {
    let mut plan = Plan {
        selection,
        ..Plan::default()
    };
    let mut rows = Recipients::open(path)?;
    plan.selection.check_columns(path, rows.headers())?;
    for row in rows.by_ref() {
        let row = row?;
        let decision = match &row {
            Ok(r) => Some(decide(ledger, &plan.selection, r)?),
            Err(_) => None,
        };
        plan.count(&row, decision);
    }
    if let Some(ledger) = ledger {
        // The list's readers who chose in the preference centre: their choices are the ledger's.
        let room = CHOICES_KEPT.saturating_sub(plan.choices.len());
        plan.choices.extend(ledger.distinct_choices(room)?);
        for subscriber in ledger.subscribers(false)? {
            if rows.has_seen(&subscriber.email) {
                continue;
            }
            let recipient = subscriber_row(rows.headers(), subscriber);
            let decision = decide(Some(ledger), &plan.selection, &recipient)?;
            plan.count(&Ok(recipient.clone()), Some(decision));
            plan.rows -= 1;
            plan.subscribers += 1;
            plan.subscribed.push(recipient);
        }
    }
    plan.known = rows.into_known();
    if let Some(limit) = plan.selection.limit
        && plan.to_send > limit
    {
        plan.held_back = plan.to_send - limit;
        // Those the limit keeps are the first ones, which are the ones marked as resends.
        plan.to_send = limit;
        plan.resend = plan.resend.min(limit);
    }
    Ok(plan)
}

/// A subscriber as a row of the list: every column of the list, empty unless the sign-up
/// gave it (`name`, and `first_name` and `last_name` from it).
fn subscriber_row(headers: &[String], subscriber: Subscriber) -> Recipient {
    let mut fields: BTreeMap<String, String> = headers
        .iter()
        .filter(|h| *h != "email")
        .map(|h| (h.clone(), String::new()))
        .collect();
    if let Some(name) = subscriber.name.filter(|n| !n.trim().is_empty()) {
        let (first, last) = name.trim().split_once(' ').unwrap_or((name.trim(), ""));
        fields.insert("first_name".into(), first.to_owned());
        fields.insert("last_name".into(), last.trim().to_owned());
        fields.insert("name".into(), name.trim().to_owned());
    }
    fields.insert(choice::COLUMN.to_owned(), subscriber.projects);
    Recipient {
        line: 0,
        email: subscriber.email,
        fields,
    }
}

/// Builds the message for one recipient: personalized, DKIM-signed when configured.
pub struct Composer<'a> {
    /// The whole issue's; a reader who chose some projects gets the edition of that choice.
    pub personalizer: Arc<Personalizer>,
    /// The issue's editions by choice of projects; none: everyone gets the whole issue.
    pub editions: Option<&'a Editions<'a>>,
    pub made: Made,
    pub dkim: Option<&'a Signer>,
    /// MAIL FROM: where bounces go.
    pub return_path: Address,
    /// VERP (`bounces.return_path`): a MAIL FROM per recipient that names the issue and the
    /// recipient; test sends keep `return_path`.
    pub verp: Option<(Verp, String)>,
}

/// An edition's first compile: made once by whoever needs it first (a worker, or the
/// compiling ahead), waited for by the others.
type FirstCompile = Arc<OnceLock<Result<Arc<Personalizer>, Arc<anyhow::Error>>>>;

/// The personalizer of each choice of projects met in a send, compiled ahead of its readers
/// when the plan names it, else the first time a reader with that choice comes: per-issue work
/// once per choice, never per reader, and never under a lock the other workers wait on.
#[derive(Default)]
pub struct Made {
    /// The personalizer of each `projects` value met, by the value as written: a reader's
    /// lookup parses nothing and allocates nothing ("" is the whole issue).
    by_value: Mutex<HashMap<String, Arc<Personalizer>>>,
    first: Mutex<HashMap<Choice, FirstCompile>>,
    /// Project ids in the list that the layout does not know, each warned of once.
    unknown: Mutex<HashSet<String>>,
    /// Those warnings, until the send says them.
    warnings: Mutex<Vec<String>>,
}

impl Made {
    /// The warnings made so far, to be said.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Composer<'_> {
    /// The personalizer of the edition `recipient` chose (the `projects` field).
    fn personalizer_for(&self, recipient: &Recipient) -> Result<Arc<Personalizer>> {
        let value = match (self.editions, recipient.fields.get(choice::COLUMN)) {
            (Some(_), Some(value)) => value.as_str(),
            _ => "",
        };
        let known = self
            .made
            .by_value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(value)
            .cloned();
        let first = known.is_none();
        let current = match known {
            Some(p) => p,
            None => self.edition_of(value, recipient.line)?,
        };
        // Once a minute at most, per edition: the links' stamp and the Date follow the clock.
        let current = match current.renewed() {
            Some(renewed) => Arc::new(renewed?),
            None if !first => return Ok(current),
            None => current,
        };
        self.made
            .by_value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(value.to_owned(), Arc::clone(&current));
        Ok(current)
    }

    /// The personalizer of a `projects` value met for the first time (on `line`): the whole
    /// issue's, or its edition's, its unknown project ids warned of once.
    fn edition_of(&self, value: &str, line: u64) -> Result<Arc<Personalizer>> {
        let Some(editions) = self.editions.filter(|_| !value.is_empty()) else {
            return Ok(Arc::clone(&self.personalizer));
        };
        let (choice, unknown) = Choice::parse(value, editions.registry());
        if !unknown.is_empty() {
            let mut said = self.made.unknown.lock().unwrap_or_else(PoisonError::into_inner);
            for id in unknown {
                if said.insert(id.clone()) {
                    self.made.warnings.lock().unwrap_or_else(PoisonError::into_inner).push(format!(
                        "warning: line {line}: project `{id}` in the `{}` column is not in the layout's projects.yaml (ids: {}); ignored",
                        choice::COLUMN,
                        editions
                            .registry()
                            .projects
                            .iter()
                            .map(|p| p.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        if choice == Choice::Everything {
            return Ok(Arc::clone(&self.personalizer));
        }
        self.first_compile(editions, &choice)
    }

    /// The edition of `choice` as first compiled, compiling it unless another thread is (then
    /// waiting for it).
    fn first_compile(&self, editions: &Editions<'_>, choice: &Choice) -> Result<Arc<Personalizer>> {
        let cell = Arc::clone(
            self.made
                .first
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(choice.clone())
                .or_default(),
        );
        cell.get_or_init(|| {
            let compiled = editions
                .compile(choice)
                .and_then(|r| Ok(self.personalizer.edition(&r)?));
            compiled.map(Arc::new).map_err(Arc::new)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
    }

    /// Compiles the editions of the `projects` values the plan met, on `threads` threads beside
    /// the workers, so that their first readers find them made. A failure is left for the
    /// reader's own message to report.
    pub fn compile_ahead(&self, values: &[String], threads: usize) {
        let Some(editions) = self.editions else {
            return;
        };
        let mut choices: Vec<Choice> = values
            .iter()
            .map(|v| Choice::parse(v, editions.registry()).0)
            .filter(|c| *c != Choice::Everything)
            .collect();
        choices.sort();
        choices.dedup();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, choices.len().max(1)) {
                scope.spawn(|| {
                    while let Some(choice) = choices.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let _ = self.first_compile(editions, choice);
                    }
                });
            }
        });
    }

    /// The issue's slug.
    pub fn issue(&self) -> &str {
        &self.personalizer.rendered().slug
    }

    pub fn job(&self, recipient: &Recipient, resent_after_crash: bool) -> Result<Job> {
        let mime = self.personalizer_for(recipient)?.mime(recipient, self.dkim.is_some())?;
        let return_path = match &self.verp {
            Some((verp, template)) => match verp.token(self.issue(), &mime.message_id) {
                Some(token) => {
                    let address = verp::address(template, &token);
                    address
                        .parse()
                        .map_err(|e| anyhow::anyhow!("bounces.return_path gives `{address}`, not an address: {e}"))?
                }
                None => self.return_path.clone(),
            },
            None => self.return_path.clone(),
        };
        Ok(Job {
            email: recipient.email.clone(),
            line: recipient.line,
            envelope: Envelope::new(Some(return_path), vec![mime.to])?,
            bytes: match (self.dkim, &mime.body_hash) {
                (Some(signer), Some(body_hash)) => signer.sign_hashed(&mime.bytes, body_hash),
                (Some(signer), None) => signer.sign(&mime.bytes),
                (None, _) => mime.bytes,
            },
            message_id: mime.message_id,
            attempts: 0,
            throttled: 0,
            resent_after_crash,
        })
    }

    /// Personalizes and signs `recipients` into `jobs` on `workers` threads, handing the
    /// messages on in the order given (so the ledger's records come in the same order as
    /// with one thread; a send gives them grouped by edition, see `choice::grouped`). At most a few messages per worker are held at any time, however long
    /// the list. Returns the recipients that could not be personalized.
    pub fn produce(
        &self,
        recipients: impl Iterator<Item = (Recipient, bool)> + Send,
        jobs: mpsc::Sender<Job>,
        workers: usize,
    ) -> Vec<(Recipient, String)> {
        let workers = workers.max(1);
        if workers == 1 {
            let mut failed = Vec::new();
            for (recipient, resend) in recipients {
                match self.job(&recipient, resend) {
                    Ok(job) => {
                        if jobs.blocking_send(job).is_err() {
                            break; // the run stopped
                        }
                    }
                    Err(e) => failed.push((recipient, format!("{e:#}"))),
                }
            }
            return failed;
        }
        type Made = (u64, Recipient, Result<Job>);
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<(u64, Recipient, bool)>(workers * 2);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Made>(workers * 2);
        // Owned by the workers alone: when the last one ends, the reader's next send fails.
        let work_rx = Arc::new(Mutex::new(work_rx));
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for (seq, (recipient, resend)) in (0u64..).zip(recipients) {
                    if work_tx.send((seq, recipient, resend)).is_err() {
                        break; // the run stopped
                    }
                }
            });
            for _ in 0..workers {
                let done_tx = done_tx.clone();
                let work_rx = Arc::clone(&work_rx);
                scope.spawn(move || {
                    loop {
                        let next = work_rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok((seq, recipient, resend)) = next else { break };
                        let job = self.job(&recipient, resend);
                        if done_tx.send((seq, recipient, job)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            drop(work_rx);
            // Back in the list's order: a message waits here only for those before it.
            let mut waiting: BTreeMap<u64, (Recipient, Result<Job>)> = BTreeMap::new();
            let mut next = 0u64;
            let mut failed = Vec::new();
            'done: for (seq, recipient, job) in done_rx.iter() {
                waiting.insert(seq, (recipient, job));
                while let Some((recipient, job)) = waiting.remove(&next) {
                    next += 1;
                    match job {
                        Ok(job) => {
                            if jobs.blocking_send(job).is_err() {
                                break 'done; // the run stopped
                            }
                        }
                        Err(e) => failed.push((recipient, format!("{e:#}"))),
                    }
                }
            }
            // Dropping the receivers ends the reader and the workers.
            drop(done_rx);
            failed
        })
    }
}
