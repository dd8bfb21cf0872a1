//! One reading of DMARC reports: the configured mailbox from where the last reading stopped,
//! or mailboxes and files named on the command line, read whole and without a cursor.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Taken, take, unpack};
use crate::config::Config;
use crate::config::bounces::Source;
use crate::config::dmarc::PASSWORD_VAR;
use crate::ledger::{self, Ledger};
use crate::mailbox::{self, Mailbox, Maildir, Mbox};

/// Where to read.
pub enum Origin {
    /// `dmarc.mailbox`: what is new since the last reading.
    Configured(Source),
    /// Every message of a maildir (new/ and cur/), left as it is.
    Maildir(PathBuf),
    /// Every message of an mbox file.
    Mbox(PathBuf),
    /// Report files (or emails saved as files); a folder stands for the files in it.
    Files(Vec<PathBuf>),
}

/// What one reading read.
pub struct Reading {
    /// The mailbox or files, as the summary names them.
    pub from: String,
    pub messages: u64,
    pub taken: Taken,
}

pub fn run(config: &Config, ledger: &mut Ledger, origin: &Origin) -> Result<Reading> {
    let mut taken = Taken::default();
    let mut messages = 0u64;
    let from = match origin {
        Origin::Configured(source) => {
            // One reader at a time, as for the bounce mailbox.
            let lock_path = config.ledger.with_extension("dmarc.lock");
            let Some(_lock) = ledger::lock_file(&lock_path)? else {
                bail!(
                    "another `newsletter dmarc` is running (it holds {}); this run stops",
                    lock_path.display()
                );
            };
            let mut mailbox = mailbox::open(config, source, PASSWORD_VAR, Some(ledger), false)?;
            let name = mailbox.name();
            loop {
                let items = mailbox.next_batch()?;
                if items.is_empty() {
                    break;
                }
                let mut read = Vec::with_capacity(items.len());
                for item in &items {
                    let got = take(
                        unpack::documents(&item.raw),
                        &format!("{name} {}", item.id),
                        Some(ledger),
                    )?;
                    read.push(got.read > 0);
                    taken.extend(got.let_go());
                    if let Some(cursor) = &item.cursor {
                        ledger.set_cursor(&name, cursor)?;
                    }
                }
                messages += items.len() as u64;
                // Committed before the messages are let go, as bounces are.
                ledger.commit()?;
                mailbox.done(&items, &read)?;
            }
            name
        }
        Origin::Maildir(dir) => {
            for file in Maildir::files(dir)? {
                messages += 1;
                taken.extend(take_file(&file, ledger)?);
            }
            format!("maildir:{}", dir.display())
        }
        Origin::Mbox(path) => {
            let mut mbox = Mbox::open(path, None)?;
            let name = mbox.name();
            loop {
                let items = mbox.next_batch()?;
                if items.is_empty() {
                    break;
                }
                for item in &items {
                    taken.extend(take(
                        unpack::documents(&item.raw),
                        &format!("{name}{}", item.id),
                        Some(ledger),
                    )?);
                }
                messages += items.len() as u64;
            }
            name
        }
        Origin::Files(paths) => {
            for path in paths {
                for file in files_of(path)? {
                    messages += 1;
                    taken.extend(take_file(&file, ledger)?);
                }
            }
            match paths.as_slice() {
                [one] => one.display().to_string(),
                more => format!("{} files", more.len()),
            }
        }
    };
    ledger.commit()?;
    Ok(Reading { from, messages, taken })
}

fn take_file(file: &Path, ledger: &mut Ledger) -> Result<Taken> {
    let name = file.display().to_string();
    match std::fs::read(file) {
        Ok(bytes) => take(unpack::documents(&bytes), &name, Some(ledger)),
        Err(e) => Ok(Taken {
            unreadable: vec![crate::ledger::dmarc::Unreadable {
                file: name,
                why: format!("it cannot be read ({e})"),
            }],
            ..Taken::default()
        }),
    }
}

/// A file, or the files in a folder in name order.
fn files_of(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read the folder {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
