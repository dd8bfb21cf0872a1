//! The mailboxes mail comes back to (bounces, complaints, DMARC reports): a maildir, an mbox
//! file or an IMAP folder, read in batches. A message is let go of (moved to cur/, marked
//! \Seen, passed by the mbox cursor) only after the ledger committed what it said, so a crash
//! reads it again and the ledger's record of handled messages makes the second reading change
//! nothing.

use anyhow::{Result, anyhow};

use crate::config::Config;
use crate::config::bounces::Source;
use crate::ledger::Ledger;

mod imap;
mod maildir;
mod mbox;

pub use imap::Imap;
pub use maildir::Maildir;
pub use mbox::Mbox;

/// One message from the mailbox.
#[derive(Debug)]
pub struct Item {
    /// The file name in a maildir, `@OFFSET` in an mbox, the UID in IMAP.
    pub id: String,
    pub raw: Vec<u8>,
    /// Where the mailbox's cursor goes once this message is handled (mbox, IMAP).
    pub cursor: Option<String>,
}

pub trait Mailbox {
    /// Names the mailbox in messages and keys its cursor in the ledger.
    fn name(&self) -> String;
    /// The next unread messages; empty when there are no more.
    fn next_batch(&mut self) -> Result<Vec<Item>>;
    /// The ledger has committed these: let them go. `is_report[i]` says whether anything was
    /// read from `items[i]`: reports are marked read, other mail (a person writing to the
    /// bounce address, which may be the From address) is left unread for a person.
    fn done(&mut self, items: &[Item], is_report: &[bool]) -> Result<()>;
}

const BATCH: usize = 200;

/// Opens `source` where the ledger's cursor says the last reading stopped (without a ledger,
/// from the start). An IMAP folder's password comes from `password_var` (or the file
/// `{password_var}_FILE` names); `read_only` opens it without changing a flag.
pub fn open(
    config: &Config,
    source: &Source,
    password_var: &str,
    ledger: Option<&Ledger>,
    read_only: bool,
) -> Result<Box<dyn Mailbox>> {
    Ok(match source {
        Source::Maildir(dir) => Box::new(Maildir::open(dir)?),
        Source::Mbox(file) => {
            let name = Mbox::name_of(file);
            let cursor = ledger.map(|l| l.cursor(&name)).transpose()?.flatten();
            Box::new(Mbox::open(file, cursor.as_deref())?)
        }
        Source::Imap(imap) => {
            let password = crate::config::secret(password_var).ok_or_else(|| {
                anyhow!(
                    "{password_var} is not set: the IMAP password comes only from the environment (or the file {password_var}_FILE names)"
                )
            })?;
            let name = Imap::name_of(imap);
            let cursor = ledger.map(|l| l.cursor(&name)).transpose()?.flatten();
            let tls = crate::net::tls::client_config(config.smtp.first())?;
            Box::new(Imap::connect(
                imap,
                &password,
                password_var,
                tls,
                cursor.as_deref(),
                read_only,
            )?)
        }
    })
}
