//! `newsletter backup FILE` and `newsletter restore FILE [--force]`.

use std::path::Path;

use anyhow::{Result, bail};
use newsletter::ledger::Ledger;
use newsletter::ledger::backup::{self, Copied};

use crate::Exit;
use crate::cli::Format;

pub fn backup(config_path: Option<&Path>, quiet: bool, file: &Path, format: Format) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    if !config.ledger.is_file() {
        bail!(
            "there is no ledger at {} yet: nothing to back up",
            config.ledger.display()
        );
    }
    let copied = Ledger::open(&config.ledger)?.backup(file)?;
    say(&copied, "backed up the ledger to", quiet, format)
}

pub fn restore(config_path: Option<&Path>, quiet: bool, file: &Path, force: bool) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    let copied = backup::restore(file, &config.ledger, force)?;
    if let Some(kept) = &copied.replaced_kept_at
        && !quiet
    {
        println!("the ledger that was there is kept as {kept}");
    }
    say(&copied, "restored the ledger as", quiet, Format::Text)
}

fn say(copied: &Copied, what: &str, quiet: bool, format: Format) -> Result<Exit> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(copied)?),
        Format::Text if !quiet => println!(
            "{what} {} ({:.1} MB, {:.2} s), its key as {}",
            copied.file,
            copied.bytes as f64 / 1e6,
            copied.seconds,
            copied.key
        ),
        Format::Text => {}
    }
    Ok(Exit::Success)
}
