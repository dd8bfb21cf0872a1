//! A rendered issue's HTML, text or subject as a template of per-recipient values. Only the
//! parts holding `{{` go through Handlebars; the static text between them is copied as it is
//! (and quoted-printable encoded once per issue: see `splice`). Handlebars took 5 ms to parse
//! the 60 KB of an issue's HTML, nearly all of it static: once per issue, but also once per
//! edition (readers' choices of projects), where it made a send over 32 editions 12% slower.

use std::borrow::Cow;
use std::ops::Range;

use handlebars::{Context, Handlebars, RenderError, TemplateError};

#[derive(Debug, Clone)]
enum Part {
    Static(Range<usize>),
    /// A template registered under this name.
    Handlebars(String),
    /// The HTML's `<title>` text: the subject as sent, which may differ from the issue's.
    Title,
}

#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Registers the template parts of `source` in `hbs` under names starting with `name`.
    /// With `title`, the text of the HTML's `<title>` becomes a part of its own.
    pub fn register(
        hbs: &mut Handlebars<'static>,
        name: &str,
        source: &str,
        title: bool,
    ) -> Result<Template, TemplateError> {
        let whole = || split(source, 0..source.len()).unwrap_or_else(|| vec![(Kind::Template, 0..source.len())]);
        let ranges = match title.then(|| title_range(source)).flatten() {
            // A block reaching into the title (not one of ours) keeps the title as it is.
            Some(t) => match (split(source, 0..t.start), split(source, t.end..source.len())) {
                (Some(mut before), Some(after)) => {
                    before.push((Kind::Title, t));
                    before.extend(after);
                    before
                }
                _ => whole(),
            },
            None => whole(),
        };
        let mut parts = Vec::with_capacity(ranges.len());
        for (i, (kind, range)) in ranges.into_iter().enumerate() {
            parts.push(match kind {
                Kind::Template => {
                    let part_name = format!("{name}#{i}");
                    hbs.register_template_string(&part_name, &source[range])?;
                    Part::Handlebars(part_name)
                }
                Kind::Static => Part::Static(range),
                Kind::Title => Part::Title,
            });
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Part `i` when it is the same for every recipient.
    pub fn static_part(&self, i: usize) -> Option<&str> {
        match &self.parts[i] {
            Part::Static(range) => Some(&self.source[range.clone()]),
            Part::Handlebars(_) | Part::Title => None,
        }
    }

    /// Part `i` for one recipient; `title` is what the HTML's title says.
    pub fn render_part<'a>(
        &'a self,
        i: usize,
        hbs: &Handlebars<'_>,
        context: &Context,
        title: &'a str,
    ) -> Result<Cow<'a, str>, RenderError> {
        Ok(match &self.parts[i] {
            Part::Static(range) => Cow::Borrowed(&self.source[range.clone()]),
            Part::Handlebars(name) => Cow::Owned(hbs.render_with_context(name, context)?),
            Part::Title => Cow::Borrowed(title),
        })
    }

    pub fn render(&self, hbs: &Handlebars<'_>, context: &Context, title: &str) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source.len() + 512);
        for i in 0..self.parts.len() {
            out.push_str(&self.render_part(i, hbs, context, title)?);
        }
        Ok(out)
    }
}

/// The text part's `{{#wrap "FIRST" "REST"}}...{{/wrap}}`: a paragraph holding reader values,
/// wrapped once they are filled in, so that a long name does not run past the line.
pub struct WrapFilled;

impl handlebars::HelperDef for WrapFilled {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        hbs: &'reg Handlebars<'reg>,
        context: &'rc Context,
        rc: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        let prefix = |i: usize| h.param(i).and_then(|p| p.value().as_str()).unwrap_or("").to_owned();
        let mut filled = handlebars::StringOutput::new();
        if let Some(inner) = h.template() {
            handlebars::Renderable::render(inner, hbs, context, rc, &mut filled)?;
        }
        let filled = filled.into_string()?;
        out.write(&crate::markdown::wrap(
            &filled,
            crate::markdown::TEXT_WIDTH,
            &prefix(0),
            &prefix(1),
        ))?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Static,
    Template,
    Title,
}

/// The text between `<title>` and `</title>`.
fn title_range(source: &str) -> Option<Range<usize>> {
    let start = source.find("<title>")? + "<title>".len();
    let length = source[start..].find("</title>")?;
    Some(start..start + length)
}

