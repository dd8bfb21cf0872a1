//! `newsletter doctor`: one line per thing examined, ok or what to fix.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result};
use newsletter::config::Config;
use newsletter::doctor::{Finding, Options, Verdict, examine, worst};

use crate::Exit;
use crate::cli::{DoctorArgs, Format};

pub fn run(config_path: Option<&Path>, args: DoctorArgs) -> Result<Exit> {
    let resolver = args.resolver.as_deref().map(resolver_address).transpose()?;
    let found = match Config::load(config_path, std::env::vars()) {
        // A configuration that does not load is the first thing to fix, and nothing else can
        // be examined without it.
        Err(e) => vec![Finding {
            area: "configuration",
            subject: config_path.map_or(newsletter::config::DEFAULT_PATH.to_owned(), |p| p.display().to_string()),
            verdict: Verdict::Fix,
            said: format!("{e:#}"),
        }],
        Ok(config) => {
            let mut found: Vec<Finding> = config
                .warnings
                .iter()
                .map(|w| Finding {
                    area: "configuration",
                    subject: "environment".into(),
                    verdict: Verdict::Warning,
                    said: w.clone(),
                })
                .collect();
            let options = Options {
                offline: args.offline,
                resolver,
            };
            found.extend(newsletter::runtime()?.block_on(examine(&config, &options)));
            found
        }
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&found)?),
        Format::Text => print(&found),
    }
    Ok(if worst(&found) == Verdict::Fix {
        Exit::Problems
    } else {
        Exit::Success
    })
}

fn print(found: &[Finding]) {
    let mut area = "";
    for f in found {
        if f.area != area {
            area = f.area;
            println!("{area}:");
        }
        let mark = match f.verdict {
            Verdict::Ok => "ok     ",
            Verdict::Warning => "warning",
            Verdict::Fix => "fix    ",
        };
        println!("  {mark}  {}: {}", f.subject, f.said);
    }
    let count = |v: Verdict| found.iter().filter(|f| f.verdict == v).count();
    println!(
        "{} ok, {} warnings, {} to fix",
        count(Verdict::Ok),
        count(Verdict::Warning),
        count(Verdict::Fix)
    );
}

/// `127.0.0.1:5353`, `[::1]:53`, or an address alone (port 53).
fn resolver_address(text: &str) -> Result<SocketAddr> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .with_context(|| format!("--resolver `{text}`: write an address and port, e.g. 127.0.0.1:53"))
}
