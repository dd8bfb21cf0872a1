//! One send of one issue, from the issue file to the last reply: the offline checks, the plan
//! against the list and the ledger, the confirmation, then the run over our connections, or
//! a dry run, or a test send. Used by `send`, by cron and by tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

pub use super::delivery::Completion;
use super::delivery::Session;
use super::pool;
use super::queue::{self, Composer, Plan, Selection};
use super::report::{self, Say};
use super::reputation;
use crate::bounces::verp::Verp;
use crate::check;
use crate::choice::Choice;
use crate::clicks::{Clicks, LinkTable};
use crate::compile::Rendered;
use crate::config::Config;
use crate::deliver::throttle::Rate;
use crate::diagnostic::Severity;
use crate::dkim::Signer;
use crate::human::thousands;
use crate::issue::Issue;
use crate::ledger::Ledger;
use crate::personalize::Personalizer;
use crate::recipients::{self, Recipient, SkipReason};
use crate::unsubscribe::{SECRET_VAR, Secret};

#[derive(Debug, Clone)]
pub enum Mode {
    /// The real send, recorded in the ledger.
    Real,
    /// Everything but the server: the plan and sample .eml files (every message with `all`).
    DryRun { all: bool },
    /// To the staff (these addresses, or `test_recipients`), `[TEST] ` before the subject.
    Test { to: Vec<String> },
}

/// What one send is asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    pub issue: PathBuf,
    pub mode: Mode,
    /// Another list than the configuration's `recipients`.
    pub recipients: Option<PathBuf>,
    /// Send although the offline checks found errors.
    pub force: bool,
    pub retry_failed: bool,
    pub limit: Option<u64>,
    /// `--where COLUMN=VALUE`, narrowing the issue's segment.
    pub where_: Vec<String>,
    /// `--resume-despite-rates`: no circuit breaker for this run.
    pub resume_despite_rates: bool,
    /// `--now`: a real send of an issue whose `send_at` is still to come.
    pub now: bool,
    pub quiet: bool,
}

/// Asked before a real send with the issue, the number of recipients and the rate; an error
/// stops the send.
pub type Confirm<'a> = &'a dyn Fn(&Rendered, u64, Rate) -> Result<()>;

