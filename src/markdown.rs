//! Markdown events of one section -> email-safe HTML blocks and a plain-text rendering.
//!
//! The HTML carries no styles: the layout's `<mj-style inline="inline">` styles it and mrml
//! inlines that CSS, so the look stays in the layout folder.

use std::ops::Range;
use std::path::Path;

use pulldown_cmark::{Event, HeadingLevel, Tag, TagEnd};
use serde::Serialize;

use crate::diagnostic::{Kind, LineIndex, Warning};

/// Text width of the plain-text part; long words (URLs) are never broken.
pub const TEXT_WIDTH: usize = 72;

/// A piece of a section as the layout places it: running HTML, a full-width image, a button.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Block {
    Html {
        html: String,
    },
    Image {
        src: String,
        alt: String,
        title: Option<String>,
        href: Option<String>,
    },
    Button {
        text: String,
        href: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub text: String,
    pub url: String,
    pub line: usize,
}

/// A section's content, rendered once per issue.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Content {
    pub blocks: Vec<Block>,
    pub text: String,
    /// News items: top-level paragraphs and list items, and tables.
    pub items: usize,
    pub links: Vec<Link>,
    pub images: Vec<Link>,
}

/// What conversion needs to know about the file it came from.
pub struct Source<'a> {
    pub file: &'a Path,
    pub lines: &'a LineIndex,
    /// `https://host` against which `/img/...` resolves.
    pub origin: Option<&'a str>,
}

pub type Spanned<'a> = (Event<'a>, Range<usize>);

