//! `newsletter completions SHELL` and `newsletter man DIR`: the command line's own
//! description, as shells and `man` read it.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::Exit;
use crate::cli::Cli;

pub fn completions(shell: clap_complete::Shell) -> Result<Exit> {
    clap_complete::generate(shell, &mut Cli::command(), "newsletter", &mut std::io::stdout());
    Ok(Exit::Success)
}

/// newsletter.1, and newsletter-send.1 and so on for each command.
pub fn man(dir: &Path, quiet: bool) -> Result<Exit> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let command = Cli::command();
    let mut written = Vec::new();
    let mut write = |name: String, cmd: clap::Command| -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    for sub in command.get_subcommands() {
        let name = format!("newsletter-{}", sub.get_name());
        // clap names are &'static str without its `string` feature; this runs once and exits.
        let title: &'static str = Box::leak(name.clone().into_boxed_str());
        write(name, sub.clone().name(title))?;
    }
    write("newsletter".into(), command)?;
    if !quiet {
        println!("Wrote {} manual pages to {}", written.len(), dir.display());
    }
    Ok(Exit::Success)
}
