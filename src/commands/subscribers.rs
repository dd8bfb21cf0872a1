//! `newsletter subscribers show|export|forget EMAIL`: a reader's rights. What is held about
//! them and why they are (not) mailed; all of it as JSON; and erasure.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use newsletter::config::Config;
use newsletter::ledger::Ledger;
use newsletter::readers::dossier::{self, Dossier};
use newsletter::readers::{self, Incoming, Standing};
use newsletter::recipients::Recipients;

use crate::Exit;
use crate::cli::{Format, ImportFrom, ListFormat, SubscribersCommand};

pub fn run(config_path: Option<&Path>, quiet: bool, command: SubscribersCommand) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    let mut ledger = Ledger::open(&config.ledger)?;
    match command {
        SubscribersCommand::Show { email, format } => {
            let dossier = gather(&config, &ledger, &email)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&dossier)?),
                Format::Text => print_dossier(&dossier),
            }
        }
        SubscribersCommand::Export { email, .. } => {
            println!("{}", serde_json::to_string_pretty(&gather(&config, &ledger, &email)?)?);
        }
        SubscribersCommand::List { format } => list(&ledger, format)?,
        SubscribersCommand::Import { file, from, consent } => match from {
            ImportFrom::Csv => import(&mut ledger, &file, &consent, quiet)?,
            ImportFrom::Mailchimp => import_mailchimp(&config, &mut ledger, &file, &consent, quiet)?,
        },
        SubscribersCommand::Forget { email, yes } => {
            let email = address(&email)?;
            confirm(&email, yes)?;
            let erased = readers::forget(&mut ledger, &email)?;
            if !quiet {
                println!(
                    "Forgot {email}: erased {} deliver{}, {} event{} of their history, {} bounce and complaint record{} and {} mention{} in other records. \
                 Only a keyed hash is kept (its key is {}), so the address is never mailed again, even from a list that still holds it.",
                    erased.deliveries,
                    if erased.deliveries == 1 { "y" } else { "ies" },
                    erased.events,
                    plural(erased.events),
                    erased.bounce_records,
                    plural(erased.bounce_records),
                    erased.mentions,
                    plural(erased.mentions),
                    config.ledger.with_extension("key").display(),
                );
            }
            for row in dossier::rows_naming(&lists(&config), &email)? {
                println!("Still held: {}:{}: delete the row", row.file, row.line);
            }
            for file in files_naming(&config.out, &email) {
                println!("Still held: {}: a preview or dry run; delete it", file.display());
            }
            if config
                .test_recipients
                .iter()
                .any(|t| newsletter::address::key(t) == email)
            {
                println!("Still held: test_recipients in the configuration: remove it");
            }
            if let Some(source) = &config.bounces.source {
                println!("The bounce mailbox ({source}) may hold reports that name it: delete them there.");
            }
        }
    }
    Ok(Exit::Success)
}

