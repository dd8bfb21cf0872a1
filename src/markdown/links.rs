//! Link and image targets: resolved against the site, percent-encoded as sent, and judged
//! (buttons, mailto syntax, a text that already shows its URL).

use std::ops::Range;

use super::{Converter, Kind};

impl Converter<'_, '_> {
    /// Resolves a link or image target (site-relative paths against the site origin) into the
    /// URL that is sent: percent-encoded (RFC 3986), the host in ASCII.
    pub(super) fn resolve(&mut self, url: &str, range: &Range<usize>) -> String {
        let resolved = self.resolve_raw(url, range);
        encode_url(&resolved)
    }

    pub(super) fn resolve_raw(&mut self, url: &str, range: &Range<usize>) -> String {
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
}

/// A paragraph that is only a link reads as a button when its label is a call to action:
/// written in capitals (`MEET THE COMMITTEE`) or ending in an arrow (`Read more >>`).
pub(super) fn is_call_to_action(label: &str) -> bool {
    let label = label.trim();
    let has_letters = label.chars().any(char::is_alphabetic);
    let shouting = has_letters && !label.chars().any(char::is_lowercase);
    let arrow = [">>", "»", "→", "->"].iter().any(|a| label.ends_with(a));
    shouting || arrow
}

/// Whether the link text already shows its target, so the text part need not repeat it.
pub(super) fn shows_url(text: &str, href: &str) -> bool {
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
pub(super) fn mailto_problem(url: &str) -> Option<String> {
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
        crate::address::normalize_address(&addr)
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
pub(super) fn ascii_host(url: &str) -> std::borrow::Cow<'_, str> {
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

pub(super) fn has_scheme(url: &str) -> bool {
    match url.find(':') {
        Some(i) if i > 0 => {
            let scheme = &url[..i];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        _ => false,
    }
}
