//! `newsletter send ISSUE`: dry run, test send, or the real send to the list.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use newsletter::compile::Rendered;
use newsletter::config::Config;
use newsletter::deliver::queue::{self, Composer, Plan};
use newsletter::deliver::run::{self, Settings};
use newsletter::deliver::smtp::{Connector, PASSWORD_VAR, SmtpConnection};
use newsletter::deliver::throttle::{Rate, Throttle};
use newsletter::issue::{self, Issue};
use newsletter::personalize::{self, DKIM_KEY_VAR, Personalizer};
use newsletter::recipients::{self, Recipient, Recipients};
use newsletter::report::{self, Progress, duration, thousands};
use newsletter::unsubscribe::{SECRET_VAR, Secret};

use crate::Outcome;
use crate::cli::SendArgs;

/// Messages personalized ahead of the senders: enough to keep them busy, few enough that a
/// long list never sits in memory.
const QUEUE_DEPTH: usize = 64;

pub fn run(config_path: Option<&Path>, quiet: bool, args: SendArgs) -> Result<Outcome> {
    let config = super::load_config(config_path)?;
    let path = issue::find(&args.issue, &config.newsletters)?;
    let issue = Issue::load(&path)?;
    let rendered = newsletter::compose(&issue, &config)?;
    if !quiet {
        for w in &rendered.warnings {
            eprintln!("warning: {w}");
        }
    }
    let rate: Rate = config
        .throttle
        .rate
        .parse()
        .map_err(|e| anyhow::anyhow!("throttle.rate: {e}"))?;
    let secret = match (Secret::from_env(), args.dry_run) {
        (Some(secret), _) => secret,
        (None, true) => {
            eprintln!(
                "warning: {SECRET_VAR} is not set: unsubscribe links in the dry run are signed with a placeholder key"
            );
            Secret::new("dry-run-only")
        }
        (None, false) => bail!("{SECRET_VAR} is not set: unsubscribe links must be signed with the website's secret"),
    };
    let mut personalizer = Personalizer::new(&rendered, &config, secret)?;
    if args.test {
        personalizer = personalizer.with_subject_prefix("[TEST] ");
    }
    let dkim = personalize::dkim_config(&config, std::env::var(DKIM_KEY_VAR).ok())?;
    let return_path = config.return_path.as_deref().unwrap_or(&config.from.address);
    let composer = Composer {
        personalizer: &personalizer,
        dkim: dkim.as_ref(),
        return_path: return_path
            .parse()
            .with_context(|| format!("return_path `{return_path}` is not an address"))?,
    };

    if args.test {
        return test_send(&config, &args, &composer, rate, quiet);
    }
    let list = args.recipients.clone().unwrap_or_else(|| config.recipients.clone());
    let plan = queue::plan(&list)?;
    if let Some(first) = &plan.first {
        // A template field the list lacks fails here, before anything is sent.
        composer.job(first)?;
    }
    if !quiet {
        report_skipped(&list, &plan);
    }
    if args.dry_run {
        return dry_run(&config, &args, &rendered, &composer, &list, &plan, rate);
    }
    if plan.to_send == 0 {
        bail!(
            "{} has no recipient to send to ({} rows read)",
            list.display(),
            plan.rows
        );
    }
    confirm(&rendered, plan.to_send, rate, args.yes)?;
    let recipients = Recipients::open(&list)?.filter_map(|row| row.ok().and_then(Result::ok));
    deliver(&config, &composer, recipients, plan.to_send, rate, quiet)
}

fn test_send(config: &Config, args: &SendArgs, composer: &Composer<'_>, rate: Rate, quiet: bool) -> Result<Outcome> {
    let to = if args.to.is_empty() {
        config.test_recipients.clone()
    } else {
        args.to.clone()
    };
    if to.is_empty() {
        bail!("no test recipients: add test_recipients to newsletter.yaml or pass --to EMAIL,...");
    }
    // The staff see the issue as the list's first reader would.
    let template = match recipients::first(&config.recipients) {
        Ok(Some(r)) => r,
        _ => Recipient::sample(),
    };
    let mut list = Vec::new();
    for address in &to {
        let email = recipients::normalize_address(address).map_err(|why| anyhow::anyhow!("--to `{address}`: {why}"))?;
        list.push(Recipient {
            email,
            line: 0,
            fields: template.fields.clone(),
        });
    }
    let count = list.len() as u64;
    deliver(config, composer, list.into_iter(), count, rate, quiet)
}

fn report_skipped(list: &Path, plan: &Plan) {
    const SHOWN: usize = 20;
    for s in plan.skipped_rows.iter().take(SHOWN) {
        eprintln!(
            "skipped: {}:{}: {}: {}",
            list.display(),
            s.line,
            s.reason.label(),
            s.detail
        );
    }
    let total = plan.skipped_total();
    if total > SHOWN as u64 {
        eprintln!("skipped: ... and {} more rows", thousands(total - SHOWN as u64));
    }
}

