//! Sections -> the layout's MJML -> HTML (mrml) and the plain-text part, once per issue.

use std::path::Path;

use anyhow::{Result, anyhow};
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::choice::Choice;
use crate::config::Config;
use crate::diagnostic::{Kind, Warning};
use crate::issue::Issue;
use crate::layout::{Layout, Mjml, Project, Registry};
use crate::markdown::Content;
use crate::sections::{Section, Sections};

/// Gmail clips messages whose HTML exceeds about 102 KB, hiding the footer and its
/// unsubscribe link.
pub const GMAIL_CLIP_BYTES: usize = 102 * 1024;

/// An issue rendered once: templates for the subject, HTML and text, in which only
/// per-recipient values (`{{first_name}}`, `{{unsubscribe_url}}`) remain to be filled.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub slug: String,
    pub subject: String,
    pub preheader: Option<String>,
    pub web_url: Option<String>,
    pub send_at: Option<DateTime<FixedOffset>>,
    pub mjml: String,
    pub html: String,
    pub text: String,
    pub sections: Vec<SectionSummary>,
    pub warnings: Vec<Warning>,
}

impl Rendered {
    /// Names what readers get (subject, HTML, text): a send resumed after the file changed
    /// would give the rest of the list another text.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(&self.subject)
            .chain_update([0])
            .chain_update(&self.html)
            .chain_update([0])
            .chain_update(&self.text)
            .finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What `preview` prints about a section.
#[derive(Debug, Clone, Serialize)]
pub struct SectionSummary {
    pub title: String,
    /// `lead`, `project` or `section`.
    pub kind: &'static str,
    pub project: Option<String>,
    pub tagline: Option<String>,
    pub line: Option<usize>,
    pub items: usize,
    pub links: usize,
    pub images: usize,
}

/// The data the layout templates see.
#[derive(Serialize)]
struct View<'a> {
    subject: &'a str,
    preheader: Option<&'a str>,
    title: Option<&'a str>,
    /// The newsletter's name (`archive.title`), for the header and footer.
    newsletter: &'a str,
    web_url: Option<&'a str>,
    issue_date: Option<String>,
    accent: &'a str,
    lead: Option<LeadView<'a>>,
    sections: Vec<SectionView<'a>>,
    /// The projects whose sections this edition leaves out, with links to them on the web.
    elsewhere: Vec<Elsewhere<'a>>,
    footer: Footer<'a>,
    /// The archive's web page of the issue rather than the email: no "View in browser", a
    /// footer for the web.
    web: Option<&'a WebPage>,
    /// Per-recipient values are written back as placeholders, filled by `personalize`.
    unsubscribe_url: &'static str,
    preferences_url: &'static str,
    email: &'static str,
}

/// What the archive's page of an issue links to instead of a reader's links.
#[derive(Debug, Clone, Serialize)]
pub struct WebPage {
    /// The sign-up form.
    pub subscribe_url: String,
    /// The archive's Atom feed, when there is one.
    pub feed_url: Option<String>,
}

#[derive(Serialize)]
struct Elsewhere<'a> {
    title: &'a str,
    /// The section in the web archive (`.../2025-07/#kata-containers`), when there is one.
    url: Option<String>,
}

#[derive(Serialize)]
struct LeadView<'a> {
    accent: &'a str,
    content: &'a Content,
}

#[derive(Serialize)]
struct SectionView<'a> {
    title: &'a str,
    tagline: Option<&'a str>,
    project: Option<&'a Project>,
    accent: &'a str,
    /// A rule as long as the heading, for the text part.
    rule: String,
    content: &'a Content,
}

#[derive(Serialize)]
struct Footer<'a> {
    sender: &'a str,
    address: &'a str,
}

/// An issue's sections styled by its layout once, from which each edition (the whole issue,
/// or one choice of projects) is compiled.
pub struct Editions<'a> {
    issue: &'a Issue,
    sections: &'a Sections,
    layout: &'a Layout,
    config: &'a Config,
    lead: Option<Content>,
    contents: Vec<Content>,
    warnings: Vec<Warning>,
}

