//! Markdown events of one section -> email-safe HTML blocks and a plain-text rendering.
//!
//! The HTML carries no styles of its own: the layout's `inline.css` is written into its style
//! attributes afterwards (`layout::Layout::style`), so the look stays in the layout folder.
//!
//! [`convert`] walks the events ([`convert`](self::convert) module: HTML and warnings,
//! [`text`] the plain-text part), [`links`] resolves and encodes URLs, [`sanitize`] cleans
//! raw HTML.

mod convert;
mod links;
mod sanitize;
#[cfg(test)]
mod tests;
mod text;

pub use links::encode_url;

/// The Markdown the foundation's website writes: CommonMark with GitHub's tables,
/// strikethrough and task lists.
pub fn markdown_options() -> pulldown_cmark::Options {
    use pulldown_cmark::Options;
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}
pub use text::{WRAP_HELPER, wrap};

use std::ops::Range;
use std::path::Path;

use pulldown_cmark::{Event, Tag};
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