fn eta(count: u64, rate: Rate) -> String {
    match rate.per_second() {
        Some(r) => duration(Duration::from_secs_f64(count as f64 / r)),
        None => "as fast as the server accepts".into(),
    }
}

fn dry_run(
    config: &Config,
    args: &SendArgs,
    rendered: &Rendered,
    composer: &Composer<'_>,
    list: &Path,
    plan: &Plan,
    rate: Rate,
) -> Result<Outcome> {
    let dir = config.out.join(&rendered.slug).join("dry-run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let limit = if args.all {
        u64::MAX
    } else {
        config.dry_run_samples as u64
    };
    let mut written = 0u64;
    for row in Recipients::open(list)? {
        if written >= limit {
            break;
        }
        let Ok(recipient) = row? else { continue };
        let job = composer.job(&recipient)?;
        written += 1;
        let file = dir.join(format!(
            "{written:06}-{}.eml",
            recipient.email.replace(['/', '\\'], "_")
        ));
        std::fs::write(&file, &job.bytes).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let skipped: Vec<String> = plan
        .skipped
        .iter()
        .map(|(reason, n)| format!("{} {}", thousands(*n), reason.label()))
        .collect();
    let t = &config.throttle;
    println!("Dry run of '{}': nothing was sent.", rendered.subject);
    println!("Recipients read: {} from {}", thousands(plan.rows), list.display());
    println!("To send:         {}", thousands(plan.to_send));
    println!(
        "Skipped:         {}{}",
        thousands(plan.skipped_total()),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join(", "))
        }
    );
    println!(
        "Throttle:        {rate}, {} connections{}",
        t.concurrency,
        t.batch_size
            .map(|b| format!(
                ", pause {} after every {b}",
                newsletter::config::duration::format(&t.batch_pause)
            ))
            .unwrap_or_default()
    );
    println!("Estimated time:  {}", eta(plan.to_send, rate));
    println!(
        "Wrote {} message{} to {}",
        thousands(written),
        if written == 1 { "" } else { "s" },
        dir.display()
    );
    Ok(Outcome::Success)
}

fn confirm(rendered: &Rendered, count: u64, rate: Rate, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "not on a terminal: pass --yes to send '{}' to {} recipients",
            rendered.subject,
            thousands(count)
        );
    }
    eprint!(
        "Send '{}' to {} recipients at {rate} (about {})? [y/N] ",
        rendered.subject,
        thousands(count),
        eta(count, rate)
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("not sent: the answer was not yes");
    }
    Ok(())
}

fn deliver(
    config: &Config,
    composer: &Composer<'_>,
    recipients: impl Iterator<Item = Recipient> + Send,
    total: u64,
    rate: Rate,
    quiet: bool,
) -> Result<Outcome> {
    let connector = Arc::new(Connector::new(&config.smtp, std::env::var(PASSWORD_VAR).ok())?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Refused, TLS and login failures stop the run here, before any message.
    let first = runtime.block_on(connector.connect())?;
    let concurrency = config.throttle.concurrency.max(1);
    let mut transports = vec![SmtpConnection::new(Arc::clone(&connector), Some(first))];
    transports.extend((1..concurrency).map(|_| SmtpConnection::new(Arc::clone(&connector), None)));
    let t = &config.throttle;
    let settings = Settings {
        retries: t.retries,
        retry_delay: t.retry_delay,
        batch_size: t.batch_size.filter(|b| *b > 0),
        batch_pause: t.batch_pause,
        max_consecutive_failures: t.max_consecutive_failures.max(1),
    };
    let throttle = Arc::new(Throttle::new(rate, t.burst));
    let mut progress = Progress::new(total, quiet);
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_DEPTH);
    let (outcome, unpersonalized) = std::thread::scope(|scope| {
        let producer = scope.spawn(move || composer.produce(recipients, tx));
        let outcome = runtime.block_on(run::deliver(rx, transports, throttle, &settings, &mut progress));
        (outcome, producer.join().unwrap_or_default())
    });
    progress.finish();

    let failed = outcome.failed + unpersonalized.len() as u64;
    for f in &progress.failures {
        eprintln!("failed: line {} {}: {}", f.line, f.email, f.reply);
    }
    for (r, why) in &unpersonalized {
        eprintln!("failed: line {} {}: {why}", r.line, r.email);
    }
    if !quiet || failed > 0 {
        let secs = outcome.elapsed.as_secs_f64().max(0.001);
        println!(
            "Sent {} of {} in {} ({:.1}/s); {} failed.",
            thousands(outcome.sent),
            thousands(total),
            report::duration(outcome.elapsed),
            outcome.sent as f64 / secs,
            thousands(failed)
        );
    }
    if let Some(why) = outcome.stopped {
        bail!("{why}");
    }
    Ok(if failed > 0 {
        Outcome::Problems
    } else {
        Outcome::Success
    })
}
