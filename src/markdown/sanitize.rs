//! Raw HTML in the Markdown, made safe for email. Two passes: [`sanitize_html`] reads each raw
//! fragment as the writer typed it, to name what is dropped in a warning (scripts, styles,
//! handlers) and to keep writers' comments and script text out of the plain-text part; then
//! [`allow_list`] cleans every HTML block of the section, ours and the writer's together,
//! by what email layouts need and nothing else. The second pass is the guarantee.

use std::collections::HashSet;
use std::sync::LazyLock;

/// Elements an issue's HTML may hold: text structure, lists, tables, images and links.
const ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "font",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "mark",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
];

/// Attributes on any of them. `style` is narrowed to [`STYLE_PROPERTIES`].
const GENERIC_ATTRIBUTES: &[&str] = &["align", "class", "dir", "id", "lang", "style", "title", "valign"];

/// Attributes of one element.
const ELEMENT_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href", "name"]),
    ("img", &["src", "alt", "width", "height", "border"]),
    (
        "table",
        &["width", "border", "cellpadding", "cellspacing", "bgcolor", "role"],
    ),
    ("td", &["width", "height", "colspan", "rowspan", "bgcolor"]),
    ("th", &["width", "height", "colspan", "rowspan", "bgcolor", "scope"]),
    ("col", &["width", "span"]),
    ("ol", &["start", "type", "reversed"]),
    ("li", &["value"]),
    ("font", &["color", "face", "size"]),
    ("blockquote", &["cite"]),
    ("q", &["cite"]),
];

/// CSS properties a `style` attribute keeps: the look of text, boxes and tables. No
/// `background` (it takes `url()`), no `position`, no `behavior` or `-moz-binding`.
const STYLE_PROPERTIES: &[&str] = &[
    "background-color",
    "border",
    "border-bottom",
    "border-collapse",
    "border-color",
    "border-left",
    "border-radius",
    "border-right",
    "border-spacing",
    "border-style",
    "border-top",
    "border-width",
    "color",
    "display",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "height",
    "letter-spacing",
    "line-height",
    "list-style-type",
    "margin",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "margin-top",
    "max-width",
    "min-width",
    "padding",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "padding-top",
    "text-align",
    "text-decoration",
    "text-transform",
    "vertical-align",
    "white-space",
    "width",
    "word-break",
];

/// Link and image schemes a reader's client may follow.
const URL_SCHEMES: &[&str] = &["http", "https", "mailto", "tel"];

static ALLOW_LIST: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::empty();
    builder
        .tags(ELEMENTS.iter().copied().collect())
        .generic_attributes(GENERIC_ATTRIBUTES.iter().copied().collect())
        .tag_attributes(
            ELEMENT_ATTRIBUTES
                .iter()
                .map(|(tag, attributes)| (*tag, attributes.iter().copied().collect::<HashSet<_>>()))
                .collect(),
        )
        .filter_style_properties(STYLE_PROPERTIES.iter().copied().collect())
        .url_schemes(URL_SCHEMES.iter().copied().collect())
        // `#section` anchors and the personalization's `{{unsubscribe_url}}` are relative.
        .url_relative(ammonia::UrlRelative::PassThrough)
        // Our links carry no rel; the layout decides how links look.
        .link_rel(None)
        .clean_content_tags(
            [
                "script",
                "style",
                "template",
                "noscript",
                "xmp",
                "iframe",
                "noembed",
                "noframes",
                "plaintext",
                "title",
                "textarea",
                "select",
                "math",
                "svg",
                "object",
                "embed",
            ]
            .into_iter()
            .collect(),
        )
        .strip_comments(true);
    builder
});

/// An HTML block with everything outside the allow-list taken out: unknown elements keep
/// their text, scripts and the like lose it too, attributes and URL schemes not listed go.
pub(super) fn allow_list(html: &str) -> String {
    ALLOW_LIST.clean(html).to_string()
}

/// Removes `<script>` and `<style>` elements (with their content, which may span several
/// fragments: `skip` carries that state), event-handler attributes and `javascript:` URLs.
/// Returns the clean HTML and a description of what was dropped.
pub(super) fn sanitize_html(fragment: &str, skip: &mut Option<&'static str>) -> (String, Vec<String>) {
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

pub(super) fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Rebuilds an opening tag without `on*` attributes and `javascript:` URLs.
pub(super) fn clean_attributes(tag: &str, dropped: &mut Vec<String>) -> String {
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

pub(super) fn strip_tags(html: &str) -> String {
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
