//! The issue archive: an index of every public issue (newest first), each issue as a web
//! page (the email's HTML with neutral recipient fields and no unsubscribe link) as it was
//! when its send began, stored in the ledger, and an Atom feed. Served by `serve`, and written as static files by
//! `newsletter archive --out DIR`. The pages of `serve` (unsubscribe, archive index) come
//! from the layout, so a layout restyles them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use handlebars::Handlebars;
use serde::Serialize;
use sha2::Digest;

use super::App;
use crate::compile::{Editions, Rendered, WebPage};
use crate::config::Config;
use crate::html::escape;
use crate::issue::{self, Issue};
use crate::layout::Layout;
use crate::ledger::{Archived, Ledger};
use crate::personalize::Personalizer;
use crate::recipients::Recipient;
use crate::unsubscribe::Secret;

/// What the unsubscribe page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsubscribeState {
    /// GET: the button.
    Ask,
    /// After the POST: done, with the way back.
    Done,
    /// The reader's own unsubscribe was lifted: mailed again.
    Resubscribed,
    /// The address was not unsubscribed: nothing changed.
    Subscribed,
    /// The address stays unsubscribed (something stronger or later holds it, or the
    /// unsubscribe is too old to undo from the link): whom to write to.
    Kept,
    /// A bad link; says nothing about any address.
    Invalid,
    /// The ledger could not be written: try again.
    Failed,
}

/// The layout's page templates, parsed once.
pub struct Pages {
    hbs: Handlebars<'static>,
    /// For the confirmation email and the projects of the forms.
    layout: Layout,
    /// Names the sign-up page as shown: stored with each consent record.
    version: String,
    title: String,
    accent: String,
    /// Whom a reader writes to: `reply_to`, else the sender.
    contact: String,
}

/// What one unsubscribe page shows.
#[derive(Debug, Default, Serialize)]
pub struct UnsubscribeView<'a> {
    /// The address, partly masked (`a****@example.org`): a reader with two knows which.
    pub address: &'a str,
    /// The URLs the buttons post to.
    pub unsubscribe: &'a str,
    pub resubscribe: &'a str,
}

#[derive(Serialize)]
struct UnsubscribePage<'a> {
    state: UnsubscribeState,
    title: &'a str,
    accent: &'a str,
    contact: &'a str,
    #[serde(flatten)]
    view: UnsubscribeView<'a>,
}

#[derive(Serialize)]
struct IndexView<'a> {
    title: &'a str,
    accent: &'a str,
    /// None without `archive.url`: no feed then.
    feed: Option<&'a str>,
    issues: &'a [Entry],
}

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

impl Pages {
    pub fn load(config: &Config) -> Result<Pages> {
        let layout = Layout::load(None, &config.layouts)?;
        let mut hbs = Handlebars::new();
        hbs.set_strict_mode(true);
        hbs.register_escape_fn(crate::html::escape);
        let mut version = sha2::Sha256::new();
        for (name, source) in layout.pages() {
            hbs.register_template_string(name, source)
                .with_context(|| format!("the layout's {name} does not parse"))?;
            if name == "subscribe.html.hbs" {
                version.update(source);
            }
        }
        let version = version.finalize()[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Pages {
            hbs,
            version,
            title: config.archive.title.clone(),
            accent: layout.registry.accent.clone(),
            contact: config.reply_to.clone().unwrap_or_else(|| config.from.address.clone()),
            layout,
        })
    }

    pub fn unsubscribe(&self, state: UnsubscribeState, view: UnsubscribeView<'_>) -> String {
        let page = UnsubscribePage {
            state,
            title: &self.title,
            accent: &self.accent,
            contact: &self.contact,
            view,
        };
        self.hbs
            .render("unsubscribe.html.hbs", &page)
            .unwrap_or_else(|e| format!("<p>{}</p>", escape(&e.to_string())))
    }