/// The ranges of `source[within]` that are static text and that are templates: each
/// expression, or each block from its opening to its closing tag. `None` for what this does
/// not follow (partials, raw blocks, escapes, whitespace control, unbalanced blocks): the
/// whole is then one template, and Handlebars says what is wrong with it.
fn split(source: &str, within: Range<usize>) -> Option<Vec<(Kind, Range<usize>)>> {
    let mut parts = Vec::new();
    let mut static_from = within.start;
    let mut template_from = None;
    let mut depth = 0usize;
    let mut at = within.start;
    let source = &source[..within.end];
    while let Some(found) = source[at..].find("{{") {
        let open = at + found;
        if source[within.start..open].ends_with('\\') {
            return None;
        }
        let rest = &source[open + 2..];
        if rest.starts_with("{{") || rest.starts_with('~') {
            return None;
        }
        let close_with = if rest.starts_with('{') {
            "}}}"
        } else if rest.starts_with("!--") {
            "--}}"
        } else {
            "}}"
        };
        let close = open + 2 + rest.find(close_with)? + close_with.len();
        if source[..close - close_with.len()].ends_with('~') {
            return None;
        }
        match rest.chars().next() {
            Some('#') => depth += 1,
            Some('/') => depth = depth.checked_sub(1)?,
            Some('>' | '^') => return None,
            _ => {}
        }
        if template_from.is_none() {
            if open > static_from {
                parts.push((Kind::Static, static_from..open));
            }
            template_from = Some(open);
        }
        at = close;
        if depth == 0
            && let Some(from) = template_from.take()
        {
            parts.push((Kind::Template, from..close));
            static_from = close;
        }
    }
    if depth != 0 {
        return None;
    }
    if static_from < source.len() {
        parts.push((Kind::Static, static_from..source.len()));
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, data: serde_json::Value) -> String {
        let mut hbs = Handlebars::new();
        hbs.set_strict_mode(true);
        let template = Template::register(&mut hbs, "t", source, false).unwrap();
        template.render(&hbs, &Context::wraps(data).unwrap(), "").unwrap()
    }

    #[test]
    fn the_same_output_as_one_template() {
        let data = serde_json::json!({ "a": "<A>", "b": "", "list": ["x", "y"] });
        for source in [
            "",
            "plain text only",
            "{{a}}",
            "x {{a}} y {{{a}}} z",
            "<p>{{#if b}}yes {{a}}{{else}}no{{/if}}</p> and {{#each list}}[{{this}}]{{/each}}.",
            "{{#if a}}{{#if b}}in{{/if}}out{{/if}} tail",
            "{{!-- a comment with }} inside --}}after",
        ] {
            let mut hbs = Handlebars::new();
            hbs.set_strict_mode(true);
            hbs.register_template_string("whole", source).unwrap();
            assert_eq!(
                render(source, data.clone()),
                hbs.render("whole", &data).unwrap(),
                "{source}"
            );
        }
        let source = "a {{x}} b {{#if y}}c{{/if}}";
        assert_eq!(split(source, 0..source.len()).unwrap().len(), 4);
    }

    #[test]
    fn what_it_does_not_follow_is_one_template() {
        for source in [
            "\\{{a}}",
            "{{~a}}",
            "{{a~}}",
            "{{> partial}}",
            "{{#if a}}",
            "{{/if}}",
            "{{a",
        ] {
            assert!(split(source, 0..source.len()).is_none(), "{source}");
        }
        // A missing variable is still an error in strict mode.
        let mut hbs = Handlebars::new();
        hbs.set_strict_mode(true);
        let t = Template::register(&mut hbs, "t", "static {{missing}} static", false).unwrap();
        assert!(
            t.render(&hbs, &Context::wraps(serde_json::json!({})).unwrap(), "")
                .is_err()
        );
    }

    #[test]
    fn the_title_is_a_part_of_its_own() {
        let mut hbs = Handlebars::new();
        hbs.set_strict_mode(true);
        let context = Context::wraps(serde_json::json!({ "a": "A" })).unwrap();
        let source = "<title>Hi {{a}}</title><p>{{a}}</p>";
        let t = Template::register(&mut hbs, "t", source, true).unwrap();
        assert_eq!(
            t.render(&hbs, &context, "As sent").unwrap(),
            "<title>As sent</title><p>A</p>"
        );
        assert_eq!(t.static_part(0), Some("<title>"));
        // A block reaching into the title leaves it alone.
        let source = "{{#if a}}<title>x{{/if}}</title>";
        let t = Template::register(&mut hbs, "u", source, true).unwrap();
        assert_eq!(t.render(&hbs, &context, "As sent").unwrap(), "<title>x</title>");
    }
}