fn list(ledger: &Ledger, format: ListFormat) -> Result<()> {
    let subscribers = ledger.subscribers(true)?;
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&subscribers)?),
        ListFormat::Csv => {
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record(["email", "name", "projects", "joined_at", "how"])?;
            for s in &subscribers {
                out.write_record([
                    s.email.as_str(),
                    s.name.as_deref().unwrap_or(""),
                    &s.projects,
                    &s.joined_at,
                    &s.how,
                ])?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

/// Records a list's readers as subscribers; a bad row is reported and skipped.
fn import(ledger: &mut Ledger, file: &Path, consent: &str, quiet: bool) -> Result<()> {
    if consent.trim().is_empty() {
        bail!(
            "--consent is empty: give the wording the readers of {} agreed to",
            file.display()
        );
    }
    let mut skipped = 0u64;
    let mut failed = None;
    let rows = Recipients::open(file)?.map_while(|row| row.map_err(|e| failed = Some(e)).ok());
    let incoming = rows.filter_map(|row| match row {
        Ok(recipient) => Some(Incoming {
            evidence: serde_json::json!({
                "consent": consent,
                "wording": consent,
                "file": file.display().to_string(),
                "line": recipient.line,
            }),
            name: recipient.display_name(),
            projects: recipient.fields.get(newsletter::choice::COLUMN).cloned(),
            email: recipient.email,
        }),
        Err(skip) => {
            eprintln!(
                "skipped: {}:{}: {}: {}",
                file.display(),
                skip.line,
                skip.reason.label(),
                skip.detail
            );
            skipped += 1;
            None
        }
    });
    let imports = readers::import_all(ledger, incoming)?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !quiet {
        println!(
            "Imported {} subscriber(s) from {}; {} already subscribed, {} not added (unsubscribed, suppressed or forgotten), {} row(s) skipped",
            imports.added,
            file.display(),
            imports.known,
            imports.refused,
            skipped
        );
    }
    Ok(())
}

/// Mailchimp's subscribed export: each member a subscriber, with what Mailchimp recorded of
/// their consent kept verbatim beside the wording, and the tags that name projects as their
/// choice.
fn import_mailchimp(config: &Config, ledger: &mut Ledger, file: &Path, consent: &str, quiet: bool) -> Result<()> {
    use newsletter::readers::mailchimp::{self, Export};
    if consent.trim().is_empty() {
        bail!(
            "--consent is empty: give the wording of the Mailchimp form the readers of {} signed up with",
            file.display()
        );
    }
    let (export, members, unreadable) = mailchimp::read(file)?;
    if export != Export::Subscribed {
        bail!(
            "{} is Mailchimp's {} export: those readers left; import it with `newsletter suppress import --from mailchimp {}`",
            file.display(),
            if export == Export::Cleaned {
                "cleaned"
            } else {
                "unsubscribed"
            },
            file.display()
        );
    }
    for u in &unreadable {
        eprintln!("skipped: {}:{}: {}", file.display(), u.line, u.why);
    }
    let registry = newsletter::layout::Layout::load(None, &config.layouts)?.registry;
    let incoming = members.into_iter().map(|member| {
        let projects = project_ids(&member.tags, &registry);
        let mut evidence = serde_json::Map::new();
        evidence.insert("consent".into(), consent.into());
        evidence.insert("wording".into(), consent.into());
        evidence.insert("from".into(), "mailchimp".into());
        evidence.insert("file".into(), file.display().to_string().into());
        evidence.insert("line".into(), member.line.into());
        evidence.insert("mailchimp".into(), member.evidence.into());
        Incoming {
            email: member.email,
            name: member.name,
            projects: (!projects.is_empty()).then(|| projects.join(";")),
            evidence: serde_json::Value::Object(evidence),
        }
    });
    let imports = readers::import_all(ledger, incoming)?;
    if !quiet {
        println!(
            "Imported {} subscriber(s) from Mailchimp's export {} ({} with projects from their tags); {} already subscribed, {} not added (unsubscribed, suppressed or forgotten), {} row(s) skipped",
            imports.added,
            file.display(),
            imports.with_projects,
            imports.known,
            imports.refused,
            unreadable.len()
        );
    }
    Ok(())
}

/// The project ids that Mailchimp tags name (a project's id, name or alias, any case); other
/// tags are not projects.
fn project_ids(tags: &[String], registry: &newsletter::layout::Registry) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for tag in tags {
        let found = registry
            .projects
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(tag.trim()))
            .or_else(|| registry.find(tag));
        if let Some(p) = found
            && !ids.contains(&p.id)
        {
            ids.push(p.id.clone());
        }
    }
    ids
}

/// The address as the ledger keys it, or why it is no address.
fn address(email: &str) -> Result<String> {
    newsletter::address::canonical(email).map_err(|why| anyhow::anyhow!("`{email}`: {why}"))
}

fn lists(config: &Config) -> Vec<&Path> {
    vec![config.recipients.as_path()]
}

fn gather(config: &Config, ledger: &Ledger, email: &str) -> Result<Dossier> {
    dossier::gather(ledger, &lists(config), &config.test_recipients, &address(email)?)
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Erasure cannot be undone: asked on a terminal, `--yes` elsewhere.
fn confirm(email: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("not on a terminal: pass --yes to erase everything held about {email}");
    }
    eprint!("Erase everything held about {email}? This cannot be undone. [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("nothing erased: the answer was not yes");
    }
    Ok(())
}

