//! The plain-text part: list markers and indentation, quotes, wrapping.

use pulldown_cmark::{Event, HeadingLevel};

use super::*;

impl Converter<'_, '_> {
    pub(super) fn count_item(&mut self) {
        if self.containers.is_empty() {
            self.out.items += 1;
        }
    }

    pub(super) fn list_depth(&self) -> usize {
        self.containers
            .iter()
            .filter(|c| matches!(c, Container::List(_)))
            .count()
    }

    pub(super) fn in_table_head(&self) -> bool {
        self.html
            .rfind("<thead>")
            .is_some_and(|h| self.html[h..].find("</thead>").is_none())
    }

    /// The text prefix of the current line: quote markers and list indentation. `first` takes
    /// the innermost item's marker (and consumes it).
    pub(super) fn prefix(&mut self, first: bool) -> String {
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
    pub(super) fn end_leaf(&mut self) {
        self.check_unparsed();
        let inline = std::mem::take(&mut self.inline);
        if inline.trim().is_empty() {
            return;
        }
        let first = self.prefix(true);
        let rest = self.prefix(false);
        self.push_text_block(inline.trim(), &first, &rest);
    }

    pub(super) fn push_text_block(&mut self, inline: &str, first: &str, rest: &str) {
        if inline.contains("{{") && !first.contains('"') && !rest.contains('"') {
            // A reader's value ({{first_name}}) is as long as it is only per reader: the
            // paragraph is wrapped after it is filled in (personalize's `wrap` helper).
            self.text.push_str(&format!(
                "{{{{#{WRAP_HELPER} \"{first}\" \"{rest}\"}}}}{inline}{{{{/{WRAP_HELPER}}}}}"
            ));
        } else {
            self.text.push_str(&wrap(inline, TEXT_WIDTH, first, rest));
        }
        let in_tight_item = matches!(self.containers.last(), Some(Container::Item { .. }));
        if !in_tight_item {
            self.text.push('\n');
        }
    }

    pub(super) fn end_row(&mut self) {
        let row = std::mem::take(&mut self.row);
        self.text.push_str(&row.join(" | "));
        self.text.push('\n');
    }

    pub(super) fn check_unparsed(&mut self) {
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

    pub(super) fn flush_html(&mut self) {
        if !self.html.trim().is_empty() {
            self.out.blocks.push(Block::Html {
                html: super::sanitize::allow_list(std::mem::take(&mut self.html).trim()),
            });
        }
        self.html.clear();
    }

    pub(super) fn finish(mut self) -> Content {
        self.flush_html();
        self.check_unparsed();
        let mut out = self.out;
        out.text = self.text.trim_end().to_owned();
        out
    }
}

pub(super) fn heading_tag(level: HeadingLevel) -> &'static str {
    match level {
        HeadingLevel::H1 | HeadingLevel::H2 => "h2",
        HeadingLevel::H3 => "h3",
        HeadingLevel::H4 => "h4",
        HeadingLevel::H5 => "h5",
        HeadingLevel::H6 => "h6",
    }
}

pub(super) fn is_inline_text(ev: &Event<'_>) -> bool {
    matches!(ev, Event::Text(_) | Event::Code(_))
}

/// The plain text of inline events (alt text, button labels).
pub(super) fn plain<'a, 'e: 'a>(events: impl IntoIterator<Item = &'a Spanned<'e>>) -> String {
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

/// The text part's block helper that wraps a paragraph holding reader values once they are
/// filled in: `{{#wrap "FIRST_PREFIX" "REST_PREFIX"}}...{{/wrap}}`.
pub const WRAP_HELPER: &str = "wrap";

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
