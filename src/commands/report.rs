//! `newsletter report ISSUE` or `--year YYYY`: how an issue or a period did, in the terminal,
//! as JSON or CSV, and as one page with `--html FILE`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use newsletter::human::thousands;
use newsletter::report::year::{self, Period, YearReport};
use newsletter::report::{self, IssueReport, html};

use crate::Exit;
use crate::cli::{ReportArgs, ReportFormat};

/// The widest bar, in characters.
const BAR: u64 = 30;

pub fn run(config_path: Option<&Path>, args: ReportArgs) -> Result<Exit> {
    let config = super::load_config(config_path, false)?;
    let (text, page) = match (&args.issue, args.year, args.since) {
        (Some(issue), _, _) => {
            let r = report::issue(&config, issue)?;
            let text = match args.format {
                ReportFormat::Json => serde_json::to_string_pretty(&r)?,
                ReportFormat::Csv => bail!("--format csv is for a period's issues: use json for one issue"),
                ReportFormat::Text => issue_text(&r, args.links),
            };
            (text, args.html.as_ref().map(|_| html::issue(&r)))
        }
        (None, year, since) => {
            let period = match (year, since) {
                (Some(y), _) => Period::year(y).context("--year is out of range")?,
                (None, Some(since)) => Period {
                    since,
                    until: args
                        .until
                        .unwrap_or_else(|| chrono::Utc::now().date_naive() + chrono::Days::new(1)),
                },
                (None, None) => bail!("give an issue, --year or --since"),
            };
            let r = year::period(&config, period)?;
            let text = match args.format {
                ReportFormat::Json => serde_json::to_string_pretty(&r)?,
                ReportFormat::Csv => year::csv(&r)?,
                ReportFormat::Text => period_text(&r),
            };
            (text, args.html.as_ref().map(|_| html::year(&r)))
        }
    };
    if let (Some(file), Some(page)) = (&args.html, page) {
        std::fs::write(file, page).with_context(|| format!("cannot write {}", file.display()))?;
    }
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(Exit::Success)
}

fn issue_text(r: &IssueReport, links: usize) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let before = |f: &dyn Fn(&report::Brief) -> u64| {
        r.previous
            .as_ref()
            .map(|p| format!("   ({}: {})", p.issue, thousands(f(p))))
            .unwrap_or_default()
    };
    line(format!("{}: {}", r.issue, r.subject));
    line(format!(
        "  delivered     {:>9}{}",
        thousands(r.delivered),
        before(&|p| p.delivered)
    ));
    line(format!(
        "  bounced       {:>9} hard, {} soft",
        thousands(r.bounces.hard),
        thousands(r.bounces.soft)
    ));
    line(format!("  complaints    {:>9}", thousands(r.complaints)));
    line(format!("  unsubscribed  {:>9}", thousands(r.unsubscribes)));
    line(format!(
        "  new readers   {:>9}   (signed up or imported until the next issue)",
        thousands(r.new_subscribers)
    ));
    line(format!(
        "  reads         {:>9}{}   (adds up: {})",
        thousands(r.reads.total),
        before(&|p| p.reads),
        r.reads.sources.join(", ").replace('_', " ")
    ));
    let machine: Vec<String> = r
        .clicks
        .machine
        .iter()
        .map(|(reason, n)| format!("{} {}", thousands(*n), reason.replace('_', " ")))
        .collect();
    line(format!(
        "  clicks        {:>9}{}   (taken out as machines': {})",
        thousands(r.clicks.counted),
        before(&|p| p.clicks),
        if machine.is_empty() {
            "none".to_owned()
        } else {
            machine.join(", ")
        }
    ));
    if !r.clicks.by_section.is_empty() {
        line(format!("\nClicks by section\n{}", bars(&r.clicks.sections())));
        line("Top links".into());
        for l in r.clicks.by_link.iter().filter(|l| l.clicks > 0).take(links) {
            line(format!("  {:>7}  {}  ({})", thousands(l.clicks), l.url, l.section));
        }
    }
    out
}

fn period_text(r: &YearReport) -> String {
    let optional = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), thousands);
    let mut out = format!(
        "{} to {}\n  issues sent          {:>9}\n  messages delivered   {:>9}\n  reads                {:>9}\n  clicks               {:>9}\n  subscribers          {:>9} at the first send, {} at the last\n  new subscribers      {:>9}\n  unsubscribes         {:>9}\n  bounces              {:>9}\n  complaints           {:>9}\n",
        r.period.since,
        r.period.until.pred_opt().unwrap_or(r.period.until),
        thousands(r.issues_sent),
        thousands(r.delivered),
        thousands(r.reads),
        thousands(r.clicks),
        optional(r.subscribers_start),
        optional(r.subscribers_end),
        thousands(r.new_subscribers),
        thousands(r.unsubscribes),
        thousands(r.bounces),
        thousands(r.complaints),
    );
    if !r.clicks_by_project.is_empty() {
        let projects: Vec<(String, u64)> = r
            .clicks_by_project
            .iter()
            .map(|p| (p.project.clone(), p.clicks))
            .collect();
        out.push_str(&format!("\nClicks per project\n{}", bars(&projects)));
    }
    out
}

/// One bar per item, as long as its share of the largest.
fn bars(items: &[(String, u64)]) -> String {
    let top = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let width = items.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    items
        .iter()
        .map(|(label, n)| {
            let bar = "█".repeat((n * BAR).div_ceil(top) as usize);
            format!("  {label:<width$}  {bar:<30} {}\n", thousands(*n))
        })
        .collect()
}
