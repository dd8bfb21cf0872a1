//! A layout's MJML templates checked against MJML 4's elements and attributes when the layout
//! loads, naming the template file and line: mrml drops an element it does not know without a
//! word (`<mj-colum>` and its content vanish from the email) and ignores unknown attributes.
//! Also checked per file: every `<mj-...>` closed in order, every `{{#block}}` closed.

use std::path::Path;

use anyhow::{Result, bail};

use crate::diagnostic::{Kind, Warning};
use crate::suggest::did_you_mean;

/// The elements of MJML 4 that mrml renders, with their attributes (from each component's
/// `allowedAttributes` in mjml's source). `mj-class` and `css-class` are allowed everywhere;
/// `mj-all` and `mj-class` (inside `mj-attributes`) take any attribute.
const ELEMENTS: &[(&str, &str)] = &[
    (
        "mj-accordion",
        "container-background-color border font-family icon-align icon-width icon-height icon-wrapped-url icon-wrapped-alt icon-unwrapped-url icon-unwrapped-alt icon-position padding-bottom padding-left padding-right padding-top padding",
    ),
    (
        "mj-accordion-element",
        "background-color border font-family icon-align icon-width icon-height icon-wrapped-url icon-wrapped-alt icon-unwrapped-url icon-unwrapped-alt icon-position",
    ),
    (
        "mj-accordion-text",
        "background-color font-size font-family font-weight letter-spacing line-height color padding-bottom padding-left padding-right padding-top padding",
    ),
    (
        "mj-accordion-title",
        "background-color color font-size font-family font-weight padding-bottom padding-left padding-right padding-top padding",
    ),
    ("mj-all", ""),
    ("mj-attributes", ""),
    ("mj-body", "width background-color id"),
    ("mj-breakpoint", "width"),
    (
        "mj-button",
        "align background-color border-bottom border-left border-radius border-right border-top border color container-background-color font-family font-size font-style font-weight height href name title inner-padding letter-spacing line-height padding-bottom padding-left padding-right padding-top padding rel target text-decoration text-transform vertical-align text-align width",
    ),
    (
        "mj-carousel",
        "align border-radius container-background-color icon-width left-icon padding padding-top padding-bottom padding-left padding-right right-icon thumbnails tb-border tb-border-radius tb-hover-border-color tb-selected-border-color tb-width",
    ),
    (
        "mj-carousel-image",
        "alt href rel target title src thumbnails-src border-radius tb-border tb-border-radius",
    ),
    ("mj-class", "name"),
    (
        "mj-column",
        "background-color border border-bottom border-left border-radius border-right border-top direction inner-background-color padding-bottom padding-left padding-right padding-top inner-border inner-border-bottom inner-border-left inner-border-radius inner-border-right inner-border-top padding vertical-align width",
    ),
    (
        "mj-divider",
        "border-color border-style border-width container-background-color padding padding-bottom padding-left padding-right padding-top width align",
    ),
    ("mj-font", "name href"),
    ("mj-group", "background-color direction vertical-align width"),
    ("mj-head", ""),
    (
        "mj-hero",
        "mode height background-url background-width background-height background-position border-radius inner-background-color inner-padding inner-padding-top inner-padding-left inner-padding-right inner-padding-bottom padding padding-bottom padding-left padding-right padding-top background-color vertical-align",
    ),
    (
        "mj-image",
        "alt href name src srcset sizes title rel align border border-bottom border-left border-right border-top border-radius container-background-color fluid-on-mobile padding padding-bottom padding-left padding-right padding-top target width height max-height font-size usemap",
    ),
    (
        "mj-navbar",
        "align base-url hamburger ico-align ico-open ico-close ico-color ico-font-size ico-font-family ico-text-transform ico-padding ico-padding-left ico-padding-top ico-padding-right ico-padding-bottom padding padding-left padding-top padding-right padding-bottom ico-text-decoration ico-line-height",
    ),
    (
        "mj-navbar-link",
        "color font-family font-size font-style font-weight href name target rel letter-spacing line-height padding-bottom padding-left padding-right padding-top padding text-decoration text-transform",
    ),
    ("mj-preview", ""),
    ("mj-raw", "position"),
    (
        "mj-section",
        "background-color background-url background-repeat background-size background-position background-position-x background-position-y border border-bottom border-left border-radius border-right border-top direction full-width gutter padding padding-top padding-bottom padding-left padding-right text-align text-padding",
    ),
    (
        "mj-social",
        "align border border-radius container-background-color color font-family font-size font-style font-weight icon-size icon-height icon-padding inner-padding line-height mode padding-bottom padding-left padding-right padding-top padding table-layout text-padding text-decoration vertical-align",
    ),
    (
        "mj-social-element",
        "align icon-position background-color color border border-radius font-family font-size font-style font-weight href icon-size icon-height icon-padding line-height name padding-bottom padding-left padding-right padding-top padding text-padding rel src srcset sizes alt title target text-decoration vertical-align",
    ),
    (
        "mj-spacer",
        "border border-bottom border-left border-right border-top container-background-color padding-bottom padding-left padding-right padding-top padding height",
    ),
    ("mj-style", "inline"),
    (
        "mj-table",
        "align border cellpadding cellspacing container-background-color color font-family font-size font-weight line-height padding-bottom padding-left padding-right padding-top padding role table-layout vertical-align width",
    ),
    (
        "mj-text",
        "align background-color color container-background-color font-family font-size font-style font-weight height letter-spacing line-height padding-bottom padding-left padding-right padding-top padding text-decoration text-transform vertical-align",
    ),
    ("mj-title", ""),
    (
        "mj-wrapper",
        "background-color background-position background-position-x background-position-y background-repeat background-size background-url border border-bottom border-left border-radius border-right border-top direction full-width gap gutter padding padding-bottom padding-left padding-right padding-top text-align text-padding",
    ),
    ("mjml", "lang dir owa"),
];

