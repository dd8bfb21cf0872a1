//! One file per subcommand, each a small function over the library.

pub mod backup;
pub mod bounces;
pub mod check;
pub mod dkim;
pub mod dmarc;
pub mod docs;
pub mod doctor;
pub mod init;
pub mod layout;
pub mod new;
pub mod preview;
pub mod prune;
pub mod report;
pub mod say;
pub mod send;
pub mod serve;
pub mod status;
pub mod subscribers;
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

/// Which of a reader's own links.
pub enum ReaderLink {
    Unsubscribe,
    Preferences,
}

/// `newsletter unsubscribe-url EMAIL` and `preferences-url EMAIL`: the link as the email
/// carries it; with `--recipients`, one per valid row of a list.
pub fn reader_url(
    config_path: Option<&Path>,
    link: ReaderLink,
    args: crate::cli::ReaderLinkArgs,
) -> Result<crate::Exit> {
    let (email, issue, list) = (args.email.as_deref(), args.issue.as_str(), args.recipients.as_deref());
    use std::io::Write;

    use newsletter::unsubscribe::{SECRET_VAR, Secret, url};
    let config = load_config(config_path, false)?;
    let base = match link {
        ReaderLink::Unsubscribe => config.unsubscribe.url.clone(),
        ReaderLink::Preferences => config.preferences_url(),
    };
    let secret = Secret::from_env()?.ok_or_else(|| {
        anyhow::anyhow!("{SECRET_VAR} is not set: it makes the link (make one with `openssl rand -base64 32`)")
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let Some(list) = list {
        for row in newsletter::recipients::Recipients::open(list)? {
            if let Ok(r) = row? {
                writeln!(out, "{}", url(&base, &secret, &r.email, issue))?;
            }
        }
    } else if let Some(email) = email {
        let email =
            newsletter::recipients::normalize_address(email).map_err(|why| anyhow::anyhow!("`{email}`: {why}"))?;
        writeln!(out, "{}", url(&base, &secret, &email, issue))?;
    }
    out.flush()?;
    Ok(crate::Exit::Success)
}
