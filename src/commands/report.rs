//! `newsletter report ISSUE`: how an issue did, in the terminal or as JSON.

use std::path::Path;

use anyhow::Result;
use newsletter::human::thousands;
use newsletter::report::{self, IssueReport};

use crate::Exit;
use crate::cli::{Format, ReportArgs};

/// The widest bar, in characters.
const BAR: u64 = 30;

pub fn run(config_path: Option<&Path>, args: ReportArgs) -> Result<Exit> {
    let config = super::load_config(config_path, false)?;
    let report = report::issue(&config, &args.issue)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print(&report, args.links),
    }
    Ok(Exit::Success)
}

fn print(r: &IssueReport, links: usize) {
    let before = |f: &dyn Fn(&report::Brief) -> u64| {
        r.previous
            .as_ref()
            .map(|p| format!("   ({}: {})", p.issue, thousands(f(p))))
            .unwrap_or_default()
    };
    println!("{}: {}", r.issue, r.subject);
    println!(
        "  delivered     {:>9}{}",
        thousands(r.delivered),
        before(&|p| p.delivered)
    );
    println!(
        "  bounced       {:>9} hard, {} soft",
        thousands(r.bounces.hard),
        thousands(r.bounces.soft)
    );
    println!("  complaints    {:>9}", thousands(r.complaints));
    println!("  unsubscribed  {:>9}", thousands(r.unsubscribes));
    println!(
        "  reads         {:>9}{}   (adds up: {})",
        thousands(r.reads.total),
        before(&|p| p.reads),
        r.reads.sources.join(", ").replace('_', " ")
    );
    let machine: Vec<String> = r
        .clicks
        .machine
        .iter()
        .map(|(reason, n)| format!("{} {}", thousands(*n), reason.replace('_', " ")))
        .collect();
    println!(
        "  clicks        {:>9}{}   (taken out as machines': {})",
        thousands(r.clicks.counted),
        before(&|p| p.clicks),
        if machine.is_empty() {
            "none".to_owned()
        } else {
            machine.join(", ")
        }
    );
    if r.clicks.by_section.is_empty() {
        return;
    }
    let top = r.clicks.by_section.iter().map(|s| s.clicks).max().unwrap_or(0).max(1);
    let width = r
        .clicks
        .by_section
        .iter()
        .map(|s| s.section.chars().count())
        .max()
        .unwrap_or(0);
    println!("\nClicks by section");
    for s in &r.clicks.by_section {
        let bar = "█".repeat((s.clicks * BAR).div_ceil(top) as usize);
        println!("  {:<width$}  {bar:<30} {}", s.section, thousands(s.clicks));
    }
    println!("\nTop links");
    for l in r.clicks.by_link.iter().filter(|l| l.clicks > 0).take(links) {
        println!("  {:>7}  {}  ({})", thousands(l.clicks), l.url, l.section);
    }
}