impl<'a> Editions<'a> {
    pub fn new(
        issue: &'a Issue,
        sections: &'a Sections,
        layout: &'a Layout,
        config: &'a Config,
        warnings: Vec<Warning>,
    ) -> Result<Editions<'a>> {
        Ok(Editions {
            lead: sections.lead.as_ref().map(|c| layout.style(c)).transpose()?,
            contents: sections
                .sections
                .iter()
                .map(|s| layout.style(&s.content))
                .collect::<Result<Vec<_>>>()?,
            issue,
            sections,
            layout,
            config,
            warnings,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.layout.registry
    }

    /// The issue as readers who made `choice` get it. The whole issue carries the warnings;
    /// an edition adds none of its own.
    pub fn compile(&self, choice: &Choice) -> Result<Rendered> {
        self.compile_as(choice, None)
    }

    /// The whole issue as the archive's web page.
    pub fn compile_for_web(&self, web: &WebPage) -> Result<Rendered> {
        self.compile_as(&Choice::Everything, Some(web))
    }

    fn compile_as(&self, choice: &Choice, web: Option<&WebPage>) -> Result<Rendered> {
        let (issue, config) = (self.issue, self.config);
        let mut warnings = if *choice == Choice::Everything {
            self.warnings.clone()
        } else {
            Vec::new()
        };
        let subject = issue.subject().unwrap_or_default();
        // The archive's page of the issue when there is an archive, else the website's post.
        let web_url = match &config.archive.url {
            Some(base) => Some(format!("{}/{}/", base.trim_end_matches('/'), issue.slug)),
            None => issue.web_url().map(str::to_owned),
        }
        .filter(|_| web.is_none());
        let accent = self.layout.registry.accent.as_str();
        let chosen = |s: &Section| choice.includes(s.project.as_ref().map(|p| p.id.as_str()));
        let view = View {
            subject,
            preheader: issue.preheader(),
            title: issue.front.title.as_deref(),
            newsletter: &config.archive.title,
            web_url: web_url.as_deref(),
            issue_date: issue.front.date.map(|d| d.format("%B %Y").to_string()),
            accent,
            lead: self.lead.as_ref().map(|content| LeadView { accent, content }),
            sections: self
                .sections
                .sections
                .iter()
                .zip(&self.contents)
                .filter(|(s, _)| chosen(s))
                .map(|(s, content)| {
                    let heading = match &s.tagline {
                        Some(t) => format!("{}: {t}", s.title),
                        None => s.title.clone(),
                    };
                    SectionView {
                        title: &s.title,
                        tagline: s.tagline.as_deref(),
                        project: s.project.as_ref(),
                        accent: s.project.as_ref().map_or(accent, |p| p.color.as_str()),
                        rule: "=".repeat(heading.chars().count().min(crate::markdown::TEXT_WIDTH)),
                        content,
                    }
                })
                .collect(),
            elsewhere: self
                .sections
                .sections
                .iter()
                .filter(|s| !chosen(s))
                .filter_map(|s| s.project.as_ref())
                .map(|p| Elsewhere {
                    title: &p.name,
                    url: web_url.as_ref().map(|w| format!("{w}#{}", p.id)),
                })
                .collect(),
            footer: Footer {
                sender: &config.from.name,
                address: &config.address,
            },
            web,
            unsubscribe_url: "{{unsubscribe_url}}",
            preferences_url: "{{preferences_url}}",
            email: "{{email}}",
        };
        let mjml = self.layout.render_mjml(&view)?;
        let html = mjml_to_html(&mjml, &self.layout.origin, &mut warnings)?;
        let html = if web.is_some() { in_main(html) } else { html };
        let text = tidy_text(&self.layout.render_text(&view)?);

        if *choice == Choice::Everything {
            if issue.preheader().is_none() {
                warnings.push(Warning::new(
                    Kind::MissingPreheader,
                    &issue.path,
                    Some(1),
                    "no preheader: inboxes will show the first words of the email instead; add `preheader:` or `seo.description`".into(),
                ));
            }
            let projects = self.sections.sections.iter().filter(|s| s.project.is_some()).count();
            if web_url.is_none() && web.is_none() && projects > 0 {
                warnings.push(Warning::new(
                    Kind::UnlinkedElsewhere,
                    &issue.path,
                    None,
                    "readers who chose some projects get \"Also in this issue\" with the sections they left out, but without archive.url or the issue's seo.url those name the sections with no link to read them: set archive.url".into(),
                ));
            }
            if html.len() > GMAIL_CLIP_BYTES {
                warnings.push(Warning::new(
                    Kind::HtmlTooLarge,
                    &issue.path,
                    None,
                    format!(
                        "the HTML is {:.1} KB: Gmail clips messages over 102 KB, hiding the footer and its unsubscribe link",
                        html.len() as f64 / 1024.0
                    ),
                ));
            }
        }
        Ok(Rendered {
            slug: issue.slug.clone(),
            subject: subject.to_owned(),
            preheader: issue.preheader().map(str::to_owned),
            web_url: web_url.clone(),
            send_at: issue.front.send_at,
            html,
            text,
            sections: summaries(self.sections),
            mjml: mjml.source,
            warnings,
        })
    }
}

fn mjml_to_html(mjml: &Mjml, origin: &Path, warnings: &mut Vec<Warning>) -> Result<String> {
    let parsed = mrml::parse(&mjml.source).map_err(|e| {
        let offset = error_offset(&e, &mjml.source);
        let template = offset
            .and_then(|o| mjml.template_at(o))
            .map_or_else(|| origin.join("email.mjml.hbs").display().to_string(), str::to_owned);
        let near = offset
            .map(|o| format!(" near `{}`", snippet(&mjml.source, o)))
            .unwrap_or_default();
        anyhow!("{template}: invalid MJML: {e}{near}; fix the template")
    })?;
    for w in &parsed.warnings {
        let template = mjml.template_at(w.span.start).unwrap_or("email.mjml.hbs");
        warnings.push(Warning::new(
            Kind::MjmlWarning,
            template,
            None,
            format!("MJML: {} near `{}`", w.kind, snippet(&mjml.source, w.span.start)),
        ));
    }
    let options = mrml::prelude::render::RenderOptions {
        disable_comments: true,
        ..Default::default()
    };
    let html = parsed
        .element
        .render(&options)
        .map_err(|e| anyhow!("{}: cannot render the MJML: {e}", origin.display()))?;
    // mrml hides the preheader with white text as well as display:none: white on our light
    // body is what SpamAssassin's HTML_FONT_LOW_CONTRAST scores on every issue. Hidden it
    // stays (display, opacity, size), in the body's own colour.
    let html = html.replacen(
        "<div style=\"display:none;font-size:1px;color:#ffffff;line-height:1px;",
        "<div style=\"display:none;font-size:1px;line-height:1px;",
        1,
    );
    Ok(html)
}

/// A web page's content in its `main` landmark (an email has none: it is not a page).
fn in_main(html: String) -> String {
    let (Some(body), Some(end)) = (html.find("<body"), html.rfind("</body>")) else {
        return html;
    };
    let Some(open_end) = html[body..].find('>').map(|i| body + i + 1) else {
        return html;
    };
    format!(
        "{}<main>{}</main>{}",
        &html[..open_end],
        &html[open_end..end],
        &html[end..]
    )
}

fn error_offset(e: &mrml::prelude::parser::Error, source: &str) -> Option<usize> {
    use mrml::prelude::parser::Error as E;
    match e {
        E::ParserError { source: html_error, .. } => {
            // The tokenizer reports a 1-based row and column.
            let pos = html_error.pos();
            let line_start: usize = source
                .split_inclusive('\n')
                .take(pos.row.saturating_sub(1) as usize)
                .map(str::len)
                .sum();
            let column: usize = source[line_start..]
                .chars()
                .take(pos.col.saturating_sub(1) as usize)
                .map(char::len_utf8)
                .sum();
            Some(line_start + column)
        }
        E::UnexpectedElement { position, .. }
        | E::UnexpectedToken { position, .. }
        | E::MissingAttribute { position, .. }
        | E::InvalidAttribute { position, .. }
        | E::InvalidFormat { position, .. }
        | E::IncludeLoaderError { position, .. } => Some(position.start),
        _ => None,
    }
}

fn snippet(source: &str, offset: usize) -> String {
    let mut start = offset.min(source.len());
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    source[start..]
        .chars()
        .take(60)
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Collapses the blank lines Handlebars leaves around blocks and strips trailing spaces.
fn tidy_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn summaries(sections: &Sections) -> Vec<SectionSummary> {
    let lead = sections.lead.iter().map(|c| SectionSummary {
        title: "(lead)".into(),
        kind: "lead",
        project: None,
        tagline: None,
        line: None,
        items: c.items,
        links: c.links.len(),
        images: c.images.len(),
    });
    let rest = sections.sections.iter().map(|s| SectionSummary {
        title: s.title.clone(),
        kind: if s.project.is_some() { "project" } else { "section" },
        project: s.project.as_ref().map(|p| p.id.clone()),
        tagline: s.tagline.clone(),
        line: Some(s.line),
        items: s.content.items,
        links: s.content.links.len(),
        images: s.content.images.len(),
    });
    lead.chain(rest).collect()
}
