//! `newsletter prune [--dry-run]`: apply `retention` to the ledger now.

use std::path::Path;

use anyhow::Result;

use crate::Exit;
use crate::cli::Format;

pub fn run(config_path: Option<&Path>, quiet: bool, dry_run: bool, format: Format) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    let pruning = newsletter::retention::prune(&config, chrono::Utc::now(), dry_run)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&pruning)?),
        Format::Text if !quiet => println!("{}", newsletter::retention::describe(&pruning, dry_run)),
        Format::Text => {}
    }
    Ok(Exit::Success)
}
