//! `dkim:`: the signing keys' selectors and domain (the keys come from the environment).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Dkim {
    /// The selector of the DKIM DNS record; signing is on when it is set. The private key
    /// comes only from NEWSLETTER_DKIM_PRIVATE_KEY: RSA in PKCS#1 or PKCS#8 PEM (or Ed25519
    /// with `algorithm: ed25519`).
    pub selector: Option<String>,
    /// A second signature with Ed25519 (RFC 8463) under this selector; the key (base64 of the
    /// 32-byte seed, or PKCS#8 PEM) comes only from NEWSLETTER_DKIM_ED25519_PRIVATE_KEY.
    pub ed25519_selector: Option<String>,
    /// The signing domain; by default that of `from.address`.
    pub domain: Option<String>,
    /// The type of the key under `selector`.
    pub algorithm: DkimAlgorithm,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    #[default]
    Rsa,
    Ed25519,
}
