//! The walk over one section's events: HTML, links, images, buttons and warnings.

use std::ops::Range;

use pulldown_cmark::{Event, Tag, TagEnd};

use super::links::{is_call_to_action, shows_url};
use super::sanitize::{sanitize_html, strip_tags};
use super::text::{heading_tag, is_inline_text, plain};
use super::*;
use crate::html::escape_into;

impl Converter<'_, '_> {
    pub(super) fn line(&self, range: &Range<usize>) -> usize {
        self.src.lines.line(range.start)
    }

    pub(super) fn warn(&mut self, kind: Kind, line: usize, message: String) {
        self.warnings
            .push(Warning::new(kind, self.src.file, Some(line), message));
    }

    /// A top-level paragraph that is only an image (maybe linked) or only a call-to-action
    /// link becomes a block of its own.
    pub(super) fn special_paragraph(&mut self, inner: &[Spanned<'_>]) -> bool {
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

    pub(super) fn image_block(
        &mut self,
        src: &str,
        title: &str,
        alt: &str,
        href: Option<String>,
        range: &Range<usize>,
    ) {
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
    pub(super) fn image_alt(&mut self, alt: &str, title: &str, src: &str, line: usize) -> String {
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

    pub(super) fn event(&mut self, (event, range): &Spanned<'_>) {
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

    pub(super) fn inline_text(&mut self, t: &str) {
        self.inline.push_str(t);
        if let Some(link) = self.links.last_mut() {
            link.text.push_str(t);
        }
    }

    pub(super) fn raw_text(&mut self, t: &str, range: &Range<usize>) {
        self.raw_start.get_or_insert(range.start);
        self.raw.push_str(t);
    }

    pub(super) fn start(&mut self, tag: &Tag<'_>, range: &Range<usize>) {
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

    pub(super) fn end(&mut self, tag: TagEnd, range: &Range<usize>) {
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

    pub(super) fn end_link(&mut self, range: &Range<usize>) {
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

    pub(super) fn raw_html(&mut self, fragment: &str, range: &Range<usize>) {
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
}
