//! Raw HTML in the Markdown, made safe for email: no scripts, styles or event handlers.

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
