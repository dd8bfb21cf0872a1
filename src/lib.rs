//! `newsletter`: compose an issue from Markdown, check it, and deliver it exactly once.
//!
//! The data flow, one module per step:
//! [`issue`] (load) -> [`sections`] and [`markdown`] (split, convert) -> [`layout`] (render
//! MJML) -> [`compile`] (HTML and text) -> [`personalize`] (per recipient, from
//! [`recipients`]) -> [`send`] (one send: plan, make, record) -> [`deliver`] (the engine, through
//! [`transport`]'s ways out) -> [`ledger`].
//!
//! The layers, lowest first ([`LAYERS`]): a module uses only modules listed before it, so the
//! imports run down and nothing is in a circle (a test reads `src/` and keeps it so). The
//! binary's `main.rs`, `cli.rs` and `commands/` sit above them all.

pub mod address;
pub mod archive;
pub mod bounces;
pub mod check;
pub mod choice;
pub mod clicks;
pub mod clock;
pub mod compile;
pub mod config;
pub mod deliver;
pub mod diagnostic;
pub mod dkim;
pub mod dmarc;
pub mod dns;
pub mod doctor;
pub mod html;
pub mod human;
pub mod init;
pub mod issue;
pub mod layout;
pub mod ledger;
pub mod logging;
pub mod mailbox;
pub mod markdown;
pub mod net;
pub mod personalize;
pub mod preview;
pub mod private;
pub mod readers;
pub mod recipients;
pub mod report;
pub mod retention;
pub mod schedule;
pub mod sections;
pub mod send;
pub mod status;
pub mod suggest;
pub mod transport;
pub mod unsubscribe;
pub mod web;

/// The layer order, lowest first: foundations, configuration, the ledger and readers, the
/// composition of an issue, the ways out, and the use cases (bounces, a send, the service).
pub const LAYERS: &[&str] = &[
    "address",
    "human",
    "html",
    "suggest",
    "diagnostic",
    "private",
    "logging",
    "clock",
    "config",
    "net",
    "dns",
    "unsubscribe",
    "ledger",
    "retention",
    "recipients",
    "readers",
    "issue",
    "markdown",
    "layout",
    "init",
    "choice",
    "sections",
    "compile",
    "clicks",
    "dkim",
    "personalize",
    "preview",
    "check",
    "archive",
    "transport",
    "mailbox",
    "dmarc",
    "bounces",
    "deliver",
    "send",
    "schedule",
    "status",
    "doctor",
    "report",
    "web",
];

#[cfg(test)]
mod layers;

use anyhow::Result;

use crate::compile::Rendered;
use crate::config::Config;
use crate::issue::Issue;
use crate::layout::Layout;
use crate::sections::Sections;

/// Renders an issue once: layout, sections, MJML, HTML and text.
pub fn compose(issue: &Issue, config: &Config) -> Result<Rendered> {
    compose_with_sections(issue, config).map(|(_, rendered)| rendered)
}

/// [`compose`], also returning the sections, whose links `check` visits.
pub fn compose_with_sections(issue: &Issue, config: &Config) -> Result<(Sections, Rendered)> {
    let prepared = prepare(issue, config)?;
    let rendered = prepared.editions(issue, config)?.compile(&choice::Choice::Everything)?;
    Ok((prepared.sections, rendered))
}

/// An issue's layout and sections, loaded and split once for every edition of it.
pub struct Prepared {
    pub layout: Layout,
    pub sections: Sections,
    warnings: Vec<diagnostic::Warning>,
}

pub fn prepare(issue: &Issue, config: &Config) -> Result<Prepared> {
    let layout = Layout::load(issue.front.layout.as_deref(), &config.layouts)?;
    let mut warnings = issue.warnings.clone();
    warnings.extend(layout.warnings.iter().cloned());
    let origin = config.site_origin.clone().or_else(|| issue.site_origin());
    let sections = sections::split(issue, &layout.registry, origin.as_deref(), &mut warnings);
    Ok(Prepared {
        layout,
        sections,
        warnings,
    })
}

impl Prepared {
    pub fn editions<'a>(&'a self, issue: &'a Issue, config: &'a Config) -> Result<compile::Editions<'a>> {
        compile::Editions::new(issue, &self.sections, &self.layout, config, self.warnings.clone())
    }
}

/// The runtime every async part runs on: one thread (delivery drives all its connections from
/// it; the producer personalizes on another).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}
