//! Signed unsubscribe tokens: the address and an HMAC-SHA256 tag, so the website's endpoint
//! can unsubscribe a reader from the link alone without a database lookup.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag kept in the token: 128 bits are far beyond guessing, and keep URLs short.
const TAG_LEN: usize = 16;

/// The secret that signs tokens; only ever read from `NEWSLETTER_UNSUBSCRIBE_SECRET`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub const SECRET_VAR: &str = "NEWSLETTER_UNSUBSCRIBE_SECRET";

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// For previews and dry runs without the real secret: their links are for looking at,
    /// never for sending.
    pub fn placeholder() -> Secret {
        Secret::new("placeholder: set NEWSLETTER_UNSUBSCRIBE_SECRET")
    }

    pub fn from_env() -> Option<Secret> {
        std::env::var(SECRET_VAR)
            .ok()
            .filter(|s| !s.is_empty())
            .map(Secret::new)
    }

    fn mac(&self, email: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(b"unsubscribe\0");
        mac.update(email.to_lowercase().as_bytes());
        mac
    }

    pub fn token(&self, email: &str) -> String {
        let tag = self.mac(email).finalize().into_bytes();
        format!("{}.{}", B64.encode(email.to_lowercase()), B64.encode(&tag[..TAG_LEN]))
    }

    /// The address a token was made for, if its signature is valid.
    pub fn verify(&self, token: &str) -> Option<String> {
        let (email, tag) = token.split_once('.')?;
        let email = String::from_utf8(B64.decode(email).ok()?).ok()?;
        let tag = B64.decode(tag).ok()?;
        if tag.len() != TAG_LEN {
            return None;
        }
        self.mac(&email).verify_truncated_left(&tag).ok()?;
        Some(email)
    }
}

/// `base?token=...`, keeping any query the base already has.
pub fn url(base: &str, secret: &Secret, email: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}token={}", secret.token(email))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_ignores_case() {
        let s = Secret::new("k");
        let t = s.token("Alice@Example.org");
        assert_eq!(s.verify(&t).as_deref(), Some("alice@example.org"));
    }

    #[test]
    fn forged_or_foreign_tokens_fail() {
        let s = Secret::new("k");
        let t = s.token("alice@example.org");
        assert!(Secret::new("other").verify(&t).is_none());
        let (_, tag) = t.split_once('.').unwrap();
        let forged = format!("{}.{tag}", B64.encode("mallory@example.org"));
        assert!(s.verify(&forged).is_none());
        assert!(s.verify("garbage").is_none());
    }

    #[test]
    fn url_appends_the_token() {
        let s = Secret::new("k");
        assert!(url("https://x.org/u", &s, "a@b.org").starts_with("https://x.org/u?token="));
        assert!(url("https://x.org/u?list=1", &s, "a@b.org").starts_with("https://x.org/u?list=1&token="));
    }
}