/// Sends one issue as `request` says: the offline checks, the plan, the confirmation, then
/// the run (or a dry run, or a test send).
pub fn send(
    config: &Config,
    request: &Request,
    mut ledger: Option<&mut Ledger>,
    confirm: Confirm<'_>,
    say: &mut dyn Say,
) -> Result<Completion> {
    let path = &request.issue;
    let quiet = request.quiet;
    let dry_run = matches!(request.mode, Mode::DryRun { .. });
    let test = matches!(request.mode, Mode::Test { .. });
    let issue = Issue::load(path)?;
    // A named send of a scheduled issue would beat its schedule: only on purpose.
    if let (Mode::Real, Some(at), false) = (&request.mode, issue.front.send_at, request.now)
        && at > chrono::Utc::now()
    {
        let wait = (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        bail!(
            "{}: scheduled for {} (in {}): cron's `newsletter send` sends it then; to send it now anyway, add --now",
            path.display(),
            at.to_rfc3339(),
            crate::human::duration(wait)
        );
    }
    // Its per-reader records are gone: a send would find every reader unsent and mail them
    // all again.
    if let (false, Some(ledger)) = (test, ledger.as_deref())
        && let Some(pruned) = ledger.pruned(&issue.slug)?
    {
        bail!(
            "{}: its per-reader records were pruned on {} (retention.deliveries), so who got it is no longer known: sending it again would mail every reader twice; a test send (--test) still works",
            path.display(),
            pruned.pruned_at
        );
    }
    let prepared = crate::prepare(&issue, config)?;
    let editions = prepared.editions(&issue, config)?;
    let rendered = editions.compile(&Choice::Everything)?;
    let header = check::csv_header(config, request.recipients.as_deref())?;
    let findings = check::offline(&issue, &rendered, config, header.as_deref());
    for f in findings.iter().filter(|f| !quiet || f.severity == Severity::Error) {
        say.note(&format!("{}: {}", f.severity.label(), f.warning));
    }
    let errors = check::errors(&findings);
    // A test send is how a writer sees the problem in a real inbox: it goes out regardless.
    if errors > 0 && !dry_run && !test && !request.force {
        bail!(
            "{}: not sent: the offline checks found {errors} error{} (above); fix {}, or send anyway with --force",
            path.display(),
            if errors == 1 { "" } else { "s" },
            if errors == 1 { "it" } else { "them" }
        );
    }
    let rate: Rate = config
        .throttle
        .rate
        .parse()
        .map_err(|e| anyhow::anyhow!("throttle.rate: {e}"))?;
    let secret = match (Secret::from_env()?, dry_run) {
        (Some(secret), _) => secret,
        (None, true) => {
            say.note(&format!(
                "warning: {SECRET_VAR} is not set: unsubscribe links in the dry run are signed with a placeholder key"
            ));
            Secret::placeholder()
        }
        (None, false) => bail!(
            "{SECRET_VAR} is not set: it signs the unsubscribe links and is ours to make, once: `openssl rand -base64 32`, put in the environment of send and serve alike"
        ),
    };
    // A secret changed by mistake would break every link already sent: the ledger keeps the
    // one that signed them (a rotation gives the old one as the previous secret).
    if let (Mode::Real, Some(ledger)) = (&request.mode, ledger.as_deref_mut()) {
        ledger.adopt_secret(&secret, Secret::previous_from_env()?.as_ref())?;
    }
    let verp = config
        .bounces
        .return_path
        .as_ref()
        .map(|template| (Verp::new(&secret), template.clone()));
    let clicks = clicks(
        config,
        &prepared.sections,
        &rendered,
        &secret,
        ledger.as_deref_mut(),
        dry_run,
    )?;
    let mut personalizer = Personalizer::new(&rendered, config, secret)?;
    if test {
        personalizer = personalizer.for_test_send();
    }
    if let Some(clicks) = clicks {
        personalizer = personalizer.with_clicks(Arc::new(clicks))?;
    }
    let dkim = Signer::from_config(config, crate::config::secret)?;
    let return_path = config.return_path.as_deref().unwrap_or(&config.from.address);
    let composer = Composer {
        personalizer: Arc::new(personalizer),
        // A test send shows the staff the whole issue.
        editions: (!test).then_some(&editions),
        made: Default::default(),
        dkim: dkim.as_ref(),
        return_path: return_path
            .parse()
            .with_context(|| format!("return_path `{return_path}` is not an address"))?,
        verp,
    };
    if let Mode::Test { to } = &request.mode {
        return test_send(
            config,
            to,
            header.as_deref().unwrap_or_default(),
            &composer,
            rate,
            quiet,
            say,
        );
    }

    let list = request.recipients.clone().unwrap_or_else(|| config.recipients.clone());
    // A dry run reads the ledger when there is one, to plan what a real run would do.
    let dry_ledger = match (&ledger, dry_run && config.ledger.is_file()) {
        (None, true) => Some(Ledger::open(&config.ledger)?),
        _ => None,
    };
    if let Some(ledger) = ledger.as_deref_mut() {
        ledger.relax_durability()?;
        let max = config.throttle.max_attempts;
        let given_up = ledger.give_up(&rendered.slug, max)?;
        if given_up > 0 && !quiet {
            say.note(&format!(
                "gave up on {given_up} recipient(s) still failing temporarily after {max} attempts (throttle.max_attempts)"
            ));
        }
    }
    let mut filter = issue.segment();
    filter.extend(queue::parse_where(&request.where_)?);
    // The warm-up's cap for today, read from the ledger a real run writes to.
    let warmup = reputation::today(
        config.throttle.warmup.as_ref(),
        ledger.as_deref().or(dry_ledger.as_ref()),
        chrono::Utc::now(),
    )?;
    let daily_left = pool::daily_left(config, ledger.as_deref().or(dry_ledger.as_ref()), chrono::Utc::now())?;
    let pool_left = pool::left_today(&daily_left);
    let limit = [request.limit, warmup.map(|w| w.left()), pool_left]
        .into_iter()
        .flatten()
        .min();
    let selection = Selection {
        issue: rendered.slug.clone(),
        retry_failed: request.retry_failed,
        filter,
        limit,
    };
    // A run that leaves part of the issue's audience for later does not complete it (the
    // warm-up's cap counts when it holds readers back: `plan.held_back`).
    let partial = request.limit.is_some() || !request.where_.is_empty();
    let mut plan = queue::plan(&list, ledger.as_deref().or(dry_ledger.as_ref()), selection)?;
    if let Some(first) = &plan.first {
        // A template field the list lacks fails here, before anything is sent.
        composer.job(first, false)?;
    }
    if !quiet {
        report::skipped(say, &list, &plan);
    }
    // A list none of whose rows could be read is a broken list, not an empty audience.
    let unreadable: u64 = plan
        .skipped
        .iter()
        .filter(|(reason, _)| {
            !matches!(
                reason,
                SkipReason::Duplicate | SkipReason::Unsubscribed | SkipReason::Bounced
            )
        })
        .map(|(_, n)| n)
        .sum();
    if plan.rows > 0 && unreadable == plan.rows {
        bail!(
            "{}: none of its {} rows could be read (see above): nothing to send; fix the list",
            list.display(),
            plan.rows
        );
    }
    if let Mode::DryRun { all } = request.mode {
        let written = write_samples(config, all, &rendered, &composer, &list, &plan)?;
        for warning in composer.made.take_warnings() {
            say.note(&warning);
        }
        if quiet {
            return Ok(Completion::Success);
        }
        report::dry_run(say, config, &rendered, &list, &plan, rate, &written);
        if config.smtp.pooled {
            say.report(&format!("Relays:          {}", pool::describe(config, &daily_left)));
        }
        if let Some(today) = warmup {
            say.report(&format!(
                "Warm-up:         {}: a run now sends at most {}",
                today.describe(),
                thousands(today.left())
            ));
        }
        return Ok(Completion::Success);
    }
    let ledger = ledger.expect("a real send has the ledger");
    if let Some(today) = warmup
        && today.left() == 0
        && plan.held_back > 0
    {
        if !quiet {
            say.report(&format!(
                "{}: not sent today: {}; the rest goes tomorrow (throttle.warmup)",
                rendered.slug,
                today.describe()
            ));
        }
        return Ok(Completion::Success);
    }
    if pool_left == Some(0) && plan.held_back > 0 {
        if !quiet {
            say.report(&format!(
                "{}: not sent today: every relay is at its daily limit (daily_limit in smtp); the rest goes tomorrow",
                rendered.slug
            ));
        }
        return Ok(Completion::Success);
    }
    if plan.to_send == 0 {
        if plan.rows == 0 || plan.already_sent + plan.already_failed + plan.suppressed == 0 {
            bail!(
                "{} has no recipient to send to ({} rows read)",
                list.display(),
                plan.rows
            );
        }
        let run = ledger.start_issue(
            &rendered.slug,
            &rendered.subject,
            &rendered.content_hash(),
            plan.selection.describe().as_deref(),
            Some(&list),
        )?;
        ledger.finish_run(run, 0, 0, 0.0, "complete", !partial)?;
        if !quiet {
            say.report(&format!(
                "Nothing left to send for {}: {}",
                rendered.slug,
                report::resume_counts(&plan)
            ));
        }
        return Ok(Completion::Success);
    }
    if let Some(started) = ledger.changed_since_sent(&rendered.slug, &rendered.content_hash())?
        && plan.already_sent > 0
    {
        say.note(&format!(
            "warning: {}: the issue has changed since its send started ({started}): {} reader(s) got the earlier text, the {} left get this one; an issue is known by its file name, so a different issue needs a new file",
            rendered.slug,
            thousands(plan.already_sent),
            thousands(plan.to_send)
        ));
    }
    confirm(&rendered, plan.to_send, rate)?;
    // The archive keeps the issue as its first real run sends it (`archive publish` replaces it).
    crate::archive::store(ledger, &issue, &editions, config, false)?;
    let known = std::mem::take(&mut plan.known);
    let subscribed = std::mem::take(&mut plan.subscribed);
    let recipients = queue::selected(&list, known, subscribed, Some(ledger.reopen()?), plan.selection.clone())?;
    let session = Session {
        config,
        composer: &composer,
        rate,
        quiet,
        total: plan.to_send,
        list: Some(&list),
        ledger: Some((ledger, &rendered)),
        say: &mut *say,
        selection: plan.selection.describe(),
        partial: partial || plan.held_back > 0,
        breaker: (!request.resume_despite_rates).then_some(config.throttle.breaker),
        not_sent: report::not_sent(&plan),
        daily_left,
        choices: plan.choices.iter().cloned().collect(),
    };
    let result = session.run(recipients)?;
    if let Some(today) = warmup
        && plan.held_back > 0
        && !quiet
    {
        let after =
            reputation::today(config.throttle.warmup.as_ref(), Some(ledger), chrono::Utc::now())?.unwrap_or(today);
        say.report(&format!(
            "{}: {}; {} left for the next days (throttle.warmup)",
            rendered.slug,
            after.describe(),
            thousands(plan.held_back)
        ));
    }
    if pool_left.is_some() && pool_left == limit && plan.held_back > 0 && !quiet {
        say.report(&format!(
            "{}: {} left for tomorrow: the relays' daily limits (daily_limit in smtp) allowed {} today",
            rendered.slug,
            thousands(plan.held_back),
            thousands(pool_left.unwrap_or_default())
        ));
    }
    if !quiet && plan.already_sent + plan.resend > 0 {
        say.report(&format!("Resumed: {}", report::resume_counts(&plan)));
    }
    Ok(result)
}

/// The issue's links pointing at `serve` (`analytics`), numbered as the ledger stored them at
/// the issue's first send (a test send's included, so that the staff's clicks work) and any
/// new ones after them. A dry run numbers them without storing them.
fn clicks(
    config: &Config,
    sections: &crate::sections::Sections,
    rendered: &Rendered,
    secret: &Secret,
    ledger: Option<&mut Ledger>,
    dry_run: bool,
) -> Result<Option<Clicks>> {
    let a = &config.analytics;
    if !a.clicks && !a.opens {
        return Ok(None);
    }
    let fresh = LinkTable::new(sections, rendered);
    let mut opened = None;
    let ledger = match ledger {
        _ if dry_run => None,
        Some(ledger) => Some(ledger),
        None => Some(opened.insert(Ledger::open(&config.ledger)?)),
    };
    let table = match ledger {
        Some(ledger) => {
            let table = LinkTable::merged(ledger.links_of(&rendered.slug)?, &fresh);
            ledger.store_links(&rendered.slug, &table.stored())?;
            table
        }
        None => fresh,
    };
    Ok(Clicks::new(config, &rendered.slug, table, secret))
}

/// `columns`: the header of the list the offline checks read (the same rule as preview's).
fn test_send(
    config: &Config,
    to: &[String],
    columns: &[String],
    composer: &Composer<'_>,
    rate: Rate,
    quiet: bool,
    say: &mut dyn Say,
) -> Result<Completion> {
    let to = if to.is_empty() { &config.test_recipients } else { to };
    if to.is_empty() {
        bail!("no test recipients: add test_recipients to newsletter.yaml or pass --to EMAIL,...");
    }
    // Staff's own addresses with neutral values (archive.fields, as the web archive shows the
    // issue) in every column of the list: never a reader's data in a test.
    let fields: std::collections::BTreeMap<String, String> = columns
        .iter()
        .filter(|c| *c != "email")
        .map(|c| (c.clone(), config.archive.fields.get(c).cloned().unwrap_or_default()))
        .chain(config.archive.fields.clone())
        .collect();
    if !quiet {
        let shown: Vec<String> = fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        say.note(&format!(
            "note: a test send fills the recipient fields with neutral values (archive.fields: {}), never a reader's",
            shown.join(", ")
        ));
    }
    let mut list = Vec::new();
    for address in to {
        let email = recipients::normalize_address(address).map_err(|why| anyhow::anyhow!("--to `{address}`: {why}"))?;
        list.push((
            Recipient {
                email,
                line: 0,
                fields: fields.clone(),
            },
            false,
        ));
    }
    let session = Session {
        config,
        composer,
        rate,
        quiet,
        total: list.len() as u64,
        list: None,
        ledger: None,
        say,
        selection: None,
        partial: false,
        breaker: None,
        not_sent: None,
        daily_left: vec![None; config.smtp.relays.len()],
        choices: Vec::new(),
    };
    session.run(list.into_iter())
}

/// Writes the first messages (all with `all`) as .eml files under out/ISSUE/dry-run/.
fn write_samples(
    config: &Config,
    all: bool,
    rendered: &Rendered,
    composer: &Composer<'_>,
    list: &Path,
    plan: &Plan,
) -> Result<report::Written> {
    let dir = config.out.join(&rendered.slug).join("dry-run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    // The messages carry working unsubscribe tokens and readers' addresses.
    crate::private::create_dir(&dir)?;
    let limit = if all { usize::MAX } else { config.dry_run_samples };
    let ledger = config
        .ledger
        .is_file()
        .then(|| Ledger::open(&config.ledger))
        .transpose()?;
    let mut count = 0u64;
    let known = plan.known.clone();
    for (recipient, resend) in
        queue::selected(list, known, plan.subscribed.clone(), ledger, plan.selection.clone())?.take(limit)
    {
        let job = composer.job(&recipient, resend)?;
        count += 1;
        let file = dir.join(format!("{count:06}-{}.eml", recipient.email.replace(['/', '\\'], "_")));
        crate::private::write(&file, &job.bytes)?;
    }
    Ok(report::Written { count, dir })
}