    /// A page of sign-up or the preference centre.
    pub fn subscribe(&self, view: &super::subscribe::View<'_>) -> String {
        #[derive(Serialize)]
        struct Page<'a> {
            title: &'a str,
            accent: &'a str,
            contact: &'a str,
            #[serde(flatten)]
            view: &'a super::subscribe::View<'a>,
        }
        let page = Page {
            title: &self.title,
            accent: &self.accent,
            contact: &self.contact,
            view,
        };
        self.hbs
            .render("subscribe.html.hbs", &page)
            .unwrap_or_else(|e| format!("<p>{}</p>", escape(&e.to_string())))
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn registry(&self) -> &crate::layout::Registry {
        &self.layout.registry
    }

    pub fn projects(&self) -> &[crate::layout::Project] {
        &self.layout.registry.projects
    }

    /// The sign-up page's version (a hash of its template), kept with consent records.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn index(&self, entries: &[Entry], with_feed: bool) -> Result<String> {
        let view = IndexView {
            title: &self.title,
            accent: &self.accent,
            feed: with_feed.then_some("feed.xml"),
            issues: entries,
        };
        Ok(self.hbs.render("archive.html.hbs", &view)?)
    }
}

/// The archive's path on this server: that of `archive.url`, else `/archive`.
pub fn base_path(config: &Config) -> String {
    match &config.archive.url {
        Some(url) => super::path_of(url),
        None => "/archive".to_owned(),
    }
    .trim_end_matches('/')
    .to_owned()
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
fn absolute_base(config: &Config) -> Option<String> {
    config
        .archive
        .url
        .as_ref()
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// Why there is no feed.
const NO_FEED: &str = "the Atom feed needs archive.url (the archive's absolute URL, such as https://openinfra.dev/newsletter/archive): Atom requires absolute ids";

/// `newsletter archive --out DIR`: index.html, ISSUE/index.html and feed.xml. Returns the
/// number of issues written.
pub fn export(config: &Config, dir: &Path) -> Result<usize> {
    let mut ledger = Ledger::open(&config.ledger)?;
    backfill(config, &mut ledger)?;
    let pages = Pages::load(config)?;
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
    write(dir.join("index.html"), &pages.index(&list, base.is_some())?)?;
    match base {
        Some(base) => write(dir.join("feed.xml"), &feed(config, &list, &base))?,
        None => eprintln!("warning: no feed.xml written: {NO_FEED}"),
    }
    Ok(list.len())
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Archive work reads through the archive's own connection: the ledger's lock, which
/// one-click unsubscribes need, is never held for it.
async fn read<T: Send + 'static>(
    app: &Arc<App>,
    work: impl FnOnce(&Ledger) -> Result<T> + Send + 'static,
) -> Result<T> {
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || work(&app.archive()))
        .await
        .context("the archive task stopped")?
}

fn failed(e: anyhow::Error) -> Response {
    tracing::error!("archive: {e:#}");
    super::page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The archive cannot be shown right now.".into(),
    )
}

pub async fn index(State(app): State<Arc<App>>) -> Response {
    match read(&app, entries).await {
        Ok(list) => match app.pages.index(&list, absolute_base(&app.config).is_some()) {
            Ok(body) => html(body),
            Err(e) => failed(e),
        },
        Err(e) => failed(e),
    }
}

pub async fn issue(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> Response {
    // The name is only ever a key of the ledger's archive, never a path.
    match read(&app, move |ledger| ledger.archive_page(&name)).await {
        Ok(Some(page)) => html(page),
        Ok(None) => super::page(StatusCode::NOT_FOUND, "No such issue in the archive.".into()),
        Err(e) => failed(e),
    }
}

pub async fn feed_xml(State(app): State<Arc<App>>) -> Response {
    let Some(base) = absolute_base(&app.config) else {
        return super::page(StatusCode::NOT_FOUND, format!("No feed: {NO_FEED}."));
    };
    match read(&app, entries).await {
        Ok(list) => (
            [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
            feed(&app.config, &list, &base),
        )
            .into_response(),
        Err(e) => failed(e),
    }
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
