//! The pages `serve` draws from the layout's templates (unsubscribe, sign-up and the
//! preference centre, the archive's index), parsed once, the views they are given, and how a
//! page is sent.

use anyhow::{Context, Result};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use handlebars::Handlebars;
use serde::Serialize;
use sha2::Digest;

use crate::archive::Entry;
use crate::config::Config;
use crate::html::escape;
use crate::layout::Layout;

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
    pub fn subscribe(&self, view: &SubscribeView<'_>) -> String {
        #[derive(Serialize)]
        struct Page<'a> {
            title: &'a str,
            accent: &'a str,
            contact: &'a str,
            #[serde(flatten)]
            view: &'a SubscribeView<'a>,
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

    pub fn index(&self, entries: &[Entry], with_feed: bool) -> Result<String> {
        let view = IndexView {
            title: &self.title,
            accent: &self.accent,
            feed: with_feed.then_some("feed.xml"),
            issues: entries,
        };
        Ok(self.hbs.render("archive.html.hbs", &view)?)
    }
}

/// What a page of sign-up or the preference centre shows; every field is always there (the templates are strict).
#[derive(Debug, Default, Serialize)]
pub struct SubscribeView<'a> {
    pub state: &'a str,
    pub message: Option<String>,
    pub action: String,
    pub form: &'a str,
    pub consent: &'a str,
    pub honeypot: &'a str,
    pub max: usize,
    pub token: String,
    pub address: String,
    pub everything: bool,
    pub projects: Vec<ProjectBox<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ProjectBox<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub checked: bool,
}

/// A plain page for the answers that need no layout.
pub fn plain_page(status: StatusCode, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{0}</title><p>{0}</p></html>",
        escape(text)
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// A page about a reader: it holds a token, so caches and Referer headers never see it.
pub fn private_page(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}
