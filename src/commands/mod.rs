//! One file per subcommand, each a small function over the library.

pub mod check;
pub mod dkim;
pub mod docs;
pub mod layout;
pub mod new;
pub mod preview;
pub mod send;
pub mod serve;
pub mod status;
pub mod suppress;

use std::path::Path;

use anyhow::Result;
use newsletter::config::Config;

/// The configuration, its warnings printed like every other warning (not with `-q`).
pub fn load_config(path: Option<&Path>, quiet: bool) -> Result<Config> {
    let config = Config::load(path, std::env::vars())?;
    if !quiet {
        for w in &config.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(config)
}

/// `newsletter unsubscribe-url EMAIL`: the signed link, as the email carries it.
pub fn unsubscribe_url(config_path: Option<&Path>, email: &str, issue: &str) -> Result<crate::Exit> {
    use newsletter::unsubscribe::{SECRET_VAR, Secret, url};
    let config = load_config(config_path, false)?;
    let email = newsletter::recipients::normalize_address(email).map_err(|why| anyhow::anyhow!("`{email}`: {why}"))?;
    let secret = Secret::from_env().ok_or_else(|| anyhow::anyhow!("{SECRET_VAR} is not set: it signs the link"))?;
    println!("{}", url(&config.unsubscribe.url, &secret, &email, issue));
    Ok(crate::Exit::Success)
}
