//! What the handlers read from a request (query parameters, where it came from) and how an
//! address is shown back: helpers every handler may use, so no handler imports another.

use axum::http::{HeaderMap, Uri};
use serde_json::json;

use super::Peer;

/// A query parameter, percent-decoded.
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a****@example.org`: enough for a reader with two addresses to know which, too little to
/// read the address off a shared screen. The stars do not count the hidden characters.
pub fn mask(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}****@{domain}")
        }
        None => "****".to_owned(),
    }
}

/// Where a request came from, as evidence: the peer, and what a proxy in front says.
pub fn remote(peer: Option<&Peer>, headers: &HeaderMap) -> serde_json::Value {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect::<String>());
    json!({ "remote": peer.map(|p| p.0.ip().to_string()), "forwarded_for": forwarded })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_takes_plus_as_space_and_keeps_a_broken_escape() {
        assert_eq!(percent_decode("a%2Bb+c%"), "a+b c%");
    }

    #[test]
    fn masked_addresses_keep_the_first_character_and_the_domain() {
        assert_eq!(mask("alice@example.org"), "a****@example.org");
        assert_eq!(mask("b@x.org"), "b****@x.org");
    }
}
