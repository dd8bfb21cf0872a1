//! `newsletter suppress add|remove|list|import`: addresses that never get the newsletter.

use std::path::Path;

use anyhow::{Context, Result, bail};
use newsletter::ledger::Ledger;
use newsletter::readers::{self, Kind};
use newsletter::recipients::normalize_address;
use serde_json::json;

use crate::Exit;
use crate::cli::{Format, ImportAs, ImportFrom, SuppressCommand};

pub fn run(config_path: Option<&Path>, quiet: bool, command: SuppressCommand) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    let mut ledger = Ledger::open(&config.ledger)?;
    match command {
        SuppressCommand::Add { emails, reason } => {
            let (mut added, mut firmer) = (0u32, 0u32);
            for email in &emails {
                let email = normalize_address(email).map_err(|why| anyhow::anyhow!("`{email}`: {why}"))?;
                let change = readers::record(
                    &mut ledger,
                    &email,
                    Kind::Suppressed,
                    readers::OPERATOR,
                    None,
                    json!({ "note": reason }),
                )?;
                added += u32::from(change.newly_suppressed());
                firmer += u32::from(change.before.is_some() && change.before != change.after);
            }
            ledger.commit()?;
            if !quiet {
                println!(
                    "Suppressed {added} address{}; {firmer} already suppressed for a weaker reason now stand suppressed by the operator; {} already were",
                    plural(added),
                    emails.len() as u32 - added - firmer
                );
            }
        }
        SuppressCommand::Remove { emails, reason } => {
            let mut removed = 0;
            for email in &emails {
                let email = normalize_address(email).map_err(|why| anyhow::anyhow!("`{email}`: {why}"))?;
                if ledger.is_forgotten(&email)? {
                    eprintln!(
                        "{email}: forgotten at the person's request (`subscribers forget`): it stays off the list"
                    );
                    continue;
                }
                if !ledger.is_suppressed(&email)? {
                    continue;
                }
                let change = readers::remove(&mut ledger, &email, &reason)?;
                if let Some(before) = change.before {
                    removed += 1;
                    if !quiet {
                        println!("{email}: lifted {}", before.describe());
                    }
                }
            }
            ledger.commit()?;
            if !quiet {
                println!("Removed {removed} address{} from the suppression list", plural(removed));
            }
        }
        SuppressCommand::List { format } => {
            let list = ledger.suppressions()?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Format::Text => {
                    for s in list {
                        println!("{}\t{}\t{}\t{}", s.email, s.created_at, s.kind, s.reason);
                    }
                }
            }
        }
        SuppressCommand::Import {
            file,
            from: ImportFrom::Mailchimp,
            ..
        } => import_mailchimp(&mut ledger, &file, quiet)?,
        SuppressCommand::Import { file, reason, as_, .. } => {
            let kind = match as_ {
                ImportAs::Unsubscribes => Kind::Unsubscribed,
                ImportAs::Suppressions => Kind::Suppressed,
            };
            let (added, invalid) = import(&mut ledger, &file, &reason, kind)?;
            if !quiet {
                println!(
                    "Imported {} new address{} from {}; {} invalid row{} skipped",
                    added,
                    plural(added),
                    file.display(),
                    invalid,
                    if invalid == 1 { "" } else { "s" }
                );
            }
        }
    }
    Ok(Exit::Success)
}

/// Mailchimp's unsubscribed export as the readers' own unsubscribes, its cleaned export as
/// hard bounces, each with what Mailchimp recorded (when, the campaign, the reason).
fn import_mailchimp(ledger: &mut Ledger, file: &Path, quiet: bool) -> Result<()> {
    use newsletter::readers::mailchimp::{self, Export};
    let (export, members, unreadable) = mailchimp::read(file)?;
    let kind = match export {
        Export::Unsubscribed => Kind::Unsubscribed,
        Export::Cleaned => Kind::HardBounce,
        Export::Subscribed => bail!(
            "{} is Mailchimp's subscribed export: import it with `newsletter subscribers import --from mailchimp {} --consent TEXT`",
            file.display(),
            file.display()
        ),
    };
    for u in &unreadable {
        eprintln!("skipped: {}:{}: {}", file.display(), u.line, u.why);
    }
    let source = format!("import: mailchimp {}", file.display());
    let mut added = 0u32;
    for member in members {
        let evidence = json!({ "from": "mailchimp", "line": member.line, "mailchimp": member.evidence });
        let change = readers::record(ledger, &member.email, kind, &source, None, evidence)?;
        added += u32::from(change.newly_suppressed());
    }
    ledger.commit()?;
    if !quiet {
        println!(
            "Imported {added} new address{} from Mailchimp's {} export {} as {}; {} row(s) skipped",
            plural(added),
            if export == Export::Cleaned {
                "cleaned"
            } else {
                "unsubscribed"
            },
            file.display(),
            if export == Export::Cleaned {
                "hard bounces"
            } else {
                "the readers' own unsubscribes"
            },
            unreadable.len()
        );
    }
    Ok(())
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "es" }
}

/// Imports the `email` column of a CSV (such as the website's unsubscribe export); invalid
/// rows are reported with their line and skipped.
fn import(ledger: &mut Ledger, file: &Path, reason: &str, kind: Kind) -> Result<(u32, u32)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}:1: cannot read the header row", file.display()))?;
    let Some(col) = headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}').trim().eq_ignore_ascii_case("email"))
    else {
        bail!(
            "{}:1: no `email` column; name the address column `email`",
            file.display()
        );
    };
    let source = format!("import: {}", file.display());
    let (mut added, mut invalid) = (0, 0);
    for record in reader.records() {
        let record = record.with_context(|| format!("cannot read {}", file.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        match normalize_address(record.get(col).unwrap_or_default()) {
            Ok(email) => {
                let change = readers::record(ledger, &email, kind, &source, None, json!({ "note": reason }))?;
                added += u32::from(change.newly_suppressed());
            }
            Err(why) => {
                invalid += 1;
                eprintln!("skipped: {}:{line}: {why}", file.display());
            }
        }
    }
    ledger.commit()?;
    Ok((added, invalid))
}
