//! `newsletter init [DIR]`: a project of one's own, from flags or, on a terminal, questions.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use newsletter::init::{Identity, QUESTIONS, question};

use crate::Exit;
use crate::cli::InitArgs;

pub fn run(quiet: bool, args: InitArgs) -> Result<Exit> {
    let given = [
        ("name", args.name),
        ("sender", args.sender),
        ("from", args.from),
        ("postal-address", args.postal_address),
        ("site", args.site),
        ("projects", args.projects),
    ];
    let missing: Vec<&str> = given.iter().filter(|(_, v)| v.is_none()).map(|(f, _)| *f).collect();
    let interactive = std::io::stdin().is_terminal();
    if !missing.is_empty() && !interactive {
        bail!(
            "not on a terminal, so nothing can be asked: give {}",
            missing.iter().map(|f| format!("--{f}")).collect::<Vec<_>>().join(", ")
        );
    }
    let mut answers = Vec::new();
    for (flag, value) in given {
        let value = match value {
            Some(v) => v,
            None => ask(flag)?,
        };
        answers.push(value.trim().to_owned());
    }
    let [newsletter, sender, from, postal, site, projects] =
        <[String; 6]>::try_from(answers).map_err(|_| anyhow::anyhow!("{} answers expected", QUESTIONS.len()))?;
    let identity = Identity {
        newsletter,
        sender,
        from,
        postal,
        site,
        projects: projects
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    let written = newsletter::init::write(&args.dir, &identity)?;
    if !quiet {
        println!("Wrote a project for {} in {}:", identity.newsletter, args.dir.display());
        for path in &written {
            println!("  {}", path.display());
        }
        let month = chrono::Utc::now().format("%Y-%m");
        println!("Next, in {}:", args.dir.display());
        println!("  newsletter new {month}    # the first issue: newsletters/{month}.md");
        println!("  $EDITOR newsletter.yaml   # smtp: your relay; test_recipients: your own inbox");
        println!("  newsletter doctor         # the configuration, secrets, relay login and DNS records");
    }
    Ok(Exit::Success)
}

fn ask(flag: &str) -> Result<String> {
    let mut out = std::io::stderr().lock();
    write!(out, "{}: ", question(flag))?;
    out.flush()?;
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    if read == 0 {
        bail!("no answer for --{flag} (input ended)");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
