//! The signed path a counted link points at: `BASE/ISSUE/N/STAMP/MAC`. `STAMP` is the minute
//! the message was made (minutes since 1970), with `t` after it for a test send or a preview,
//! whose clicks are never counted; `MAC` authenticates the rest with a key derived from the
//! unsubscribe secret. Nothing in it is the reader's: every message made in that minute has
//! the same links.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::unsubscribe::Secret;

/// The bytes of the MAC kept: 96 bits, 16 characters.
const MAC_BYTES: usize = 12;

/// What a message's links say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Minutes since 1970 (UTC) when the message was made.
    pub minute: u64,
    /// A test send's or a preview's: never counted.
    pub test: bool,
}

impl Stamp {
    pub fn at(time: std::time::SystemTime, test: bool) -> Stamp {
        let secs = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Stamp {
            minute: secs / 60,
            test,
        }
    }

    fn text(self) -> String {
        format!("{}{}", self.minute, if self.test { "t" } else { "" })
    }

    fn parse(text: &str) -> Option<Stamp> {
        let (digits, test) = match text.strip_suffix('t') {
            Some(d) => (d, true),
            None => (text, false),
        };
        if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Stamp {
            minute: digits.parse().ok()?,
            test,
        })
    }
}

/// Makes and checks the signed paths of one secret.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

/// A path that passed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub issue: String,
    pub n: u32,
    pub stamp: Stamp,
}

impl Signer {
    pub fn new(secret: &Secret) -> Signer {
        Signer {
            key: secret.derive("newsletter click path v1"),
        }
    }

    fn mac(&self, issue: &str, n: u32, stamp: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(format!("{issue}\n{n}\n{stamp}").as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..MAC_BYTES])
    }

    /// `ISSUE/N/STAMP/MAC`, to put after the base.
    pub fn path(&self, issue: &str, n: u32, stamp: Stamp) -> String {
        let stamp = stamp.text();
        let mac = self.mac(issue, n, &stamp);
        format!("{issue}/{n}/{stamp}/{mac}")
    }

    /// The target of `ISSUE/N/STAMP/MAC`, when it is one of ours, unaltered.
    pub fn check(&self, path: &str) -> Option<Target> {
        let mut parts = path.split('/');
        let (issue, n, stamp, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || issue.is_empty() || issue.len() > 100 || n.len() > 6 {
            return None;
        }
        let expected = self.mac(issue, n.parse().ok()?, stamp);
        // Compared in constant time: the MAC is the only secret-dependent part.
        let same = expected.len() == mac.len()
            && expected.bytes().zip(mac.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        same.then_some(())?;
        Some(Target {
            issue: issue.to_owned(),
            n: n.parse().ok()?,
            stamp: Stamp::parse(stamp)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_checks_and_any_change_to_it_does_not() {
        let signer = Signer::new(&Secret::new(vec![7u8; 32]));
        let stamp = Stamp {
            minute: 29_000_000,
            test: false,
        };
        let path = signer.path("2025-07", 12, stamp);
        assert_eq!(
            signer.check(&path),
            Some(Target {
                issue: "2025-07".into(),
                n: 12,
                stamp
            })
        );
        let parts: Vec<&str> = path.split('/').collect();
        for altered in [
            format!("2025-08/12/{}/{}", parts[2], parts[3]),
            format!("2025-07/13/{}/{}", parts[2], parts[3]),
            format!("2025-07/12/{}t/{}", parts[2], parts[3]),
            format!("2025-07/12/{}/{}", parts[2], &parts[3][1..]),
            format!("{path}/x"),
            "2025-07/12".to_owned(),
        ] {
            assert_eq!(signer.check(&altered), None, "{altered}");
        }
        let other = Signer::new(&Secret::new(vec![8u8; 32]));
        assert_eq!(other.check(&path), None);
        let test = signer.path("2025-07", 1, Stamp { minute: 5, test: true });
        assert!(signer.check(&test).is_some_and(|t| t.stamp.test));
    }
}
