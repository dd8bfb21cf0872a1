//! Unsubscribe tokens: opaque, unforgeable, bound to one address and one issue, and valid for
//! as long as the secret (or the previous one, during a rotation) is.
//!
//! A token (version 2) is base64url, without padding, of
//!
//! ```text
//! 0x02 || nonce (12 bytes) || AES-256-GCM(key, nonce, aad, address || 0x00 || issue) || tag (16 bytes)
//! key   = HMAC-SHA256(secret, "newsletter unsubscribe v2 key")
//! nonce = HMAC-SHA256(key, address || 0x00 || issue)[..12]
//! aad   = "newsletter unsubscribe v2"
//! ```
//!
//! with the address in lower case. The nonce is derived from the plaintext, so a reader gets
//! the same token for the same issue every time (a resend carries the same link) and nothing
//! else is ever encrypted under that nonce. The address cannot be read from the URL; a
//! changed byte fails the tag. The website may verify tokens itself with the same steps.
//! Tokens of the first release (`base64url(address).tag`, readable and bound to no issue) are
//! accepted only while `unsubscribe.accept_release_0_tokens` is true.
//!
//! The secret must be at least [`MIN_SECRET_BYTES`] bytes and not repetitive: from one token of
//! their own, anyone can try guessed secrets offline, and a guessed secret unsubscribes anyone.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_VAR: &str = "NEWSLETTER_UNSUBSCRIBE_SECRET";
/// The secret before a rotation: its tokens stay valid while it is set.
pub const PREVIOUS_SECRET_VAR: &str = "NEWSLETTER_UNSUBSCRIBE_SECRET_PREVIOUS";

const VERSION: u8 = 2;
const AAD: &[u8] = b"newsletter unsubscribe v2";
/// The shortest secret accepted: `openssl rand -base64 32` makes 44 characters.
pub const MIN_SECRET_BYTES: usize = 32;
/// The fewest distinct bytes a secret may have (`aaaa...` or `changeme` repeated are refused).
const MIN_DISTINCT_BYTES: usize = 10;

/// A secret in the environment that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "{var} {why}: make one with `openssl rand -base64 32` and put it in the environment (a guessable secret lets anyone unsubscribe anyone)"
)]
pub struct WeakSecret {
    var: &'static str,
    why: String,
}

/// Why `secret` is too weak, if it is.
fn weakness(secret: &[u8]) -> Option<String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "is {} bytes long; it must be at least {MIN_SECRET_BYTES}",
            secret.len()
        ));
    }
    let distinct = secret.iter().collect::<std::collections::BTreeSet<_>>().len();
    (distinct < MIN_DISTINCT_BYTES).then(|| format!("repeats {distinct} different characters; it must be random"))
}

/// Bytes of the tag of a first-release token.
const LEGACY_TAG_LEN: usize = 16;
/// Longer tokens are refused before any work: an address and an issue name fit many times.
const MAX_TOKEN_LEN: usize = 1024;

/// What a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Lower case.
    pub email: String,
    /// The issue whose link it was (none for first-release tokens).
    pub issue: Option<String>,
}

/// The secret that makes tokens; only ever read from the environment.
#[derive(Clone)]
pub struct Secret {
    raw: Vec<u8>,
    key: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        let raw = bytes.into();
        let mut mac = HmacSha256::new_from_slice(&raw).expect("HMAC accepts keys of any length");
        mac.update(b"newsletter unsubscribe v2 key");
        let key = mac.finalize().into_bytes().into();
        Secret { raw, key }
    }

    /// For previews and dry runs without the real secret: their links are for looking at,
    /// never for sending.
    pub fn placeholder() -> Secret {
        Secret::new("placeholder: set NEWSLETTER_UNSUBSCRIBE_SECRET")
    }

    /// A key for another use of the same secret (VERP tokens), independent of this one's.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.raw).expect("HMAC accepts keys of any length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The secret of [`SECRET_VAR`], if set; a weak one is an error.
    pub fn from_env() -> Result<Option<Secret>, WeakSecret> {
        from_var(SECRET_VAR)
    }

    /// The previous secret of a rotation ([`PREVIOUS_SECRET_VAR`]), if set.
    pub fn previous_from_env() -> Result<Option<Secret>, WeakSecret> {
        from_var(PREVIOUS_SECRET_VAR)
    }

    /// Names the secret without telling it: 16 hex digits of a key derived from it, which the
    /// ledger keeps to notice a secret changed by mistake.
    pub fn fingerprint(&self) -> String {
        self.derive("newsletter secret fingerprint v1")[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.key).expect("a 32-byte key"))
    }

    /// The token for `email`'s link in `issue`.
    pub fn token(&self, email: &str, issue: &str) -> String {
        let mut plain = crate::address::key(email).into_bytes();
        plain.push(0);
        plain.extend_from_slice(issue.as_bytes());
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(&plain);
        let digest = mac.finalize().into_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        self.cipher()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut plain)
            .expect("a message this short always seals");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plain);
        B64.encode(out)
    }

    /// What a token names, if this secret made it.
    pub fn verify(&self, token: &str) -> Option<Claim> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let bytes = B64.decode(token).ok()?;
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = self.cipher().open_in_place(nonce, Aad::from(AAD), &mut sealed).ok()?;
        let plain = std::str::from_utf8(plain).ok()?;
        let (email, issue) = plain.split_once('\0')?;
        Some(Claim {
            email: email.to_owned(),
            issue: Some(issue.to_owned()),
        })
    }

    /// What a first-release token names, if this secret made it.
    fn verify_release_0(&self, token: &str) -> Option<Claim> {
        let (email, tag) = token.split_once('.')?;
        let email = String::from_utf8(B64.decode(email).ok()?).ok()?;
        let tag = B64.decode(tag).ok()?;
        if tag.len() != LEGACY_TAG_LEN {
            return None;
        }
        let mut mac = HmacSha256::new_from_slice(&self.raw).expect("HMAC accepts keys of any length");
        mac.update(b"unsubscribe\0");
        mac.update(crate::address::key(&email).as_bytes());
        mac.verify_truncated_left(&tag).ok()?;
        Some(Claim {
            email: crate::address::key(&email),
            issue: None,
        })
    }
}