pub fn convert(events: &[Spanned<'_>], src: &Source<'_>, warnings: &mut Vec<Warning>) -> Content {
    let mut c = Converter {
        src,
        warnings,
        out: Content::default(),
        html: String::new(),
        text: String::new(),
        inline: String::new(),
        raw: String::new(),
        raw_start: None,
        containers: Vec::new(),
        links: Vec::new(),
        image: None,
        row: Vec::new(),
        skip_tag: None,
    };
    let mut i = 0;
    while i < events.len() {
        if matches!(events[i].0, Event::Start(Tag::Paragraph)) && c.containers.is_empty() {
            let end = matching_end(events, i);
            if c.special_paragraph(&events[i + 1..end]) {
                i = end + 1;
                continue;
            }
        }
        c.event(&events[i]);
        i += 1;
    }
    c.finish()
}

fn matching_end(events: &[Spanned<'_>], start: usize) -> usize {
    let mut depth = 0usize;
    for (j, (ev, _)) in events.iter().enumerate().skip(start) {
        match ev {
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    events.len() - 1
}

enum Container {
    List(Option<u64>),
    /// `loose`: its content is paragraphs (a blank line in the source), set apart in the text.
    Item {
        marker: String,
        first: bool,
        loose: bool,
    },
    Quote,
}

struct LinkState {
    href: String,
    html_mark: usize,
    inline_mark: usize,
    text: String,
    has_image: bool,
    line: usize,
}

struct ImageState {
    src: String,
    title: String,
    alt: String,
    line: usize,
}

struct Converter<'s, 'w> {
    src: &'s Source<'s>,
    warnings: &'w mut Vec<Warning>,
    out: Content,
    /// HTML not yet closed into a block.
    html: String,
    text: String,
    /// Plain text of the current leaf block, wrapped when the block ends.
    inline: String,
    /// Literal text of the current leaf block, to spot Markdown that did not parse.
    raw: String,
    raw_start: Option<usize>,
    containers: Vec<Container>,
    links: Vec<LinkState>,
    image: Option<ImageState>,
    row: Vec<String>,
    /// Inside a raw `<script>` or `<style>` element being dropped.
    skip_tag: Option<&'static str>,
}

impl Converter<'_, '_> {
    fn line(&self, range: &Range<usize>) -> usize {
        self.src.lines.line(range.start)
    }

    fn warn(&mut self, kind: Kind, line: usize, message: String) {
        self.warnings
            .push(Warning::new(kind, self.src.file, Some(line), message));
    }

    /// A top-level paragraph that is only an image (maybe linked) or only a call-to-action
    /// link becomes a block of its own.
    fn special_paragraph(&mut self, inner: &[Spanned<'_>]) -> bool {
        let significant: Vec<&Spanned<'_>> = inner
            .iter()
            .filter(|(ev, _)| match ev {
                Event::Text(t) => !t.trim().is_empty(),
                Event::SoftBreak | Event::HardBreak => false,
                _ => true,
            })
            .collect();
        let (first, last) = match (significant.first(), significant.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return false,
        };
        match (&first.0, &last.0) {
            (Event::Start(Tag::Link { dest_url, .. }), Event::End(TagEnd::Link)) => {
                let body = &significant[1..significant.len() - 1];
                if let [
                    (
                        Event::Start(Tag::Image {
                            dest_url: src, title, ..
                        }),
                        range,
                    ),
                    alt @ ..,
                    (Event::End(TagEnd::Image), _),
                ] = body
                    && alt.iter().all(|(ev, _)| is_inline_text(ev))
                {
                    let href = self.resolve(dest_url, range);
                    self.image_block(src, title, &plain(alt.iter().copied()), Some(href), range);
                    return true;
                }
                if !body.iter().all(|(ev, _)| is_inline_text(ev)) {
                    return false;
                }
                let text = plain(body.iter().copied());
                if !is_call_to_action(&text) {
                    return false;
                }
                let href = self.resolve(dest_url, &first.1);
                self.flush_html();
                self.out.links.push(Link {
                    text: text.clone(),
                    url: href.clone(),
                    line: self.line(&first.1),
                });
                self.push_text_block(&format!("{text} ({href})"), "", "");
                self.out.blocks.push(Block::Button { text, href });
                true
            }
            (Event::Start(Tag::Image { dest_url, title, .. }), Event::End(TagEnd::Image))
                if significant[1..significant.len() - 1]
                    .iter()
                    .all(|(ev, _)| is_inline_text(ev)) =>
            {
                let alt = plain(significant[1..significant.len() - 1].iter().copied());
                self.image_block(dest_url, title, &alt, None, &first.1);
                true
            }
            _ => false,
        }
    }

    fn image_block(&mut self, src: &str, title: &str, alt: &str, href: Option<String>, range: &Range<usize>) {
        let line = self.line(range);
        let src = self.resolve(src, range);
        let alt = self.image_alt(alt, title, &src, line);
        self.out.images.push(Link {
            text: alt.clone(),
            url: src.clone(),
            line,
        });
        if let Some(href) = &href {
            self.out.links.push(Link {
                text: alt.clone(),
                url: href.clone(),
                line,
            });
        }
        self.flush_html();
        if !alt.is_empty() {
            let text = match &href {
                Some(h) => format!("[{alt}] ({h})"),
                None => format!("[{alt}]"),
            };
            self.push_text_block(&text, "", "");
        }
        self.out.blocks.push(Block::Image {
            src,
            alt,
            title: (!title.is_empty()).then(|| title.to_owned()),
            href,
        });
    }

    /// Alt text from the alt, else the title; a missing one is a warning (screen readers and
    /// clients that block images show nothing).
    fn image_alt(&mut self, alt: &str, title: &str, src: &str, line: usize) -> String {
        let alt = if alt.trim().is_empty() {
            title.trim()
        } else {
            alt.trim()
        };
        if alt.is_empty() {
            self.warn(
                Kind::ImageWithoutAlt,
                line,
                format!("image {src} has no alt text: write it as ![description](...)"),
            );
        }
        alt.to_owned()
    }

    /// Resolves a link or image target (site-relative paths against the site origin) into the
    /// URL that is sent: percent-encoded (RFC 3986), the host in ASCII.
    fn resolve(&mut self, url: &str, range: &Range<usize>) -> String {
        let resolved = self.resolve_raw(url, range);
        encode_url(&resolved)
    }

    fn resolve_raw(&mut self, url: &str, range: &Range<usize>) -> String {
        let line = self.line(range);
        let url = url.trim();
        if url.starts_with("{{") {
            return url.to_owned(); // a personalization placeholder such as {{unsubscribe_url}}
        }
        if let Some(rest) = url.strip_prefix("//") {
            return format!("https://{rest}");
        }
        if has_scheme(url) {
            if let Some(why) = mailto_problem(url) {
                self.warn(
                    Kind::InvalidMailto,
                    line,
                    format!("link {url} is not a valid mailto: link: {why}"),
                );
            }
            if url.len() >= 7 && url[..7].eq_ignore_ascii_case("http://") {
                self.warn(
                    Kind::InsecureLink,
                    line,
                    format!("link {url} uses http://: use https:// if the site supports it"),
                );
            }
            return url.to_owned();
        }
        if let (true, Some(origin)) = (url.starts_with('/'), self.src.origin) {
            return format!("{origin}{url}");
        }
        self.warn(
            Kind::UnresolvedLink,
            line,
            format!("relative link `{url}` cannot be resolved in an email: use a full https:// URL or set seo.url (or site_origin in newsletter.yaml)"),
        );
        url.to_owned()
    }

    fn event(&mut self, (event, range): &Spanned<'_>) {
        if let Some(img) = &mut self.image {
            match event {
                Event::End(TagEnd::Image) => {
                    let img = self.image.take().expect("image state checked above");
                    let alt = self.image_alt(&img.alt, &img.title, &img.src, img.line);
                    self.out.images.push(Link {
                        text: alt.clone(),
                        url: img.src.clone(),
                        line: img.line,
                    });
                    self.html.push_str("<img src=\"");
                    escape_into(&img.src, &mut self.html);
                    self.html.push_str("\" alt=\"");
                    escape_into(&alt, &mut self.html);
                    self.html.push_str("\" />");
                    if let Some(link) = self.links.last_mut() {
                        link.has_image = true;
                        link.text.push_str(&alt);
                    }
                    if !alt.is_empty() {
                        self.inline.push_str(&format!("[{alt}]"));
                    }
                }
                Event::Text(t) | Event::Code(t) => img.alt.push_str(t),
                _ => {}
            }
            return;
        }
        // The content of a raw <script> or <style> element being dropped.
        if self.skip_tag.is_some() && !matches!(event, Event::Html(_) | Event::InlineHtml(_)) {
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag, range),
            Event::End(tag) => self.end(*tag, range),
            Event::Text(t) => {
                self.raw_text(t, range);
                escape_into(t, &mut self.html);
                self.inline_text(t);
            }
            Event::Code(t) => {
                self.html.push_str("<code>");
                escape_into(t, &mut self.html);
                self.html.push_str("</code>");
                self.inline_text(t);
            }
            Event::Html(h) | Event::InlineHtml(h) => self.raw_html(h, range),
            Event::SoftBreak => {
                self.html.push('\n');
                self.inline.push(' ');
                self.raw.push(' ');
            }
            Event::HardBreak => {
                self.html.push_str("<br />\n");
                self.inline.push('\n');
            }
            Event::Rule => {
                self.html.push_str("<hr />\n");
                self.push_text_block(&"-".repeat(24), "", "");
            }
            Event::FootnoteReference(name) => {
                escape_into(&format!("[{name}]"), &mut self.html);
                self.inline_text(&format!("[{name}]"));
            }
            Event::TaskListMarker(done) => {
                let mark = if *done { "[x] " } else { "[ ] " };
                self.html.push_str(mark);
                self.inline.push_str(mark);
            }
            Event::InlineMath(t) | Event::DisplayMath(t) => {
                escape_into(t, &mut self.html);
                self.inline_text(t);
            }
        }
    }

    fn inline_text(&mut self, t: &str) {
        self.inline.push_str(t);
        if let Some(link) = self.links.last_mut() {
            link.text.push_str(t);
        }
    }

    fn raw_text(&mut self, t: &str, range: &Range<usize>) {
        self.raw_start.get_or_insert(range.start);
        self.raw.push_str(t);
    }

    fn start(&mut self, tag: &Tag<'_>, range: &Range<usize>) {
        match tag {
            Tag::Paragraph => {
                self.count_item();
                self.html.push_str("<p>");
            }
            Tag::Heading { level, .. } => {
                // `#` opens sections, so headings here are `##` and deeper.
                self.html.push_str(&format!("<{}>", heading_tag(*level)));
            }
            Tag::BlockQuote(_) => {
                self.html.push_str("<blockquote>\n");
                self.containers.push(Container::Quote);
            }
            Tag::CodeBlock(_) => self.html.push_str("<pre><code>"),
            Tag::List(start) => {
                // In a tight item, the item's own text comes before its nested list.
                self.end_leaf();
                match start {
                    Some(n) if *n != 1 => self.html.push_str(&format!("<ol start=\"{n}\">\n")),
                    Some(_) => self.html.push_str("<ol>\n"),
                    None => self.html.push_str("<ul>\n"),
                }
                self.containers.push(Container::List(*start));
            }
            Tag::Item => {
                if self.list_depth() == 1 {
                    self.out.items += 1;
                }
                self.html.push_str("<li>");
                let marker = match self.containers.last_mut() {
                    Some(Container::List(Some(n))) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "* ".to_owned(),
                };
                self.containers.push(Container::Item {
                    marker,
                    first: true,
                    loose: false,
                });
            }
            Tag::Table(_) => {
                self.count_item();
                self.html.push_str("<table class=\"md-table\">\n");
            }
            Tag::TableHead => self.html.push_str("<thead><tr>"),
            Tag::TableRow => self.html.push_str("<tr>"),
            Tag::TableCell => {
                self.html.push_str(if self.in_table_head() { "<th>" } else { "<td>" });
            }
            Tag::Emphasis => self.html.push_str("<em>"),
            Tag::Strong => self.html.push_str("<strong>"),
            Tag::Strikethrough => self.html.push_str("<del>"),
            Tag::Superscript => self.html.push_str("<sup>"),
            Tag::Subscript => self.html.push_str("<sub>"),
            Tag::Link { dest_url, .. } => {
                let href = self.resolve(dest_url, range);
                let html_mark = self.html.len();
                self.html.push_str("<a href=\"");
                escape_into(&href, &mut self.html);
                self.html.push_str("\">");
                self.links.push(LinkState {
                    href,
                    html_mark,
                    inline_mark: self.inline.len(),
                    text: String::new(),
                    has_image: false,
                    line: self.line(range),
                });
            }
            Tag::Image { dest_url, title, .. } => {
                let line = self.line(range);
                let src = self.resolve(dest_url, range);
                self.image = Some(ImageState {
                    src,
                    title: title.to_string(),
                    alt: String::new(),
                    line,
                });
            }
            Tag::HtmlBlock | Tag::FootnoteDefinition(_) | Tag::MetadataBlock(_) => {}
            Tag::DefinitionList | Tag::DefinitionListTitle | Tag::DefinitionListDefinition => {}
        }
    }

    fn end(&mut self, tag: TagEnd, range: &Range<usize>) {
        match tag {
            TagEnd::Paragraph => {
                self.html.push_str("</p>\n");
                self.end_leaf();
                // A paragraph in a (loose) list item is set apart like any other paragraph.
                if let Some(Container::Item { loose, .. }) = self.containers.last_mut() {
                    *loose = true;
                    self.text.push('\n');
                }
            }
            TagEnd::Heading(level) => {
                self.html.push_str(&format!("</{}>\n", heading_tag(level)));
                // Marked as in the source, so that the text part shows a heading, not a paragraph.
                let marker = "#".repeat(heading_tag(level)[1..].parse().unwrap_or(2));
                self.inline.insert_str(0, &format!("{marker} "));
                self.end_leaf();
            }
            TagEnd::BlockQuote(_) => {
                self.html.push_str("</blockquote>\n");
                self.containers.pop();
            }
            TagEnd::CodeBlock => {
                self.html.push_str("</code></pre>\n");
                let code = std::mem::take(&mut self.inline);
                let prefix = self.prefix(false);
                for line in code.lines() {
                    self.text.push_str(&format!("{prefix}    {line}\n"));
                }
                self.text.push('\n');
            }
            TagEnd::List(ordered) => {
                self.html.push_str(if ordered { "</ol>\n" } else { "</ul>\n" });
                self.containers.pop();
                let in_loose_item = matches!(self.containers.last(), Some(Container::Item { loose: true, .. }));
                if self.list_depth() == 0 || in_loose_item {
                    self.text.push('\n');
                }
            }
            TagEnd::Item => {
                self.html.push_str("</li>\n");
                // A tight list item has no paragraph: its text ends with the item.
                self.end_leaf();
                self.containers.pop();
            }
            TagEnd::Table => {
                self.html.push_str("</tbody></table>\n");
                self.text.push('\n');
            }
            TagEnd::TableHead => {
                self.html.push_str("</tr></thead><tbody>\n");
                self.end_row();
            }
            TagEnd::TableRow => {
                self.html.push_str("</tr>\n");
                self.end_row();
            }
            TagEnd::TableCell => {
                self.html.push_str(if self.in_table_head() { "</th>" } else { "</td>" });
                let cell = std::mem::take(&mut self.inline);
                self.row.push(cell.trim().to_owned());
            }
            TagEnd::Emphasis => self.html.push_str("</em>"),
            TagEnd::Strong => self.html.push_str("</strong>"),
            TagEnd::Strikethrough => self.html.push_str("</del>"),
            TagEnd::Superscript => self.html.push_str("</sup>"),
            TagEnd::Subscript => self.html.push_str("</sub>"),
            TagEnd::Link => self.end_link(range),
            TagEnd::Image => {}
            TagEnd::HtmlBlock | TagEnd::FootnoteDefinition | TagEnd::MetadataBlock(_) => {}
            TagEnd::DefinitionList | TagEnd::DefinitionListTitle | TagEnd::DefinitionListDefinition => {}
        }
    }

    fn end_link(&mut self, range: &Range<usize>) {
        let Some(link) = self.links.pop() else { return };
        let text = link.text.trim().to_owned();
        if text.is_empty() && !link.has_image {
            // An empty anchor is invisible to readers; keep it out of the email.
            self.html.truncate(link.html_mark);
            self.inline.truncate(link.inline_mark);
            let line = self.line(range);
            self.warn(
                Kind::EmptyLinkText,
                line,
                format!(
                    "link to {} has no text and was left out: write [text]({})",
                    link.href, link.href
                ),
            );
            return;
        }
        self.html.push_str("</a>");
        if let Some(outer) = self.links.last_mut() {
            outer.text.push_str(&link.text);
        }
        if !shows_url(&text, &link.href) {
            self.inline.push_str(&format!(" ({})", link.href));
        }
        self.out.links.push(Link {
            text,
            url: link.href,
            line: link.line,
        });
    }

    fn raw_html(&mut self, fragment: &str, range: &Range<usize>) {
        let (clean, dropped) = sanitize_html(fragment, &mut self.skip_tag);
        self.html.push_str(&clean);
        self.inline.push_str(&strip_tags(&clean));
        if !dropped.is_empty() {
            let line = self.line(range);
            self.warn(
                Kind::UnsafeHtmlDropped,
                line,
                format!(
                    "raw HTML {} removed: email clients block scripts, and styles belong in the layout",
                    dropped.join(", ")
                ),
            );
        }
    }

    fn count_item(&mut self) {
        if self.containers.is_empty() {
            self.out.items += 1;
        }
    }

    fn list_depth(&self) -> usize {
        self.containers
            .iter()
            .filter(|c| matches!(c, Container::List(_)))
            .count()
    }

    fn in_table_head(&self) -> bool {
        self.html
            .rfind("<thead>")
            .is_some_and(|h| self.html[h..].find("</thead>").is_none())
    }

    /// The text prefix of the current line: quote markers and list indentation. `first` takes
    /// the innermost item's marker (and consumes it).
    fn prefix(&mut self, first: bool) -> String {
        let mut p = String::new();
        let last_item = self
            .containers
            .iter()
            .rposition(|c| matches!(c, Container::Item { .. }));
        for (idx, c) in self.containers.iter_mut().enumerate() {
            match c {
                Container::Quote => p.push_str("> "),
                Container::List(_) => {}
                Container::Item {
                    marker, first: pending, ..
                } => {
                    if first && *pending && Some(idx) == last_item {
                        p.push_str(marker);
                        *pending = false;
                    } else {
                        p.push_str(&" ".repeat(marker.len()));
                    }
                }
            }
        }
        p
    }

    /// Ends a paragraph, heading or tight list item: wraps its text into the text part.
    fn end_leaf(&mut self) {
        self.check_unparsed();
        let inline = std::mem::take(&mut self.inline);
        if inline.trim().is_empty() {
            return;
        }
        let first = self.prefix(true);
        let rest = self.prefix(false);
        self.push_text_block(inline.trim(), &first, &rest);
    }

    fn push_text_block(&mut self, inline: &str, first: &str, rest: &str) {
        self.text.push_str(&wrap(inline, TEXT_WIDTH, first, rest));
        let in_tight_item = matches!(self.containers.last(), Some(Container::Item { .. }));
        if !in_tight_item {
            self.text.push('\n');
        }
    }

    fn end_row(&mut self) {
        let row = std::mem::take(&mut self.row);
        self.text.push_str(&row.join(" | "));
        self.text.push('\n');
    }

    fn check_unparsed(&mut self) {
        let raw = std::mem::take(&mut self.raw);
        let Some(start) = self.raw_start.take() else {
            return;
        };
        if let Some(pos) = raw.find("![").or_else(|| raw.find("](")) {
            let snippet: String = raw[pos..].chars().take(40).collect();
            let line = self.src.lines.line(start);
            self.warn(
                Kind::UnparsedMarkdown,
                line,
                format!("Markdown left as literal text: `{snippet}`; an image or link path with spaces must be written <like this.png> or with %20"),
            );
        }
    }

    fn flush_html(&mut self) {
        if !self.html.trim().is_empty() {
            self.out.blocks.push(Block::Html {
                html: std::mem::take(&mut self.html).trim().to_owned(),
            });
        }
        self.html.clear();
    }

    fn finish(mut self) -> Content {
        self.flush_html();
        self.check_unparsed();
        let mut out = self.out;
        out.text = self.text.trim_end().to_owned();
        out
    }
}

fn heading_tag(level: HeadingLevel) -> &'static str {
    match level {
        HeadingLevel::H1 | HeadingLevel::H2 => "h2",
        HeadingLevel::H3 => "h3",
        HeadingLevel::H4 => "h4",
        HeadingLevel::H5 => "h5",
        HeadingLevel::H6 => "h6",
    }
}

fn is_inline_text(ev: &Event<'_>) -> bool {
    matches!(ev, Event::Text(_) | Event::Code(_))
}

/// The plain text of inline events (alt text, button labels).
fn plain<'a, 'e: 'a>(events: impl IntoIterator<Item = &'a Spanned<'e>>) -> String {
    events
        .into_iter()
        .filter_map(|(ev, _)| match ev {
            Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
            _ => None,
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A paragraph that is only a link reads as a button when its label is a call to action:
/// written in capitals (`MEET THE COMMITTEE`) or ending in an arrow (`Read more >>`).
fn is_call_to_action(label: &str) -> bool {
    let label = label.trim();
    let has_letters = label.chars().any(char::is_alphabetic);
    let shouting = has_letters && !label.chars().any(char::is_lowercase);
    let arrow = [">>", "»", "→", "->"].iter().any(|a| label.ends_with(a));
    shouting || arrow
}

/// Whether the link text already shows its target, so the text part need not repeat it.
fn shows_url(text: &str, href: &str) -> bool {
    let bare = |s: &str| {
        let s = s.trim().trim_end_matches('/');
        let s = s.strip_prefix("mailto:").unwrap_or(s);
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        s.to_ascii_lowercase()
    };
    bare(text) == bare(href)
}

/// What is wrong with a `mailto:` link's addresses (RFC 6068), if it is one.
fn mailto_problem(url: &str) -> Option<String> {
    let rest = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("mailto:"))
        .map(|_| &url[7..])?;
    let to = rest.split_once('?').map_or(rest, |(to, _)| to);
    if to.is_empty() {
        return Some("it names no address".into());
    }
    to.split(',').find_map(|addr| {
        let addr = addr.replace("%40", "@").replace("%20", " ");
        crate::recipients::normalize_address(&addr)
            .err()
            .map(|why| format!("`{}`: {why}", addr.trim()))
    })
}

/// `url` as a valid URI (RFC 3986): characters a URI may not hold (spaces, non-ASCII as UTF-8
/// bytes, quotes, brackets) percent-encoded, a `%` not starting an escape encoded too, a
/// non-ASCII host in its ASCII (punycode) form. `{{placeholders}}` stay as they are: they are
/// filled per recipient.
pub fn encode_url(url: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b);
    let url = ascii_host(url);
    let bytes = url.as_bytes();
    let mut out = String::with_capacity(url.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"{{")
            && let Some(end) = url[i..].find("}}")
        {
            out.push_str(&url[i..i + end + 2]);
            i += end + 2;
            continue;
        }
        let b = bytes[i];
        let escape = b == b'%'
            && bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if allowed(b) || escape {
            out.push(char::from(b));
        } else {
            out.extend([
                '%',
                char::from(HEX[usize::from(b >> 4)]),
                char::from(HEX[usize::from(b & 15)]),
            ]);
        }
        i += 1;
    }
    out
}

/// The URL with a non-ASCII host name (`https://bücher.example/`) in punycode.
fn ascii_host(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (userinfo, host_port) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (host_port, None),
    };
    if host.is_ascii() {
        return url.into();
    }
    let Ok(ascii) = idna::domain_to_ascii(host) else {
        return url.into();
    };
    let userinfo = if userinfo.is_empty() {
        String::new()
    } else {
        format!("{userinfo}@")
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{userinfo}{ascii}{port}{path}").into()
}

fn has_scheme(url: &str) -> bool {
    match url.find(':') {
        Some(i) if i > 0 => {
            let scheme = &url[..i];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        _ => false,
    }
}

/// Escapes text for HTML content and quoted attributes. Unlike Handlebars' default it leaves
/// `=` alone, so URLs in the HTML stay readable (`?token=...`). Unusual spaces and invisible
/// characters (U+202F in macOS screenshot names, U+00A0) become numeric references: mrml
/// writes them into attributes as Rust escapes (`\u{202f}`), which no client reads.
pub fn escape_into(s: &str, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ if !ch.is_ascii() && ch.escape_debug().nth(1).is_some() => {
                use std::fmt::Write;
                let _ = write!(out, "&#x{:X};", u32::from(ch));
            }
            _ => out.push(ch),
        }
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(s, &mut out);
    out
}

/// Removes `<script>` and `<style>` elements (with their content, which may span several
/// fragments: `skip` carries that state), event-handler attributes and `javascript:` URLs.
/// Returns the clean HTML and a description of what was dropped.
fn sanitize_html(fragment: &str, skip: &mut Option<&'static str>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(fragment.len());
    let mut dropped = Vec::new();
    let mut rest = fragment;
    while !rest.is_empty() {
        if *skip == Some(COMMENT) {
            // Writers' notes in HTML comments never reach the email.
            match rest.find("-->") {
                Some(i) => {
                    rest = &rest[i + 3..];
                    *skip = None;
                }
                None => rest = "",
            }
            continue;
        }
        if let Some(tag) = *skip {
            let close = format!("</{tag}");
            match find_ci(rest, &close) {
                Some(i) => {
                    let after = &rest[i..];
                    rest = after.find('>').map_or("", |j| &after[j + 1..]);
                    *skip = None;
                }
                None => rest = "",
            }
            continue;
        }
        let Some(lt) = rest.find('<') else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after;
            *skip = Some(COMMENT);
            continue;
        }
        let end = rest.find('>').map_or(rest.len(), |i| i + 1);
        let tag = &rest[..end];
        rest = &rest[end..];
        let name: String = tag
            .trim_start_matches('<')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        match name.as_str() {
            "script" | "style" => {
                dropped.push(format!("<{name}>"));
                if !tag.ends_with("/>") {
                    *skip = Some(if name == "script" { "script" } else { "style" });
                }
            }
            "" => out.push_str(tag), // closing tags, comments, doctype
            _ => out.push_str(&clean_attributes(tag, &mut dropped)),
        }
    }
    (out, dropped)
}

const COMMENT: &str = "--";

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Rebuilds an opening tag without `on*` attributes and `javascript:` URLs.
fn clean_attributes(tag: &str, dropped: &mut Vec<String>) -> String {
    let inner = tag.trim_start_matches('<').trim_end_matches('>');
    let self_closing = inner.ends_with('/');
    let inner = inner.trim_end_matches('/');
    let name_len = inner.find(|c: char| c.is_whitespace()).unwrap_or(inner.len());
    let mut out = format!("<{}", &inner[..name_len]);
    let mut rest = inner[name_len..].trim_start();
    while !rest.is_empty() {
        let name_end = rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(rest.len());
        let attr_name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        let mut value = None;
        if let Some(after_eq) = rest.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            let (v, remaining) = match after_eq.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &after_eq[1..];
                    let close = body.find(q).unwrap_or(body.len());
                    (
                        &after_eq[..(close + 2).min(after_eq.len())],
                        &body[(close + 1).min(body.len())..],
                    )
                }
                _ => {
                    let e = after_eq.find(char::is_whitespace).unwrap_or(after_eq.len());
                    (&after_eq[..e], &after_eq[e..])
                }
            };
            value = Some(v);
            rest = remaining.trim_start();
        }
        let unquoted = value.map(|v| v.trim_matches(['"', '\''])).unwrap_or("");
        if attr_name.len() > 2 && attr_name[..2].eq_ignore_ascii_case("on") {
            dropped.push(format!("attribute {attr_name}"));
            continue;
        }
        if unquoted.trim_start().to_ascii_lowercase().starts_with("javascript:") {
            dropped.push(format!("javascript: URL in {attr_name}"));
            continue;
        }
        out.push(' ');
        out.push_str(attr_name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    out.push_str(if self_closing { " />" } else { ">" });
    out
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out
}

