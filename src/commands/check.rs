//! `newsletter check ISSUE`: offline findings, then every link and image online, as a table
//! grouped by section (or JSON).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use newsletter::check::links::{LinkResult, Tally, Verdict};
use newsletter::check::{self, Finding, Target};
use newsletter::diagnostic::Severity;
use newsletter::issue::{self, Issue};
use newsletter::recipients;
use serde::Serialize;

use crate::Exit;
use crate::cli::{CheckArgs, Format};

#[derive(Serialize)]
struct Report<'a> {
    issue: &'a Path,
    offline: &'a [Finding],
    /// Absent with `--offline`.
    links: Option<Vec<Checked<'a>>>,
    summary: Summary,
}

#[derive(Serialize)]
struct Checked<'a> {
    #[serde(flatten)]
    target: &'a Target,
    #[serde(flatten)]
    outcome: &'a LinkResult,
}

#[derive(Serialize)]
struct Summary {
    errors: usize,
    warnings: usize,
    urls: usize,
    #[serde(flatten)]
    links: Tally,
    seconds: f64,
}

pub fn run(config_path: Option<&Path>, quiet: bool, args: CheckArgs) -> Result<Exit> {
    let started = Instant::now();
    let config = super::load_config(config_path, quiet)?;
    let path = issue::find(&args.issue, &config.newsletters)?;
    let issue = Issue::load(&path)?;
    let (sections, rendered) = newsletter::compose_with_sections(&issue, &config)?;
    let header = check::csv_header(&config, args.recipients.as_deref())?;
    let list_note = match recipients::list_to_look_at(&config.recipients, args.recipients.as_deref()) {
        None => Some(
            "no recipient list (`recipients` of the configuration or --recipients): template variables not checked"
                .to_owned(),
        ),
        Some((example, true)) => Some(format!(
            "{} does not exist: template variables checked against the columns of {}",
            config.recipients.display(),
            example.display()
        )),
        Some((_, false)) => None,
    };
    let findings = check::offline(&issue, &rendered, &config, header.as_deref());

    let targets = check::targets(&sections);
    let outcomes = if args.offline {
        None
    } else {
        Some(check::online(&config, &targets, args.no_cache)?)
    };
    let errors = check::errors(&findings);
    let tally = outcomes.as_deref().map(Tally::of).unwrap_or_default();
    let report = Report {
        issue: &path,
        offline: &findings,
        links: outcomes.as_ref().map(|o| {
            targets
                .iter()
                .zip(o)
                .map(|(target, outcome)| Checked { target, outcome })
                .collect()
        }),
        summary: Summary {
            errors,
            warnings: findings.len() - errors,
            urls: targets.len(),
            links: tally,
            seconds: started.elapsed().as_secs_f64(),
        },
    };
    // Every site failing alike says more about this machine than about the links.
    if let Some(outcomes) = outcomes.as_deref()
        && outcomes.len() > 1
        && outcomes.iter().all(|o| o.no_connection() && !o.cached)
    {
        let offline = Report { links: None, ..report };
        if args.format == Format::Text {
            print_text(&offline, list_note.as_deref(), quiet, "the network looks unreachable")?;
        }
        anyhow::bail!(
            "the network looks unreachable: none of the {} URLs could be connected to (the first: {}); check this machine's connection, or run `newsletter check {} --offline`",
            outcomes.len(),
            outcomes[0].detail,
            args.issue
        );
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_text(&report, list_note.as_deref(), quiet, "--offline")?,
    }
    Ok(if errors > 0 || tally.broken > 0 {
        Exit::Problems
    } else {
        Exit::Success
    })
}

/// `list_note`: what stood in for the recipient list; `unchecked`: why the links were not
/// visited, when they were not.
fn print_text(report: &Report<'_>, list_note: Option<&str>, quiet: bool, unchecked: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for f in report
        .offline
        .iter()
        .filter(|f| !quiet || f.severity == Severity::Error)
    {
        writeln!(out, "{:<7} {}", f.severity.label(), f.warning)?;
    }
    if let Some(note) = list_note.filter(|_| !quiet) {
        writeln!(out, "note    {note}")?;
    }
    if let Some(links) = &report.links {
        // Lines run through the file, so line order groups the rows by section.
        let mut rows: Vec<_> = links
            .iter()
            .flat_map(|c| c.target.uses.iter().map(move |u| (u, c)))
            .collect();
        rows.sort_by_key(|(used, _)| used.line);
        let mut section = None;
        for (used, checked) in rows {
            if quiet && checked.outcome.verdict == Verdict::Ok {
                continue;
            }
            if section != Some(&used.section) {
                section = Some(&used.section);
                writeln!(out, "\n{}", used.section)?;
            }
            let text = truncate(if used.text.is_empty() { "(no text)" } else { &used.text }, 32);
            let kind = if checked.target.image { "image " } else { "" };
            writeln!(
                out,
                "  {:>4}  {text:<32}  {kind}{}  {}",
                used.line,
                checked.target.url,
                result(checked.outcome)
            )?;
        }
    }
    let s = &report.summary;
    let links = match &report.links {
        Some(_) => format!(
            "{} URLs: {} ok, {} warning{}, {} broken ({} from the cache)",
            s.urls,
            s.links.ok,
            s.links.warning,
            plural(s.links.warning),
            s.links.broken,
            s.links.cached
        ),
        None => format!("{} URLs not checked ({unchecked})", s.urls),
    };
    // Quiet: only what needs doing.
    if quiet && s.errors == 0 && s.links.broken == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "\n{}: {} error{}, {} warning{}; {links}; {:.1} s",
        report.issue.display(),
        s.errors,
        plural(s.errors),
        s.warnings,
        plural(s.warnings),
        s.seconds
    )?;
    Ok(())
}

fn result(o: &LinkResult) -> String {
    let label = match o.verdict {
        Verdict::Ok => "ok",
        Verdict::Warning => "WARNING",
        Verdict::Broken => "BROKEN",
    };
    let redirect = o.final_url.as_deref().map(|u| format!(" -> {u}")).unwrap_or_default();
    let cached = if o.cached { " (cached)" } else { "" };
    format!("{label}: {}{redirect}{cached}", o.detail)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        s.chars().take(max - 1).chain(['…']).collect()
    } else {
        s.to_owned()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