/// Files under `dir` that mention `email` (previews, dry-run messages).
fn files_naming(dir: &Path, email: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).to_lowercase().contains(email))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// An event's evidence for people: `key: value; key: value`, nested keys dotted
/// (`mailchimp.OPTIN_TIME`), strings as written; `--format json` keeps the structure.
fn evidence_text(evidence: &serde_json::Value) -> String {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::Null => {}
            serde_json::Value::String(s) if prefix.is_empty() => out.push(s.clone()),
            serde_json::Value::String(s) => out.push(format!("{prefix}: {s}")),
            other if prefix.is_empty() => out.push(other.to_string()),
            other => out.push(format!("{prefix}: {other}")),
        }
    }
    let mut parts = Vec::new();
    walk("", evidence, &mut parts);
    parts.join("; ")
}

fn print_dossier(d: &Dossier) {
    match &d.standing {
        Standing::Mailable => println!("{}: mailable", d.email),
        Standing::Suppressed { kind, event } => println!(
            "{}: not mailable: {} (event {}, {}, {}{})",
            d.email,
            kind.describe(),
            event.id,
            event.created_at,
            event.source,
            event.issue.as_deref().map(|i| format!(", {i}")).unwrap_or_default()
        ),
        Standing::Forgotten { at } => {
            println!(
                "{}: forgotten at the person's request on {at}: nothing else is held, and it is never mailed",
                d.email
            );
        }
    }
    for row in &d.recipient_rows {
        println!("in {}:{}", row.file, row.line);
    }
    if d.test_recipient {
        println!("in test_recipients of the configuration");
    }
    if let Some(projects) = &d.projects {
        println!(
            "projects: {}",
            if projects.is_empty() { "everything" } else { projects }
        );
    }
    for c in &d.consents {
        let text = |key: &str| c.evidence.get(key).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
        println!(
            "consent: {} ({}), form {}, posted {}, confirmed {}: \"{}\"",
            c.kind,
            c.source,
            text("form"),
            text("posted_at"),
            text("confirmed_at"),
            text("wording")
        );
    }
    for s in d.signups.iter().filter(|s| s.confirmed_at.is_none()) {
        let emailed = match (&s.message_id, &s.last_error, &s.retry_at) {
            (Some(_), ..) => format!("; emailed {}", s.emailed_at.as_deref().unwrap_or("")),
            (None, Some(error), Some(at)) => {
                format!("; email not sent after {} tries ({error}), next try {at}", s.attempts)
            }
            (None, Some(error), None) => format!("; email not sent after {} tries ({error}), given up", s.attempts),
            (None, None, _) => String::new(),
        };
        println!(
            "sign-up {} posted {} (form {}): not confirmed{emailed}",
            s.id, s.posted_at, s.form
        );
    }
    if !d.events.is_empty() {
        println!("history:");
    }
    for e in &d.events {
        println!(
            "  {:>5}  {}  {:<13} {:<11} {:<8} {}",
            e.id,
            e.created_at,
            e.kind,
            e.source,
            e.issue.as_deref().unwrap_or("-"),
            evidence_text(&e.evidence)
        );
    }
    if !d.pruned.is_empty() {
        let issues: Vec<&str> = d.pruned.iter().map(|p| p.issue.as_str()).collect();
        println!(
            "pruned: who received {} is no longer kept (retention.deliveries), for anyone",
            issues.join(", ")
        );
    }
    if !d.deliveries.is_empty() {
        println!("deliveries:");
    }
    for m in &d.deliveries {
        println!(
            "  {:<10} {:<8} {}  {}",
            m.issue,
            m.status,
            m.sent_at.as_deref().unwrap_or(&m.first_at),
            m.message_id
        );
    }
    if !d.bounce_records.is_empty() {
        println!("bounces and complaints:");
    }
    for b in &d.bounce_records {
        println!(
            "  {}  {:<10} {} {} ({}): {}",
            b.created_at,
            b.issue.as_deref().unwrap_or("-"),
            b.class,
            b.reason,
            b.status.as_deref().unwrap_or("no code"),
            b.action
        );
    }
    if !d.mentions.is_empty() {
        println!("named in other records ({}):", d.mentions.len());
    }
    for m in &d.mentions {
        println!("  {}.{}: {}", m.table, m.column, m.context.replace(['\r', '\n'], " "));
    }
}
