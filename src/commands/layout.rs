//! `newsletter layout export [DIR]`: the built-in layout written out for editing.

use std::path::Path;

use anyhow::Result;
use newsletter::layout::{DEFAULT_LAYOUT, Layout};

use crate::Exit;
use crate::cli::LayoutCommand;

pub fn run(config_path: Option<&Path>, quiet: bool, command: LayoutCommand) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    match command {
        LayoutCommand::Export { dir, force } => {
            let dir = dir.unwrap_or_else(|| config.layouts.join(DEFAULT_LAYOUT));
            let written = Layout::export(&dir, force)?;
            if !quiet {
                println!(
                    "Wrote {} files of the built-in layout to {}; each file kept there replaces the built-in one",
                    written.len(),
                    dir.display()
                );
            }
        }
    }
    Ok(Exit::Success)
}
