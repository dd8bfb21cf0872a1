//! VERP: a per-recipient envelope sender, `bounces+{token}@domain`, so that a report comes
//! back to an address that names the issue and the recipient, whatever the report says.
//!
//! ```text
//! token = ISSUE "." base32(hash || tag)     (lower case, no padding)
//! hash  = the 12 bytes our Message-ID carries for this issue and recipient
//! tag   = HMAC-SHA256(derive(secret, "newsletter verp v1"), ISSUE || 0x00 || hash)[..5]
//! ```
//!
//! Lower-case base32 survives servers that change the case of local parts; 40 bits of tag
//! make a forged report naming a reader a one-in-a-trillion guess.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::unsubscribe::Secret;

const HASH_LEN: usize = 12;
const TAG_LEN: usize = 5;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Makes and reads the tokens of one secret.
#[derive(Clone)]
pub struct Verp {
    key: [u8; 32],
}

impl Verp {
    pub fn new(secret: &Secret) -> Verp {
        Verp {
            key: secret.derive("newsletter verp v1"),
        }
    }

    fn tag(&self, issue: &str, hash: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(issue.as_bytes());
        mac.update(&[0]);
        mac.update(hash);
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
        tag
    }

    /// The token for the message whose Message-ID is `<{issue}.{hex}@...>`; `None` for other
    /// Message-IDs (test sends).
    pub fn token(&self, issue: &str, message_id: &str) -> Option<String> {
        let hash = message_hash(issue, message_id)?;
        let mut bytes = hash.to_vec();
        bytes.extend_from_slice(&self.tag(issue, &hash));
        Some(format!("{issue}.{}", base32(&bytes)))
    }

    /// The issue and Message-ID hash (hex) a token names, if this secret made it.
    pub fn verify(&self, token: &str) -> Option<(String, String)> {
        let (issue, encoded) = token.rsplit_once('.')?;
        let bytes = unbase32(&encoded.to_ascii_lowercase())?;
        if bytes.len() != HASH_LEN + TAG_LEN || issue.is_empty() {
            return None;
        }
        let (hash, tag) = bytes.split_at(HASH_LEN);
        // Constant time: the tag is compared as a MAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(issue.as_bytes());
        mac.update(&[0]);
        mac.update(hash);
        mac.verify_truncated_left(tag).ok()?;
        Some((issue.to_owned(), hex(hash)))
    }
}

/// `bounces+{token}@lists.example.org` with the token filled in.
pub fn address(template: &str, token: &str) -> String {
    template.replace("{token}", token)
}

/// The token in `address` if it has the shape of `template` (compared without case).
pub fn token_in<'a>(template: &str, address: &'a str) -> Option<&'a str> {
    let (prefix, suffix) = template.split_once("{token}")?;
    let lower = address.to_ascii_lowercase();
    if address.len() <= prefix.len() + suffix.len()
        || !lower.starts_with(&prefix.to_ascii_lowercase())
        || !lower.ends_with(&suffix.to_ascii_lowercase())
    {
        return None;
    }
    address.get(prefix.len()..address.len() - suffix.len())
}

fn message_hash(issue: &str, message_id: &str) -> Option<[u8; HASH_LEN]> {
    let rest = message_id.strip_prefix('<')?.strip_prefix(issue)?.strip_prefix('.')?;
    let hex = rest.split('@').next()?;
    if hex.len() != HASH_LEN * 2 {
        return None;
    }
    let mut hash = [0; HASH_LEN];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_changes() {
        let verp = Verp::new(&Secret::new("s3cret"));
        let id = "<2025-07.0123456789abcdef01234567@openinfra.dev>";
        let token = verp.token("2025-07", id).unwrap();
        assert!(token.len() <= 40, "{token}");
        let address = address("bounces+{token}@lists.example.org", &token);
        assert!(address.split('@').next().unwrap().len() <= 64);
        let upper = address.to_uppercase();
        let found = token_in("bounces+{token}@lists.example.org", &upper).unwrap();
        assert_eq!(
            verp.verify(found),
            Some(("2025-07".to_owned(), "0123456789abcdef01234567".to_owned()))
        );
        let mut forged = token.clone();
        forged.replace_range(10..11, if &token[10..11] == "a" { "b" } else { "a" });
        assert_eq!(verp.verify(&forged), None);
        assert_eq!(Verp::new(&Secret::new("other")).verify(&token), None);
        assert_eq!(verp.token("2025-07", "<small.test.x@y>"), None);
    }
}
