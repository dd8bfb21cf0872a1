//! The issue archive: each sent issue's web page (the email's HTML with neutral recipient
//! fields and no unsubscribe link) as it was when its send began, stored in the ledger by
//! `send`; the index's entries and the Atom feed read from there; the static export. `serve`
//! shows them (`web::archive`); `newsletter archive` publishes and exports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::compile::{Editions, Rendered, WebPage};
use crate::config::Config;
use crate::html::escape;
use crate::issue::{self, Issue};
use crate::ledger::{Archived, Ledger};
use crate::personalize::Personalizer;
use crate::recipients::Recipient;
use crate::unsubscribe::Secret;

/// One sent issue, as the index and the feed list it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub name: String,
    pub subject: String,
    pub preheader: Option<String>,
    /// RFC 3339: when its send started.
    pub started_at: String,
    /// `2025-07-01`, for people.
    pub date: String,
    /// Relative to the archive: `2025-07/`.
    pub href: String,
}

/// The public issues, newest first, from the ledger alone (no issue file is read).
pub fn entries(ledger: &Ledger) -> Result<Vec<Entry>> {
    Ok(ledger.archived()?.into_iter().map(entry).collect())
}

fn entry(a: Archived) -> Entry {
    let date = chrono::DateTime::parse_from_rfc3339(&a.published_at)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| a.published_at.clone());
    Entry {
        href: format!("{}/", a.issue),
        name: a.issue,
        subject: a.subject,
        preheader: a.preheader,
        started_at: a.published_at,
        date,
    }
}

/// Stores the archive's page of `issue`, made from `editions`, unless one is stored and a
/// message of it went out (`replace`: `archive publish`). Says whether it wrote.
pub fn store(ledger: &mut Ledger, issue: &Issue, editions: &Editions, config: &Config, replace: bool) -> Result<bool> {
    // Every real run asks; the page is compiled only when it is to be stored.
    let stored = ledger.has_archive(&issue.slug)?;
    if stored && !replace && ledger.has_sent(&issue.slug)? {
        return Ok(false);
    }
    let rendered = &editions.compile_for_web(&WebPage {
        subscribe_url: config.subscribe_url(),
        feed_url: absolute_base(config).map(|base| format!("{base}/feed.xml")),
    })?;
    let replace = replace || stored;
    let fields = &config.archive.fields;
    let subject = neutral_text(issue.subject().unwrap_or(&rendered.subject), fields);
    let preheader = issue.preheader().map(|p| neutral_text(p, fields));
    let send_at = issue.front.send_at.map(|t| {
        t.with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    });
    ledger.store_archive(
        &rendered.slug,
        &subject,
        preheader.as_deref(),
        send_at.as_deref(),
        &page(rendered, config)?,
        replace,
    )
}

/// `newsletter archive publish ISSUE`: the page made again from the issue's file, in place of
/// the one stored when it was sent.
pub fn publish(config: &Config, name: &str) -> Result<()> {
    let path = issue::find(name, &config.newsletters)?;
    let issue = Issue::load(&path)?;
    let mut ledger = Ledger::open(&config.ledger)?;
    if ledger.issue_state(&issue.slug)?.is_none() {
        anyhow::bail!(
            "{}: not sent yet, so not in the archive: its first real message stores its page",
            path.display()
        );
    }
    let prepared = crate::prepare(&issue, config)?;
    store(&mut ledger, &issue, &prepared.editions(&issue, config)?, config, true)?;
    Ok(())
}

/// Issues sent before the archive stored pages get theirs from their file, once.
pub fn backfill(config: &Config, ledger: &mut Ledger) -> Result<()> {
    for state in ledger.started_issues()? {
        if ledger.has_archive(&state.issue)? {
            continue;
        }
        let Ok(path) = issue::find(&state.issue, &config.newsletters) else {
            continue;
        };
        let issue = Issue::load(&path)?;
        let prepared = crate::prepare(&issue, config)?;
        store(ledger, &issue, &prepared.editions(&issue, config)?, config, false)?;
    }
    Ok(())
}

