//! The issue as one reader will see it, for `preview` and its live server: rendered once,
//! personalized for one recipient of the list.

pub mod server;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::choice::{self, Choice};
use crate::clicks::{Clicks, LinkTable};
use crate::compile::Rendered;
use crate::config::Config;
use crate::diagnostic::{Kind, Warning};
use crate::issue::Issue;
use crate::personalize::{Parts, Personalizer};
use crate::recipients::{self, Recipient};
use crate::unsubscribe::{SECRET_VAR, Secret};
use server::Page;

/// The issue rendered and personalized for one recipient.
pub struct Personalized {
    pub rendered: Rendered,
    pub parts: Parts,
    /// The message as sent, formatted for SMTP.
    pub eml: Vec<u8>,
}

/// The issue as `recipient` gets it: the edition of the projects they chose (their `projects`
/// field), or the whole issue.
pub fn build(config: &Config, path: &Path, recipient: &Recipient) -> Result<Personalized> {
    let issue = Issue::load(path)?;
    let prepared = crate::prepare(&issue, config)?;
    let editions = prepared.editions(&issue, config)?;
    let whole = editions.compile(&Choice::Everything)?;
    let choice = recipient
        .fields
        .get(choice::COLUMN)
        .map_or(Choice::Everything, |value| Choice::parse(value, editions.registry()).0);
    let sections = &prepared.sections;
    // An edition adds no warnings of its own: the preview shows the whole issue's.
    let mut rendered = match choice {
        Choice::Everything => whole.clone(),
        _ => Rendered {
            warnings: whole.warnings.clone(),
            ..editions.compile(&choice)?
        },
    };
    let secret = match Secret::from_env() {
        Ok(Some(secret)) => secret,
        unset_or_weak => {
            let why = match unset_or_weak {
                Err(weak) => weak.to_string(),
                Ok(_) => format!("{SECRET_VAR} is not set"),
            };
            rendered.warnings.push(Warning::new(
                Kind::PlaceholderSecret,
                "",
                None,
                format!("{why}: the unsubscribe link in this preview is signed with a placeholder key"),
            ));
            Secret::placeholder()
        }
    };
    let (parts, eml) = {
        // The links as the readers will get them, marked as a preview's: with `serve`
        // running they lead where they should and count nothing.
        let stored = if config.ledger.is_file() {
            crate::ledger::Ledger::open(&config.ledger)?.links_of(&rendered.slug)?
        } else {
            Vec::new()
        };
        let table = LinkTable::merged(stored, &LinkTable::new(sections, &whole));
        let mut personalizer = Personalizer::new(&rendered, config, secret.clone())?.for_preview();
        if let Some(clicks) = Clicks::new(config, &rendered.slug, table, &secret) {
            personalizer = personalizer.with_clicks(std::sync::Arc::new(clicks))?;
        }
        (
            personalizer.parts(recipient)?,
            personalizer.mime(recipient, false)?.bytes,
        )
    };
    Ok(Personalized { rendered, parts, eml })
}

/// `recipient` as a reader who chose `projects` (`kata-containers,zuul`): the preview of a
/// sign-up reader's edition. An id the layout does not know is an error, with the known ones.
pub fn choosing(config: &Config, path: &Path, mut recipient: Recipient, projects: &str) -> Result<Recipient> {
    let issue = Issue::load(path)?;
    let layout = crate::layout::Layout::load(issue.front.layout.as_deref(), &config.layouts)?;
    let (_, unknown) = Choice::parse(projects, &layout.registry);
    if let Some(id) = unknown.first() {
        let known: Vec<&str> = layout.registry.projects.iter().map(|p| p.id.as_str()).collect();
        bail!(
            "--projects: `{id}` is not a project of the layout; its projects: {}",
            known.join(", ")
        );
    }
    recipient.fields.insert(choice::COLUMN.to_owned(), projects.to_owned());
    Ok(recipient)
}

impl Personalized {
    /// What the live preview shows: the HTML, the text part, the headers and the warnings.
    pub fn page(self) -> Page {
        let eml = self.eml;
        let end = memchr::memmem::find(&eml, b"\r\n\r\n").unwrap_or(eml.len());
        Page {
            title: self.parts.subject,
            html: self.parts.html,
            text: self.parts.text,
            headers: String::from_utf8_lossy(&eml[..end]).replace("\r\n", "\n"),
            warnings: self.rendered.warnings.iter().map(ToString::to_string).collect(),
        }
    }
}

/// `--as EMAIL` from the list; otherwise the list's first row; otherwise a sample reader.
/// Also says where the recipient came from.
pub fn recipient(config: &Config, list: Option<PathBuf>, as_email: Option<&str>) -> Result<(Recipient, String)> {
    let list = recipients::list_to_look_at(&config.recipients, list.as_deref()).map(|(list, _)| list);
    match (as_email, list) {
        (Some(email), Some(list)) => {
            let r = recipients::find(&list, email)?;
            let source = format!("{} line {}", list.display(), r.line);
            Ok((r, source))
        }
        (Some(email), None) => bail!(
            "--as {email}: no recipient list: {} does not exist; pass --recipients FILE",
            config.recipients.display()
        ),
        (None, Some(list)) => match recipients::first(&list)? {
            Some(r) => {
                let source = format!("{} line {}", list.display(), r.line);
                Ok((r, source))
            }
            None => Ok((Recipient::sample(), "sample recipient".into())),
        },
        (None, None) => Ok((Recipient::sample(), "sample recipient".into())),
    }
}
