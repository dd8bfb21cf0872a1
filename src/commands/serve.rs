//! `newsletter serve` and `newsletter archive --out DIR`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use newsletter::unsubscribe::{SECRET_VAR, Secrets};
use newsletter::web::{self, App};

use crate::Exit;
use crate::cli::ArchiveCommand;

pub fn run(config_path: Option<&Path>, quiet: bool, listen: Option<String>) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    let secrets = Secrets::from_env(config.unsubscribe.accept_release_0_tokens)?.with_context(|| {
        format!("{SECRET_VAR} is not set: the service checks the unsubscribe links with it (make one with `openssl rand -base64 32`)")
    })?;
    let listen = listen.unwrap_or_else(|| config.serve.listen.clone());
    let app = Arc::new(App::new(config, secrets)?);
    let runtime = newsletter::runtime()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}: is another service there? pass --listen"))?;
        if !quiet {
            println!("Serving on http://{}/ until SIGTERM or Ctrl-C", listener.local_addr()?);
        }
        web::serve(app, listener, newsletter::send::delivery::interrupted()).await
    })?;
    Ok(Exit::Success)
}

pub fn archive(
    config_path: Option<&Path>,
    quiet: bool,
    out: Option<PathBuf>,
    action: Option<ArchiveCommand>,
) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    match (out, action) {
        (Some(out), _) => {
            let pages = web::pages::Pages::load(&config)?;
            let exported = newsletter::archive::export(&config, &out, &|list, feed| pages.index(list, feed))?;
            if let Some(why) = exported.no_feed {
                eprintln!("warning: no feed.xml written: {why}");
            }
            if !quiet {
                println!("Wrote the archive of {} issue(s) to {}", exported.issues, out.display());
            }
        }
        (None, Some(ArchiveCommand::Publish { issue })) => {
            newsletter::archive::publish(&config, &issue)?;
            if !quiet {
                println!("{issue}: the archive's page is made again from its file");
            }
        }
        (None, None) => anyhow::bail!("archive: give --out DIR (static files) or `publish ISSUE`"),
    }
    Ok(Exit::Success)
}