/// Greedy word wrap. Hard breaks (`\n`) are kept; words longer than the width (URLs) stand on
/// a line of their own rather than being broken.
pub fn wrap(text: &str, width: usize, first_prefix: &str, rest_prefix: &str) -> String {
    let mut out = String::new();
    let mut prefix = first_prefix;
    for segment in text.split('\n') {
        let mut line = String::from(prefix);
        let mut empty = true;
        for word in segment.split_whitespace() {
            let fits = line.chars().count() + 1 + word.chars().count() <= width;
            if !empty && !fits {
                out.push_str(line.trim_end());
                out.push('\n');
                line = String::from(rest_prefix);
                empty = true;
            }
            if !empty {
                line.push(' ');
            }
            line.push_str(word);
            empty = false;
        }
        out.push_str(line.trim_end());
        out.push('\n');
        prefix = rest_prefix;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sections::markdown_options;
    use pulldown_cmark::Parser;

    fn convert_md(md: &str) -> (Content, Vec<Warning>) {
        let lines = LineIndex::new(md, 1);
        let src = Source {
            file: Path::new("t.md"),
            lines: &lines,
            origin: Some("https://openinfra.dev"),
        };
        let events: Vec<Spanned<'_>> = Parser::new_ext(md, markdown_options()).into_offset_iter().collect();
        let mut warnings = Vec::new();
        let content = convert(&events, &src, &mut warnings);
        (content, warnings)
    }

    fn html(content: &Content) -> String {
        content
            .blocks
            .iter()
            .map(|b| match b {
                Block::Html { html } => html.clone(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn kinds(w: &[Warning]) -> Vec<(Kind, Option<usize>)> {
        w.iter().map(|w| (w.kind, w.line)).collect()
    }

    #[test]
    fn nested_lists_render_nested_and_indent_in_text() {
        let (c, w) = convert_md("* one\n* two\n\n  * two.a\n  * two.b\n* three\n");
        assert!(w.is_empty());
        assert_eq!(c.items, 3);
        let h = html(&c);
        assert!(h.contains("<li>two"), "{h}");
        assert!(h.contains("<ul>\n<li>two.a</li>"), "{h}");
        // A blank line in the source makes the list loose: its items are set apart.
        assert_eq!(c.text, "* one\n\n* two\n\n  * two.a\n  * two.b\n\n* three");
        let (c, _) = convert_md("* one\n* two\n  * two.a\n  * two.b\n* three\n");
        assert_eq!(c.text, "* one\n* two\n  * two.a\n  * two.b\n* three");
    }

    #[test]
    fn ordered_lists_count_from_their_start() {
        let (c, _) = convert_md("3. c\n4. d\n");
        assert!(html(&c).starts_with("<ol start=\"3\">"));
        assert_eq!(c.text, "3. c\n4. d");
    }

    #[test]
    fn bold_links_keep_both() {
        let (c, _) = convert_md("**[Celebrate](https://x.org/a)** now\n");
        assert_eq!(
            html(&c),
            "<p><strong><a href=\"https://x.org/a\">Celebrate</a></strong> now</p>"
        );
        assert_eq!(c.text, "Celebrate (https://x.org/a) now");
        assert_eq!(
            c.links,
            vec![Link {
                text: "Celebrate".into(),
                url: "https://x.org/a".into(),
                line: 1
            }]
        );
    }

    #[test]
    fn hard_line_breaks_are_br_and_newlines() {
        let (c, _) = convert_md("first line\\\nsecond line  \nthird\n");
        assert_eq!(html(&c), "<p>first line<br />\nsecond line<br />\nthird</p>");
        assert_eq!(c.text, "first line\nsecond line\nthird");
    }

    #[test]
    fn mailto_links_show_the_address_once() {
        let (c, w) = convert_md(
            "Email [events@openinfra.dev](mailto:events@openinfra.dev) or [Jimmy](mailto:jimmy@openinfra.dev).\n",
        );
        assert!(w.is_empty());
        assert!(html(&c).contains("<a href=\"mailto:events@openinfra.dev\">events@openinfra.dev</a>"));
        assert_eq!(
            c.text,
            "Email events@openinfra.dev or Jimmy (mailto:jimmy@openinfra.dev)."
        );
    }

    #[test]
    fn gfm_tables_render_as_tables_and_rows() {
        let (c, _) = convert_md("| Date | Event |\n|---|---|\n| 3 July | [Bogota](https://m.org/b) |\n");
        let h = html(&c);
        assert!(
            h.starts_with("<table class=\"md-table\">\n<thead><tr><th>Date</th><th>Event</th></tr></thead><tbody>"),
            "{h}"
        );
        assert!(
            h.contains("<tr><td>3 July</td><td><a href=\"https://m.org/b\">Bogota</a></td></tr>"),
            "{h}"
        );
        assert_eq!(c.text, "Date | Event\n3 July | Bogota (https://m.org/b)");
        assert_eq!(c.items, 1);
    }

    #[test]
    fn image_paragraph_is_an_image_block_with_resolved_src_and_alt_from_title() {
        let (c, w) = convert_md("![](/img/reg.png \"Summit registration\")\n");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.blocks,
            vec![Block::Image {
                src: "https://openinfra.dev/img/reg.png".into(),
                alt: "Summit registration".into(),
                title: Some("Summit registration".into()),
                href: None
            }]
        );
    }

    #[test]
    fn linked_image_keeps_its_link() {
        let (c, _) = convert_md("[![Logo](/img/l.png)](https://openinfra.dev/)\n");
        assert!(
            matches!(&c.blocks[0], Block::Image { href: Some(h), alt, .. } if h == "https://openinfra.dev/" && alt == "Logo")
        );
    }

    #[test]
    fn image_without_alt_is_a_warning_with_its_line() {
        let (_, w) = convert_md("Intro\n\n![](/img/reg-2-1600x900.png)\n");
        assert_eq!(kinds(&w), vec![(Kind::ImageWithoutAlt, Some(3))]);
    }

    #[test]
    fn call_to_action_paragraphs_become_buttons() {
        let (c, _) = convert_md(
            "[READ MORE >>](https://openinfra.org/annual-report/2024)\n\n[MEET THE COMMITTEE](https://x.org/c)\n\n[Join us at FOSDEM!](https://x.org/f)\n",
        );
        assert_eq!(
            c.blocks[0],
            Block::Button {
                text: "READ MORE >>".into(),
                href: "https://openinfra.org/annual-report/2024".into()
            }
        );
        assert_eq!(
            c.blocks[1],
            Block::Button {
                text: "MEET THE COMMITTEE".into(),
                href: "https://x.org/c".into()
            }
        );
        assert!(
            matches!(&c.blocks[2], Block::Html { html } if html.contains("<a href=\"https://x.org/f\">Join us at FOSDEM!</a>"))
        );
    }

    #[test]
    fn a_link_inside_a_sentence_is_not_a_button() {
        let (c, _) = convert_md("See [READ MORE](https://x.org) for more\n");
        assert!(matches!(&c.blocks[0], Block::Html { .. }));
    }

    #[test]
    fn urls_are_sent_percent_encoded() {
        assert_eq!(
            encode_url("https://openinfra.dev/img/screenshot-2025-12-16-at-9.44.38\u{202f}am.png"),
            "https://openinfra.dev/img/screenshot-2025-12-16-at-9.44.38%E2%80%AFam.png"
        );
        assert_eq!(encode_url("https://x.org/a b.png"), "https://x.org/a%20b.png");
        assert_eq!(
            encode_url("https://x.org/caf%C3%A9?q=1&r=a|b"),
            "https://x.org/caf%C3%A9?q=1&r=a%7Cb"
        );
        assert_eq!(encode_url("https://x.org/100%"), "https://x.org/100%25");
        assert_eq!(
            encode_url("https://bücher.example:8443/ü"),
            "https://xn--bcher-kva.example:8443/%C3%BC"
        );
        assert_eq!(
            encode_url("https://x.org/?e={{email}}&n=\"x\""),
            "https://x.org/?e={{email}}&n=%22x%22"
        );
        let (content, w) = convert_md("![shot](</img/screenshot at 9.44\u{202f}am.png>)\n\n[link](https://x.org/ü)\n");
        assert!(w.is_empty(), "{w:?}");
        let html = html(&content);
        assert!(html.contains("/img/screenshot%20at%209.44%E2%80%AFam.png"), "{html}");
        assert!(html.contains("https://x.org/%C3%BC"), "{html}");
        assert!(content.text.contains("https://x.org/%C3%BC"), "{}", content.text);
        assert_eq!(escape("9.44.38\u{202f}am café\u{a0}!"), "9.44.38&#x202F;am café&#xA0;!");
    }

    #[test]
    fn image_path_with_spaces_is_reported_as_unparsed() {
        let (_, w) = convert_md("Text\n\n![](/img/screenshot-2025-12-16-at-9.44.38 am.png \"title\")\n");
        assert_eq!(kinds(&w), vec![(Kind::UnparsedMarkdown, Some(3))]);
        let (_, w) = convert_md("![shot](</img/screenshot at 9.44.png>)\n");
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn empty_link_text_is_dropped_with_a_warning() {
        let (c, w) = convert_md("[](https://x.org/a)*[Register](https://x.org/r) now*\n");
        assert_eq!(kinds(&w), vec![(Kind::EmptyLinkText, Some(1))]);
        assert_eq!(html(&c), "<p><em><a href=\"https://x.org/r\">Register</a> now</em></p>");
        assert_eq!(c.links.len(), 1);
    }

    #[test]
    fn http_links_and_unresolvable_relative_links_warn() {
        let (c, w) = convert_md("[a](http://x.org/s) [b](schedule.html) [c](/blog/x) [d]({{unsubscribe_url}})\n");
        assert_eq!(
            kinds(&w),
            vec![(Kind::InsecureLink, Some(1)), (Kind::UnresolvedLink, Some(1))]
        );
        assert!(html(&c).contains("href=\"https://openinfra.dev/blog/x\""));
        assert!(html(&c).contains("href=\"{{unsubscribe_url}}\""));
    }

    #[test]
    fn scripts_styles_and_event_handlers_are_removed() {
        let md = "<script>alert(1)</script>\n\nHi <b onclick=\"steal()\" class=\"x\">there</b> <a href=\"javascript:evil()\">x</a>\n\n<style>\np { color: red }\n</style>\n\nafter\n";
        let (c, w) = convert_md(md);
        let h = html(&c);
        assert!(
            !h.contains("alert") && !h.contains("steal") && !h.contains("javascript") && !h.contains("color: red"),
            "{h}"
        );
        assert!(h.contains("<b class=\"x\">there</b>"), "{h}");
        assert!(h.contains("after"), "{h}");
        assert!(
            w.iter().all(|w| w.kind == Kind::UnsafeHtmlDropped) && w.len() == 4,
            "{w:?}"
        );
    }

    #[test]
    fn comments_are_notes_not_content() {
        let (c, w) = convert_md("<!-- remember the\nhero image -->\n\nText <!-- inline --> here\n");
        assert!(w.is_empty());
        assert_eq!(html(&c), "<p>Text  here</p>");
    }

    #[test]
    fn text_is_escaped_and_placeholders_survive() {
        let (c, _) = convert_md("Hi {{first_name}}, <3 & \"quotes\"\n");
        assert_eq!(html(&c), "<p>Hi {{first_name}}, &lt;3 &amp; &quot;quotes&quot;</p>");
        assert_eq!(c.text, "Hi {{first_name}}, <3 & \"quotes\"");
    }

    #[test]
    fn wrap_keeps_long_words_whole() {
        let url = format!("https://example.org/{}", "a".repeat(80));
        assert_eq!(
            wrap(&format!("see {url} now"), 20, "* ", "  "),
            format!("* see\n  {url}\n  now\n")
        );
    }
}
