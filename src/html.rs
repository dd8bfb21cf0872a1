//! Escaping for HTML text and quoted attributes, shared by the Markdown converter, the
//! templates and the preview server.

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
