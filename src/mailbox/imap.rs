//! An IMAP folder over TLS as a mailbox. Messages are fetched with BODY.PEEK (reading
//! sets no flag), reports marked \Seen once the ledger has them (other mail stays unread for
//! a person), and nothing is deleted. The cursor is
//! `UIDVALIDITY:UID`: a folder whose UIDVALIDITY changed is read again from the start (the
//! ledger's record of handled reports keeps that from acting twice).

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use async_imap::Session;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsConnector, rustls};

use super::{BATCH, Item, Mailbox};
use crate::config::bounces::Imap as Where;

pub struct Imap {
    runtime: tokio::runtime::Runtime,
    session: Session<TlsStream<TcpStream>>,
    name: String,
    uid_validity: u32,
    pending: Vec<u32>,
}

impl Imap {
    /// The mailbox's name (and its cursor's key): `imaps://USER@HOST:PORT/FOLDER`.
    pub fn name_of(at: &Where) -> String {
        format!("imaps://{}@{}:{}/{}", at.user, at.host, at.port, at.folder)
    }

    /// Logs in and opens the folder: read-only (EXAMINE) for a dry run. `tls` is the trust
    /// of `smtp` (net::tls::client_config).
    pub fn connect(
        at: &Where,
        password: &str,
        password_var: &str,
        tls: Arc<rustls::ClientConfig>,
        cursor: Option<&str>,
        read_only: bool,
    ) -> Result<Imap> {
        let name = Imap::name_of(at);
        let runtime = crate::runtime().context("cannot start the IMAP client")?;
        let (session, uid_validity, pending) = runtime
            .block_on(open(at, password, password_var, tls, cursor, read_only))
            .with_context(|| format!("IMAP {name}"))?;
        Ok(Imap {
            runtime,
            session,
            name,
            uid_validity,
            pending,
        })
    }
}

async fn open(
    at: &Where,
    password: &str,
    password_var: &str,
    tls: Arc<rustls::ClientConfig>,
    cursor: Option<&str>,
    read_only: bool,
) -> Result<(Session<TlsStream<TcpStream>>, u32, Vec<u32>)> {
    let tcp = TcpStream::connect((at.host.as_str(), at.port))
        .await
        .with_context(|| format!("cannot connect to {}:{}", at.host, at.port))?;
    let server_name = rustls::pki_types::ServerName::try_from(at.host.clone())
        .map_err(|_| anyhow!("`{}` is not a host name", at.host))?;
    let stream = TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| anyhow!("TLS with {}:{} failed: {e}", at.host, at.port))?;
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await?
        .ok_or_else(|| anyhow!("the server closed the connection before its greeting"))?;
    let mut session = client
        .login(&at.user, password)
        .await
        .map_err(|(e, _)| anyhow!("login as {} refused: {e}; check the user and {password_var}", at.user))?;
    let mailbox = if read_only {
        session.examine(&at.folder).await
    } else {
        session.select(&at.folder).await
    }
    .map_err(said)
    .with_context(|| format!("cannot open the folder {}", at.folder))?;
    let uid_validity = mailbox.uid_validity.unwrap_or(0);
    let last = cursor
        .and_then(|c| c.split_once(':'))
        .filter(|(v, _)| v.parse() == Ok(uid_validity))
        .and_then(|(_, uid)| uid.parse::<u32>().ok())
        .unwrap_or(0);
    let mut pending: Vec<u32> = session
        .uid_search(format!("UID {}:*", last + 1))
        .await
        .map_err(said)?
        .into_iter()
        // "N:*" always matches the last message, even one below N.
        .filter(|&uid| uid > last)
        .collect();
    pending.sort_unstable_by(|a, b| b.cmp(a));
    Ok((session, uid_validity, pending))
}

impl Mailbox for Imap {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn next_batch(&mut self) -> Result<Vec<Item>> {
        let uids: Vec<u32> = (0..BATCH).map_while(|_| self.pending.pop()).collect();
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let uid_validity = self.uid_validity;
        let session = &mut self.session;
        let mut items = self.runtime.block_on(async {
            let mut items = Vec::new();
            let mut fetches = session.uid_fetch(&set, "(UID BODY.PEEK[])").await.map_err(said)?;
            while let Some(fetch) = fetches.next().await {
                let fetch = fetch.map_err(said)?;
                if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                    items.push(Item {
                        id: uid.to_string(),
                        raw: body.to_vec(),
                        cursor: Some(format!("{uid_validity}:{uid}")),
                    });
                }
            }
            anyhow::Ok(items)
        })?;
        // In UID order, so that the cursor only moves forward.
        items.sort_by_key(|i| i.id.parse::<u32>().unwrap_or(0));
        Ok(items)
    }

    fn done(&mut self, items: &[Item], is_report: &[bool]) -> Result<()> {
        let set = items
            .iter()
            .zip(is_report)
            .filter(|(_, seen)| **seen)
            .map(|(i, _)| i.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        if set.is_empty() {
            return Ok(());
        }
        let session = &mut self.session;
        self.runtime.block_on(async {
            let mut updates = session.uid_store(&set, "+FLAGS.SILENT (\\Seen)").await.map_err(said)?;
            while let Some(update) = updates.next().await {
                update.map_err(said)?;
            }
            anyhow::Ok(())
        })
    }
}

impl Drop for Imap {
    fn drop(&mut self) {
        let session = &mut self.session;
        let _ = self.runtime.block_on(session.logout());
    }
}

/// async-imap's error as one sentence: its Display already says what its source says, so
/// keeping the source would print the cause twice.
fn said(e: async_imap::error::Error) -> anyhow::Error {
    anyhow!("{e}")
}
