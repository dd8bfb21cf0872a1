//! `newsletter completions SHELL` and `newsletter man DIR`: the command line's own
//! description, as shells and `man` read it.

use std::path::Path;

use anyhow::{Context, Result};

use crate::Exit;

pub fn completions(shell: clap_complete::Shell) -> Result<Exit> {
    clap_complete::generate(shell, &mut crate::cli::command(), "newsletter", &mut std::io::stdout());
    Ok(Exit::Success)
}

/// newsletter.1, and newsletter-send.1 and so on for each command and sub-command.
pub fn man(dir: &Path, quiet: bool) -> Result<Exit> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let command = crate::cli::command();
    let mut written = Vec::new();
    write_pages(dir, "newsletter", &command, &mut written)?;
    if !quiet {
        println!("Wrote {} manual pages to {}", written.len(), dir.display());
    }
    Ok(Exit::Success)
}

/// The page of `cmd` as `name.1`, then one for each of its commands, theirs included
/// (`newsletter-suppress-add.1`), as git names its pages.
fn write_pages(dir: &Path, name: &str, cmd: &clap::Command, written: &mut Vec<std::path::PathBuf>) -> Result<()> {
    // clap names are &'static str without its `string` feature; this runs once and exits.
    let title: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(title)).render(&mut out)?;
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(dir, &format!("{name}-{}", sub.get_name()), sub, written)?;
    }
    Ok(())
}