/// A subject's `{{first_name}}` and the like, as the archive's fields fill them.
fn neutral_text(text: &str, fields: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").map_or(rest.len(), |e| start + e + 2);
        let name = rest[start..end].trim_matches(['{', '}', ' ']);
        out.push_str(fields.get(name).map_or("", String::as_str));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ").replace(" ,", ",")
}

/// One issue's page: the email's HTML for a neutral reader, without an unsubscribe link.
fn page(rendered: &Rendered, config: &Config) -> Result<String> {
    let personalizer = Personalizer::new(rendered, config, Secret::placeholder())?.for_archive();
    let mut reader = Recipient::sample();
    reader.fields = config.archive.fields.clone();
    // Every column the issue uses shows something, if only nothing.
    for name in crate::check::template_fields(rendered) {
        reader.fields.entry(name).or_default();
    }
    Ok(personalizer.parts(&reader)?.html)
}

/// The Atom feed (RFC 4287) of `entries`; `base` is the archive's absolute URL.
pub fn feed(config: &Config, entries: &[Entry], base: &str) -> String {
    let xml = |s: &str| escape(s);
    let updated = entries
        .first()
        .map_or("1970-01-01T00:00:00Z", |e| e.started_at.as_str());
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n  <title>{}</title>\n  <id>{base}/</id>\n  <link rel=\"alternate\" href=\"{base}/\"/>\n  <link rel=\"self\" href=\"{base}/feed.xml\"/>\n  <updated>{updated}</updated>\n  <author><name>{}</name></author>\n",
        xml(&config.archive.title),
        xml(&config.from.name)
    );
    for e in entries {
        out.push_str(&format!(
            "  <entry>\n    <title>{}</title>\n    <id>{base}/{}</id>\n    <link rel=\"alternate\" href=\"{base}/{}\"/>\n    <updated>{}</updated>\n    <summary>{}</summary>\n  </entry>\n",
            xml(&e.subject),
            e.href,
            e.href,
            e.started_at,
            xml(e.preheader.as_deref().unwrap_or(""))
        ));
    }
    out.push_str("</feed>\n");
    out
}

/// The archive's absolute URL, `archive.url`: Atom's ids must be absolute, so without it
/// there is no feed.
pub fn absolute_base(config: &Config) -> Option<String> {
    config
        .archive
        .url
        .as_ref()
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// Why there is no feed.
pub const NO_FEED: &str = "the Atom feed needs archive.url (the archive's absolute URL, such as https://openinfra.dev/newsletter/archive): Atom requires absolute ids";

/// `newsletter archive --out DIR`: index.html (drawn by `index`: the layout's archive page),
/// ISSUE/index.html and feed.xml.
pub fn export(config: &Config, dir: &Path, index: &dyn Fn(&[Entry], bool) -> Result<String>) -> Result<Exported> {
    let mut ledger = Ledger::open(&config.ledger)?;
    backfill(config, &mut ledger)?;
    let list = entries(&ledger)?;
    let write = |path: PathBuf, text: &str| -> Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    for entry in &list {
        if let Some(page) = ledger.archive_page(&entry.name)? {
            write(dir.join(&entry.name).join("index.html"), &page)?;
        }
    }
    let base = absolute_base(config);
    write(dir.join("index.html"), &index(&list, base.is_some())?)?;
    if let Some(base) = &base {
        write(dir.join("feed.xml"), &feed(config, &list, base))?;
    }
    Ok(Exported {
        issues: list.len(),
        no_feed: base.is_none().then_some(NO_FEED),
    })
}

/// What `export` wrote.
pub struct Exported {
    pub issues: usize,
    /// Why no feed.xml was written, if none was.
    pub no_feed: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_lose_their_fields_for_the_archive() {
        let fields: BTreeMap<String, String> = [("first_name".to_owned(), "reader".to_owned())].into();
        assert_eq!(
            neutral_text("Hello {{first_name}}, the news", &fields),
            "Hello reader, the news"
        );
        assert_eq!(neutral_text("Hi {{nickname}}, news", &fields), "Hi, news");
        assert_eq!(neutral_text("Inside: July 2025", &fields), "Inside: July 2025");
    }
}