fn from_var(var: &'static str) -> Result<Option<Secret>, WeakSecret> {
    let Some(value) = crate::config::secret(var) else {
        return Ok(None);
    };
    let value = value.into_bytes();
    match weakness(&value) {
        Some(why) => Err(WeakSecret { var, why }),
        None => Ok(Some(Secret::new(value))),
    }
}

/// The current secret, and the previous one during a rotation.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub current: Secret,
    pub previous: Option<Secret>,
    /// `unsubscribe.accept_release_0_tokens`: the first release's tokens still verify.
    pub accept_release_0: bool,
}

impl Secrets {
    /// The secrets in the environment; `None` when the current one is not set.
    pub fn from_env(accept_release_0: bool) -> Result<Option<Secrets>, WeakSecret> {
        let Some(current) = Secret::from_env()? else {
            return Ok(None);
        };
        Ok(Some(Secrets {
            current,
            previous: from_var(PREVIOUS_SECRET_VAR)?,
            accept_release_0,
        }))
    }

    pub fn verify(&self, token: &str) -> Option<Claim> {
        let secrets = std::iter::once(&self.current).chain(&self.previous);
        if token.contains('.') {
            if !self.accept_release_0 || token.len() > MAX_TOKEN_LEN {
                return None;
            }
            return secrets.into_iter().find_map(|s| s.verify_release_0(token));
        }
        secrets.into_iter().find_map(|s| s.verify(token))
    }
}

/// `base?token=...`, keeping any query the base already has.
pub fn url(base: &str, secret: &Secret, email: &str, issue: &str) -> String {
    url_with(base, &secret.token(email, issue))
}

/// `base?token=TOKEN`, keeping any query the base already has.
pub fn url_with(base: &str, token: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}token={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_are_opaque_and_stable() {
        let s = Secret::new("k");
        let t = s.token("Alice@Example.org", "2025-07");
        assert_eq!(
            s.verify(&t),
            Some(Claim {
                email: "alice@example.org".into(),
                issue: Some("2025-07".into())
            })
        );
        assert_eq!(t, s.token("alice@example.org", "2025-07"), "the same link every time");
        assert_ne!(t, s.token("alice@example.org", "2025-08"));
        let bytes = B64.decode(&t).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("alice"),
            "the address cannot be read"
        );
    }

    #[test]
    fn forged_moved_truncated_and_foreign_tokens_fail() {
        let s = Secret::new("k");
        let t = s.token("alice@example.org", "2025-07");
        assert!(Secret::new("other").verify(&t).is_none());
        let mut bytes = B64.decode(&t).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(s.verify(&B64.encode(&bytes)).is_none(), "one bit changed");
        assert!(s.verify(&t[..t.len() - 4]).is_none(), "truncated");
        assert!(s.verify("garbage").is_none());
        assert!(s.verify(&"A".repeat(5000)).is_none());
        assert!(s.verify("").is_none());
    }

    #[test]
    fn the_previous_secret_verifies_and_first_release_tokens_only_when_allowed() {
        let old = Secret::new("old");
        let t = old.token("bob@example.org", "2025-01");
        let rotated = Secrets {
            current: Secret::new("new"),
            previous: Some(old.clone()),
            accept_release_0: false,
        };
        assert_eq!(rotated.verify(&t).unwrap().email, "bob@example.org");
        assert!(
            Secrets {
                previous: None,
                ..rotated.clone()
            }
            .verify(&t)
            .is_none()
        );
        // The first release's form: base64url(address).tag.
        let mut mac = HmacSha256::new_from_slice(b"old").unwrap();
        mac.update(b"unsubscribe\0bob@example.org");
        let tag = mac.finalize().into_bytes();
        let legacy = format!("{}.{}", B64.encode("bob@example.org"), B64.encode(&tag[..16]));
        assert!(rotated.verify(&legacy).is_none(), "off by default");
        let allowing = Secrets {
            accept_release_0: true,
            ..rotated
        };
        assert_eq!(
            allowing.verify(&legacy).unwrap(),
            Claim {
                email: "bob@example.org".into(),
                issue: None
            }
        );
        assert!(
            Secret::new("old").verify(&legacy).is_none(),
            "a single secret reads v2 only"
        );
    }

    #[test]
    fn weak_secrets_are_named_with_the_way_to_make_one() {
        assert!(weakness(b"changeme").unwrap().contains("8 bytes long"));
        assert!(weakness(&[b'a'; 40]).unwrap().contains("repeats 1 different"));
        assert!(weakness(b"changemechangemechangemechangeme").is_some());
        assert_eq!(weakness(b"q3J0mXr8VbYc1pLw9sT2nZa5KfHd7GuE4oRiQy6eNjA="), None);
        let e = WeakSecret {
            var: SECRET_VAR,
            why: "is 8 bytes long; it must be at least 32".into(),
        };
        assert!(e.to_string().contains("openssl rand -base64 32"));
    }

    #[test]
    fn url_appends_the_token() {
        let s = Secret::new("k");
        assert!(url("https://x.org/u", &s, "a@b.org", "i").starts_with("https://x.org/u?token="));
        assert!(url("https://x.org/u?list=1", &s, "a@b.org", "i").starts_with("https://x.org/u?list=1&token="));
    }
}