const EVERYWHERE: &[&str] = &["mj-class", "css-class"];

/// Checks one `.mjml.hbs` template. Unknown elements, tags closed out of order or never, and
/// unclosed Handlebars blocks are errors; unknown attributes are warnings.
pub fn mjml_template(path: &Path, source: &str) -> Result<Vec<Warning>> {
    let text = without_comments(source);
    let line_at = |offset: usize| text[..offset].matches('\n').count() + 1;
    check_blocks(path, &text, &line_at)?;
    let mut warnings = Vec::new();
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut rest = 0;
    while let Some(found) = text[rest..].find('<') {
        let start = rest + found;
        rest = start + 1;
        let tag = &text[start + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag[usize::from(closing)..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !(name == "mjml" || name.starts_with("mj-")) {
            continue;
        }
        let line = line_at(start);
        let Some(end) = tag_end(tag) else {
            bail!("{}:{line}: <{name}> is never ended with `>`", path.display());
        };
        let Some((_, allowed)) = ELEMENTS.iter().find(|(e, _)| *e == name) else {
            bail!(
                "{}:{line}: <{name}> is not an MJML element{}",
                path.display(),
                did_you_mean(&name, ELEMENTS.iter().map(|(e, _)| *e)).replacen(';', ":", 1)
            );
        };
        let body = &tag[usize::from(closing) + name.len()..end];
        if closing {
            match open.pop() {
                Some((opened, _)) if opened == name => {}
                Some((opened, at)) => bail!(
                    "{}:{line}: </{name}> closes <{opened}>, opened at line {at}: close <{opened}> first",
                    path.display()
                ),
                None => bail!("{}:{line}: </{name}> closes nothing in this file", path.display()),
            }
        } else {
            if !body.trim_end().ends_with('/') {
                open.push((name.clone(), line));
            }
            let any = matches!(name.as_str(), "mj-all" | "mj-class");
            for attribute in attribute_names(body) {
                let known = allowed.split(' ').any(|a| a == attribute) || EVERYWHERE.contains(&attribute);
                if !known && !any {
                    warnings.push(Warning::new(
                        Kind::MjmlWarning,
                        path,
                        Some(line),
                        format!(
                            "<{name}> has no attribute `{attribute}`, so it is ignored{}",
                            did_you_mean(attribute, allowed.split(' '))
                        ),
                    ));
                }
            }
        }
        rest = start + 1 + end;
    }
    if let Some((name, line)) = open.pop() {
        bail!(
            "{}:{line}: <{name}> is never closed in this file: add </{name}> (each template closes what it opens)",
            path.display()
        );
    }
    Ok(warnings)
}

/// The text with Handlebars comments blanked (newlines kept, so lines still count).
fn without_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{{!") {
        out.push_str(&rest[..start]);
        let close = if rest[start..].starts_with("{{!--") {
            "--}}"
        } else {
            "}}"
        };
        let end = rest[start..]
            .find(close)
            .map_or(rest.len(), |e| start + e + close.len());
        out.extend(rest[start..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Where a tag ends (its `>`), skipping quoted values and `{{...}}`.
fn tag_end(tag: &str) -> Option<usize> {
    let bytes = tag.as_bytes();
    let mut quote = None;
    let mut i = 0;
    while i < bytes.len() {
        match (quote, bytes[i]) {
            (None, b'{') if tag[i..].starts_with("{{") => {
                i += tag[i..].find("}}")? + 2;
                continue;
            }
            (None, b'"' | b'\'') => quote = Some(bytes[i]),
            (Some(q), c) if c == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The attribute names written in a tag's text: `name=` outside quotes, not made by Handlebars.
fn attribute_names(body: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut quote = None;
    let mut word_start = None;
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_ascii_alphanumeric() || c == '-' || c == ':' => {
                word_start.get_or_insert(i);
            }
            (None, '=') => {
                if let Some(s) = word_start.take() {
                    let name = &body[s..i];
                    if !body[..s].ends_with("{{") && !body[..s].ends_with('}') {
                        names.push(name);
                    }
                }
            }
            _ => word_start = None,
        }
    }
    names
}

/// Every `{{#block}}` closed by its own `{{/block}}`, and no stray closing.
fn check_blocks(path: &Path, text: &str, line_at: &dyn Fn(usize) -> usize) -> Result<()> {
    let mut open: Vec<(String, usize)> = Vec::new();
    for (i, _) in text.match_indices("{{") {
        let inner = text[i + 2..].trim_start_matches(['~', '{']);
        let name = |s: &str| -> String {
            s.chars()
                .take_while(|c| !c.is_whitespace() && *c != '}' && *c != '~')
                .collect()
        };
        if let Some(rest) = inner.strip_prefix('#').or_else(|| inner.strip_prefix("#>")) {
            open.push((name(rest.trim_start_matches(['*', '>'])), line_at(i)));
        } else if let Some(rest) = inner.strip_prefix('/') {
            let closing = name(rest);
            match open.pop() {
                Some((opened, _)) if opened == closing => {}
                Some((opened, at)) => bail!(
                    "{}:{}: {{{{/{closing}}}}} closes {{{{#{opened}}}}} of line {at}: close {{{{#{opened}}}}} first with {{{{/{opened}}}}}",
                    path.display(),
                    line_at(i)
                ),
                None => bail!("{}:{}: {{{{/{closing}}}}} closes no block", path.display(), line_at(i)),
            }
        }
    }
    if let Some((name, line)) = open.pop() {
        bail!(
            "{}:{line}: {{{{#{name}}}}} is never closed: add {{{{/{name}}}}}",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str) -> Result<Vec<Warning>> {
        mjml_template(Path::new("partials/x.mjml.hbs"), source)
    }

    #[test]
    fn the_bundled_templates_are_clean() {
        for (file, source) in super::super::BUNDLED.iter().filter(|(f, _)| f.ends_with(".mjml.hbs")) {
            let warnings = mjml_template(Path::new(file), source).unwrap();
            assert!(warnings.is_empty(), "{file}: {warnings:?}");
        }
    }

    #[test]
    fn unknown_elements_and_misplaced_closings_name_the_line() {
        let err = check("<mj-section>\n  <mj-colum>\n  </mj-colum>\n</mj-section>\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "partials/x.mjml.hbs:2: <mj-colum> is not an MJML element: did you mean `mj-column`?"
        );
        let err = check("<mj-section>\n  <mj-column>\n</mj-section>\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "partials/x.mjml.hbs:3: </mj-section> closes <mj-column>, opened at line 2: close <mj-column> first"
        );
        let err = check("<mj-section>\n  <mj-column>\n    <mj-text>x</mj-text>\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("partials/x.mjml.hbs:2: <mj-column> is never closed in this file"),
            "{err}"
        );
    }

    #[test]
    fn unknown_attributes_are_warnings_with_a_suggestion() {
        let w = check("<mj-image src=\"{{src}}\" hieght=\"20px\" {{#if x}}align=\"left\"{{/if}} css-class=\"a\" />\n")
            .unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, Some(1));
        assert!(
            w[0].message
                .contains("<mj-image> has no attribute `hieght`, so it is ignored; did you mean `height`?"),
            "{}",
            w[0].message
        );
        assert!(check("<mj-attributes><mj-all font-family=\"x\" anything=\"y\" /><mj-class name=\"c\" color=\"red\" /></mj-attributes>").unwrap().is_empty());
    }

    #[test]
    fn unclosed_handlebars_blocks_name_their_opening_line() {
        let err = check("<mj-section>\n{{#if a}}\n{{#each b}}\n{{/each}}\n</mj-section>\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "partials/x.mjml.hbs:2: {{#if}} is never closed: add {{/if}}");
        let err = check("{{#if a}}\n{{/each}}\n").unwrap_err().to_string();
        assert!(
            err.starts_with("partials/x.mjml.hbs:2: {{/each}} closes {{#if}} of line 1"),
            "{err}"
        );
        assert!(
            check("{{!-- <mj-colum> {{#if}} --}}\n<mjml lang=\"en\"></mjml>")
                .unwrap()
                .is_empty()
        );
    }
}
