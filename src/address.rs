//! An address as it goes on the envelope, and the one key the ledger knows it by.
//!
//! One mailbox has many spellings: `"victim"@example.org`, `"vic\tim"@example.org` and
//! `Victim@EXAMPLE.org` all reach victim@example.org at every mail server we will meet. Every
//! standing (a complaint, a suppression, a forgotten address) must hold for all of them, so
//! [`normalize_address`] takes the quotes and quoted-pairs away where the content is a plain
//! dot-atom (RFC 5322 3.4.1: the two forms are the same local part) and refuses the rest, and
//! [`key`] is the only form anything stores or looks up.

use std::borrow::Cow;

/// RFC 5321 limits: 64 octets of local part, 254 of address.
const MAX_LOCAL: usize = 64;

const MAX_ADDRESS: usize = 254;

/// RFC 5322 `atext` besides letters and digits.
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// Trims an address, checks it, unquotes a quoted local part that holds a plain name, and
/// converts an internationalized domain to ASCII. The local part keeps its case (it is what
/// the envelope carries); [`key`] is the form to compare and store.
pub fn normalize_address(raw: &str) -> std::result::Result<String, &'static str> {
    let addr = raw.trim();
    if addr.is_empty() {
        return Err("empty");
    }
    if addr.len() > MAX_ADDRESS {
        return Err("longer than 254 characters");
    }
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err("no @");
    };
    let local = unquote(local)?;
    // Composed and decomposed accents are one mailbox to a person and two strings to us.
    let local = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(&local);
    if local.is_empty() || local.len() > MAX_LOCAL {
        return Err("the part before @ must have 1 to 64 characters");
    }
    if !is_dot_atom(&local) {
        return Err("the part before @ holds spaces, quotes or other special characters");
    }
    if domain.starts_with('[') {
        return Err("an address at an IP address ([...]) is not accepted: give the domain's name");
    }
    let ascii_domain = idna::domain_to_ascii(domain).map_err(|_| "the domain is not a valid name")?;
    if ascii_domain.ends_with('.') {
        return Err("the domain ends with a dot");
    }
    if !ascii_domain.contains('.') || ascii_domain.starts_with('.') {
        return Err("the domain needs a dot, like example.org");
    }
    let normalized = format!("{local}@{ascii_domain}");
    normalized
        .parse::<lettre::Address>()
        .map_err(|_| "not a valid email address")?;
    if normalized.len() > MAX_ADDRESS {
        return Err("longer than 254 characters");
    }
    Ok(normalized)
}

/// The canonical form of an address: [`normalize_address`] in lower case. Mail servers that
/// tell `Victim` from `victim` are not met in practice, and a reader who complained as one
/// must never be mailed as the other.
pub fn canonical(raw: &str) -> std::result::Result<String, &'static str> {
    normalize_address(raw).map(|a| a.to_lowercase())
}

/// The domain of an address as DNS names it (lowercase, no trailing `>` or dot); empty
/// when there is no `@`.
pub fn domain(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .trim()
        .trim_end_matches('>')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The ledger's key for an address from anywhere (a form, a report, a command line): its
/// [`canonical`] form, or for text that is no acceptable address, that text trimmed and in
/// lower case, which no stored key of an accepted address can equal.
pub fn key(raw: &str) -> String {
    // Nearly every address the ledger is asked about is its own key already (plain ASCII in
    // lower case): every step of `normalize_address` leaves such text as it is, and so does
    // the fallback, so it is returned without them (the send asks per recipient).
    if raw
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase() && b != b'"' && b != b'\\')
    {
        return raw.to_owned();
    }
    canonical(raw).unwrap_or_else(|_| raw.trim().to_lowercase())
}

/// A local part without its quotes when it was quoted: the content with its quoted-pairs
/// resolved. Whether the result is acceptable is [`is_dot_atom`]'s to say.
fn unquote(local: &str) -> std::result::Result<Cow<'_, str>, &'static str> {
    let Some(inner) = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .filter(|_| local.len() >= 2)
    else {
        return Ok(Cow::Borrowed(local));
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or("the quoted part before @ ends in a backslash")?),
            '"' => return Err("the part before @ holds a stray quote"),
            c => out.push(c),
        }
    }
    Ok(Cow::Owned(out))
}

/// RFC 5322 `dot-atom-text`, with RFC 6531's non-ASCII letters: atoms of `atext` joined by
/// single dots. Unicode spaces and controls are not letters.
fn is_dot_atom(s: &str) -> bool {
    s.split('.').all(|atom| {
        !atom.is_empty()
            && atom.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || ATEXT_SPECIALS.contains(c)
                    || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_spellings_of_a_plain_name_are_the_plain_name() {
        for spelling in [
            "victim@example.org",
            "\"victim\"@example.org",
            "\"vic\\tim\"@example.org",
            "\"\\v\\i\\c\\t\\i\\m\"@example.org",
            " Victim@EXAMPLE.org ",
        ] {
            assert_eq!(key(spelling), "victim@example.org", "{spelling}");
        }
        assert_eq!(key("\"Vic.tim\"@example.org"), "vic.tim@example.org");
        assert_eq!(
            normalize_address("\"Victim\"@example.org").unwrap(),
            "Victim@example.org"
        );
    }

    #[test]
    fn quoted_content_that_is_no_plain_name_is_refused_with_why() {
        for (spelling, why) in [
            ("\"vic tim\"@example.org", "spaces, quotes"),
            ("\"vic@tim\"@example.org", "spaces, quotes"),
            ("\".victim\"@example.org", "spaces, quotes"),
            ("\"a..b\"@example.org", "spaces, quotes"),
            ("\"\"@example.org", "1 to 64"),
            ("\"victim\\\"@example.org", "backslash"),
            ("vic\"tim@example.org", "spaces, quotes"),
            ("victim@[127.0.0.1]", "IP address"),
        ] {
            let err = canonical(spelling).unwrap_err();
            assert!(err.contains(why), "{spelling}: {err}");
        }
    }

    #[test]
    fn the_quick_path_gives_the_key_the_whole_rules_give() {
        for plain in [
            "victim@example.org",
            "a.b+c@sub.example.org",
            "x@xn--bcher-kva.de",
            "no-at-sign",
            "two@@example.org",
            "trailing@example.org.",
            "under_score@ex_ample.org",
            "a@b",
            "",
        ] {
            let whole = canonical(plain).unwrap_or_else(|_| plain.trim().to_lowercase());
            assert_eq!(key(plain), whole, "{plain}");
        }
    }

    #[test]
    fn composed_and_decomposed_accents_are_one_key() {
        assert_eq!(key("jo\u{0308}rg@example.org"), key("j\u{00f6}rg@example.org"));
        assert_eq!(key("J\u{00d6}RG@example.org"), "j\u{00f6}rg@example.org");
    }
}
