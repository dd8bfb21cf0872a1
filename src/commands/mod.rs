//! One file per subcommand, each a small function over the library.

pub mod new;
pub mod preview;
pub mod send;

use std::path::Path;

use anyhow::Result;
use newsletter::config::Config;

pub fn load_config(path: Option<&Path>) -> Result<Config> {
    Config::load(path, std::env::vars())
}
