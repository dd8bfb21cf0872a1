//! DKIM signatures (RFC 6376) over the exact bytes that go out: RSA-SHA256, and Ed25519-SHA256
//! (RFC 8463) as a second signature when a second key is given, so that verifiers without
//! Ed25519 still see a valid RSA one.
//!
//! Ours rather than lettre's: lettre hashes its header list before the multipart
//! `Content-Type` is written, so every signature that covered it failed to verify. Signing
//! the formatted message means whatever is sent is what was signed. The keys are aws-lc-rs's
//! (ring's API over AWS-LC), which signs in constant time (the `rsa` crate has
//! RUSTSEC-2023-0071) and, where the CPU has AVX-512 IFMA, carries OpenSSL's RSAZ code: RSA-2048
//! in 259 µs against ring's 461 on the machine of docs/benchmarks.md, level with `openssl
//! speed` (ring dropped RSAZ).

use anyhow::{Result, anyhow};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::{Config, DkimAlgorithm};

pub const KEY_VAR: &str = "NEWSLETTER_DKIM_PRIVATE_KEY";
pub const ED25519_KEY_VAR: &str = "NEWSLETTER_DKIM_ED25519_PRIVATE_KEY";

/// Signed once per occurrence and once more, so that no such header can be added in transit
/// without breaking the signature (RFC 6376 8.15): the ones a reader sees, and the ones Gmail
/// and Yahoo require signed for one-click unsubscribe (RFC 8058).
const OVERSIGNED: &[&str] = &[
    "from",
    "to",
    "subject",
    "date",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// Signed once per occurrence when present.
const SIGNED: &[&str] = &[
    "message-id",
    "list-id",
    "feedback-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

struct Selector {
    name: String,
    key: Key,
}

/// The configured keys of one signing domain.
pub struct Signer {
    domain: String,
    selectors: Vec<Selector>,
    /// `t=`: the time the messages of this run were made.
    timestamp: u64,
}

/// A TXT record to publish: `NAME IN TXT "VALUE"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    pub value: String,
}

impl Signer {
    /// The signer `dkim` configures, or none when no selector is set. Keys come from `env`
    /// (the process environment in the binary).
    pub fn from_config(config: &Config, env: impl Fn(&str) -> Option<String>) -> Result<Option<Signer>> {
        let dkim = &config.dkim;
        let mut selectors = Vec::new();
        if let Some(name) = &dkim.selector {
            let text = env(KEY_VAR).ok_or_else(|| {
                anyhow!(
                    "dkim.selector is set but {KEY_VAR} is not: put the private key in the environment, or name its file in {KEY_VAR}_FILE"
                )
            })?;
            let key = match dkim.algorithm {
                DkimAlgorithm::Rsa => rsa_key(&text).map_err(|e| anyhow!("{KEY_VAR}: {e}"))?,
                DkimAlgorithm::Ed25519 => ed25519_key(&text).map_err(|e| anyhow!("{KEY_VAR}: {e}"))?,
            };
            selectors.push(Selector {
                name: name.clone(),
                key,
            });
        }
        if let Some(name) = &dkim.ed25519_selector {
            let text = env(ED25519_KEY_VAR).ok_or_else(|| {
                anyhow!(
                    "dkim.ed25519_selector is set but {ED25519_KEY_VAR} is not: put the Ed25519 key in the environment, or name its file in {ED25519_KEY_VAR}_FILE"
                )
            })?;
            let key = ed25519_key(&text).map_err(|e| anyhow!("{ED25519_KEY_VAR}: {e}"))?;
            selectors.push(Selector {
                name: name.clone(),
                key,
            });
        }
        if selectors.is_empty() {
            return Ok(None);
        }
        // RSA first: a verifier that stops at the first signature it understands finds it.
        selectors.sort_by_key(|s| matches!(s.key, Key::Ed25519(_)));
        let domain = match &dkim.domain {
            Some(d) => d.clone(),
            None => config
                .from
                .address
                .rsplit_once('@')
                .map(|(_, d)| d.to_owned())
                .ok_or_else(|| anyhow!("dkim.domain is not set and from.address has no domain"))?,
        };
        Ok(Some(Signer {
            domain,
            selectors,
            timestamp: crate::clock::message_date()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }))
    }

    /// The records to publish for the configured keys.
    pub fn dns_records(&self) -> Vec<DnsRecord> {
        self.selectors
            .iter()
            .map(|s| {
                let (kind, public) = match &s.key {
                    Key::Rsa(k) => ("rsa", subject_public_key_info(k.public_key().as_ref())),
                    Key::Ed25519(k) => ("ed25519", k.public_key().as_ref().to_vec()),
                };
                DnsRecord {
                    name: format!("{}._domainkey.{}", s.name, self.domain),
                    value: format!("v=DKIM1; k={kind}; p={}", BASE64.encode(public)),
                }
            })
            .collect()
    }

    /// `message` (CRLF line ends, as formatted for SMTP) with a DKIM-Signature header per key
    /// in front of it.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let body = split_head(message).1;
        self.sign_hashed(message, &body_hash(body))
    }

    /// [`Signer::sign`] with the body's hash already made (from the pieces of a splice).
    pub fn sign_hashed(&self, message: &[u8], body_hash: &BodyHash) -> Vec<u8> {
        let head = split_head(message).0;
        let body_hash = BASE64.encode(body_hash.0.as_ref());
        let fields = header_fields(head);
        let (names, signed) = signed_headers(&fields);
        let mut out = Vec::with_capacity(message.len() + 1024);
        for selector in &self.selectors {
            let algorithm = match selector.key {
                Key::Rsa(_) => "rsa-sha256",
                Key::Ed25519(_) => "ed25519-sha256",
            };
            let unsigned = format!(
                "DKIM-Signature: v=1; a={algorithm}; c=relaxed/relaxed; d={}; s={}; t={};\r\n\th={};\r\n\tbh={body_hash};\r\n\tb=",
                self.domain,
                selector.name,
                self.timestamp,
                fold_list(&names),
            );
            let mut data = signed.clone();
            relaxed_header(&unsigned, &mut data);
            data.truncate(data.len() - 2); // the signature's own header is hashed without CRLF
            let signature = match &selector.key {
                Key::Rsa(key) => {
                    let mut sig = vec![0; key.public_modulus_len()];
                    key.sign(
                        &RSA_PKCS1_SHA256,
                        &aws_lc_rs::rand::SystemRandom::new(),
                        &data,
                        &mut sig,
                    )
                    .expect("a buffer of the modulus' length");
                    sig
                }
                // RFC 8463: Ed25519 signs the SHA-256 hash of the data, not the data.
                Key::Ed25519(key) => key
                    .sign(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data).as_ref())
                    .as_ref()
                    .to_vec(),
            };
            out.extend_from_slice(unsigned.as_bytes());
            out.extend_from_slice(fold_base64(&BASE64.encode(signature)).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(message);
        out
    }
}

/// The header (with its last CRLF) and the body of a formatted message.
fn split_head(message: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &b""[..]),
    }
}

/// The relaxed body hash (`bh=`).
pub struct BodyHash(aws_lc_rs::digest::Digest);

impl AsRef<[u8]> for BodyHash {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref()
    }
}

/// A body hash made from a body's pieces in order, each given in canonical form (see
/// [`relaxed_piece`]). Cloned after a prefix that every message shares, so that the prefix is
/// hashed once.
#[derive(Clone)]
pub struct BodyHasher(aws_lc_rs::digest::Context);

impl Default for BodyHasher {
    fn default() -> Self {
        BodyHasher(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
}

impl BodyHasher {
    pub fn update(&mut self, canonical: &[u8]) {
        self.0.update(canonical);
    }

    /// The hash of a body that does not end in empty lines (relaxed canonicalization drops
    /// those; a MIME body ends with its closing boundary).
    pub fn finish(self) -> BodyHash {
        BodyHash(self.0.finish())
    }
}

/// A piece of a body in relaxed canonicalization, or `None` when it is canonical as it
/// stands. Lines are canonicalized within the piece, so a piece must start a line or follow
/// a byte other than white space, and must not end in white space unless a CRLF ends it.
pub fn relaxed_piece(piece: &[u8]) -> Option<Vec<u8>> {
    let changes = memchr::memchr(b'\t', piece).is_some()
        || memchr::memmem::find(piece, b"  ").is_some()
        || memchr::memmem::find(piece, b" \r\n").is_some();
    if !changes {
        return None;
    }
    let mut out = Vec::with_capacity(piece.len());
    for line in piece.split_inclusive(|&b| b == b'\n') {
        let (text, end) = match line.strip_suffix(b"\r\n") {
            Some(text) => (text, &b"\r\n"[..]),
            None => (line, &b""[..]),
        };
        let keep = if end.is_empty() {
            text.len()
        } else {
            text.iter()
                .rposition(|b| !matches!(b, b' ' | b'\t'))
                .map_or(0, |i| i + 1)
        };
        squeeze(text[..keep].iter().copied(), true, &mut out);
        out.extend_from_slice(end);
    }
    Some(out)
}

/// One header field as it stands in the message: its name and its whole text (name, colon,
/// value with any folding, final CRLF).
struct Field<'a> {
    name: String,
    raw: &'a [u8],
}

fn header_fields(head: &[u8]) -> Vec<Field<'_>> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let end = memchr::memchr(b'\n', &head[i..]).map_or(head.len(), |n| i + n + 1);
        // A line starting with white space continues the field before it.
        if end >= head.len() || !matches!(head[end], b' ' | b'\t') {
            let raw = &head[start..end];
            if let Some(colon) = memchr::memchr(b':', raw) {
                let name = String::from_utf8_lossy(&raw[..colon]).trim().to_ascii_lowercase();
                fields.push(Field { name, raw });
            }
            start = end;
        }
        i = end;
    }
    fields
}

/// The `h=` names and the canonical text they stand for. A name occurring n times is listed
/// n times, taking the fields from the last up (RFC 6376 5.4.2); an over-signed name once more,
/// which matches no field and so forbids adding one.
fn signed_headers(fields: &[Field<'_>]) -> (Vec<&'static str>, Vec<u8>) {
    let mut names = Vec::new();
    let mut data = Vec::new();
    for &name in OVERSIGNED.iter().chain(SIGNED) {
        let present: Vec<&Field<'_>> = fields.iter().filter(|f| f.name == name).collect();
        for field in present.iter().rev() {
            names.push(name);
            relaxed_header(&String::from_utf8_lossy(field.raw), &mut data);
        }
        if OVERSIGNED.contains(&name) {
            names.push(name);
        }
    }
    (names, data)
}

/// Relaxed header canonicalization (RFC 6376 3.4.2) of one field, appended with CRLF.
fn relaxed_header(raw: &str, out: &mut Vec<u8>) {
    let (name, value) = raw.split_once(':').unwrap_or((raw, ""));
    out.extend_from_slice(name.trim_end().to_ascii_lowercase().as_bytes());
    out.push(b':');
    squeeze(value.bytes().filter(|c| !matches!(c, b'\r' | b'\n')), false, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends `bytes` with each run of spaces and tabs as one space, none at the end, and none
/// at the start unless `leading`.
fn squeeze(bytes: impl Iterator<Item = u8>, leading: bool, out: &mut Vec<u8>) {
    let mut space = false;
    let mut started = leading;
    for c in bytes {
        if matches!(c, b' ' | b'\t') {
            space = started;
        } else {
            if space {
                out.push(b' ');
                space = false;
            }
            out.push(c);
            started = true;
        }
    }
}

/// SHA-256 of the body in relaxed canonicalization (RFC 6376 3.4.4): white space runs become
/// one space, trailing white space and trailing empty lines go, a non-empty body ends in CRLF.
/// Runs of lines that are canonical already (nearly all of our quoted-printable bodies) are
/// hashed as they stand, in one piece: a hash update per line cost a tenth of the signing.
pub(crate) fn body_hash(body: &[u8]) -> BodyHash {
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    // body[span_start..span_end] is canonical and waits to be hashed; after it, `empty`
    // empty lines wait for a line with content (trailing ones are dropped), each exactly
    // CRLF in the body while `empty_clean`.
    let (mut span_start, mut span_end) = (0usize, 0usize);
    let (mut empty, mut empty_clean) = (0usize, true);
    let mut line_buf = Vec::new();
    let mut pos = 0usize;
    for raw in body.split_inclusive(|&b| b == b'\n') {
        let at = pos;
        pos += raw.len();
        let crlf = raw.ends_with(b"\r\n");
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let end = line
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(0, |i| i + 1);
        if end == 0 {
            empty += 1;
            empty_clean &= raw == b"\r\n";
            continue;
        }
        let clean = crlf
            && end == line.len()
            && memchr::memchr(b'\t', line).is_none()
            && memchr::memmem::find(line, b"  ").is_none();
        if clean && empty_clean && at == span_end + 2 * empty {
            span_end = pos;
            empty = 0;
            continue;
        }
        hash.update(&body[span_start..span_end]);
        for _ in 0..empty {
            hash.update(b"\r\n");
        }
        (empty, empty_clean) = (0, true);
        if clean {
            (span_start, span_end) = (at, pos);
        } else {
            line_buf.clear();
            squeeze(line[..end].iter().copied(), true, &mut line_buf);
            line_buf.extend_from_slice(b"\r\n");
            hash.update(&line_buf);
            (span_start, span_end) = (pos, pos);
        }
    }
    hash.update(&body[span_start..span_end]);
    BodyHash(hash.finish())
}

/// `a:b:c` folded so that no line of the header grows past about 78 characters.
fn fold_list(names: &[&str]) -> String {
    let mut out = String::new();
    let mut column = 3; // "\th="
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(':');
            column += 1;
            if column + name.len() > 76 {
                out.push_str("\r\n\t ");
                column = 2;
            }
        }
        out.push_str(name);
        column += name.len();
    }
    out
}

/// The signature's base64 on lines of 72 characters; verifiers drop the white space.
fn fold_base64(b64: &str) -> String {
    let chunks: Vec<&str> = b64
        .as_bytes()
        .chunks(72)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    chunks.join("\r\n\t ")
}

/// Why a signing key cannot be used, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The DER inside a PEM block with `label`, if the text is PEM at all.
fn pem(text: &str) -> Option<(String, Result<Vec<u8>, KeyError>)> {
    let text = text.trim();
    let rest = text.strip_prefix("-----BEGIN ")?;
    let (label, rest) = rest.split_once("-----")?;
    let end = format!("-----END {label}-----");
    let body = rest.split(end.as_str()).next()?;
    let b64: String = body.split_whitespace().collect();
    Some((
        label.to_owned(),
        BASE64
            .decode(b64)
            .map_err(|e| KeyError(format!("the PEM block's base64 is damaged ({e})"))),
    ))
}

fn rsa_key(text: &str) -> Result<Key, KeyError> {
    let Some((label, der)) = pem(text) else {
        return Err(KeyError(
            "not a PEM key: expected -----BEGIN RSA PRIVATE KEY----- (PKCS#1) or -----BEGIN PRIVATE KEY----- (PKCS#8)"
                .into(),
        ));
    };
    let der = der?;
    let key = match label.as_str() {
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(KeyError(
                "the key is encrypted: decrypt it first (openssl pkey -in KEY -out PLAIN)".into(),
            ));
        }
        other => {
            return Err(KeyError(format!(
                "a PEM block of type `{other}` is not an RSA private key"
            )));
        }
    };
    key.map(Key::Rsa).map_err(|e| KeyError({
        let why = e.to_string();
        if why.contains("TooSmall") || why.contains("too small") {
            "the RSA key is shorter than 2048 bits, which receivers no longer trust: make a new one with `openssl genrsa 2048`".to_owned()
        } else {
            format!("not a valid RSA private key ({why})")
        }
    }))
}

fn ed25519_key(text: &str) -> Result<Key, KeyError> {
    match pem(text) {
        Some((label, der)) if label == "PRIVATE KEY" => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der?)
            .map(Key::Ed25519)
            .map_err(|e| KeyError(format!("not a valid Ed25519 PKCS#8 key ({e})"))),
        Some((label, _)) => Err(KeyError(format!(
            "a PEM block of type `{label}` is not an Ed25519 key: give PKCS#8 (-----BEGIN PRIVATE KEY-----) or base64 of the 32-byte seed"
        ))),
        None => {
            let seed = BASE64.decode(text.trim()).map_err(|_| {
                KeyError("not PEM and not base64: give PKCS#8 PEM or base64 of the 32-byte seed".to_owned())
            })?;
            if seed.len() != 32 {
                return Err(KeyError(format!(
                    "the base64 holds {} bytes; an Ed25519 seed is 32",
                    seed.len()
                )));
            }
            Ed25519KeyPair::from_seed_unchecked(&seed)
                .map(Key::Ed25519)
                .map_err(|e| KeyError(format!("not a valid Ed25519 seed ({e})")))
        }
    }
}

/// An RSAPublicKey (PKCS#1 DER) inside a SubjectPublicKeyInfo, the form DKIM records carry.
fn subject_public_key_info(rsa_public_key: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(rsa_public_key);
    let mut inner = ALGORITHM.to_vec();
    inner.extend(der(0x03, &bit_string));
    der(0x30, &inner)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_header_canonicalization_follows_rfc_6376_examples() {
        // RFC 6376 3.4.6.
        let mut out = Vec::new();
        relaxed_header("A: X\r\n", &mut out);
        relaxed_header("B : Y\t\r\n\tZ  \r\n", &mut out);
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
    }

    #[test]
    fn relaxed_body_canonicalization_follows_rfc_6376_examples() {
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b" C\r\nD E\r\n");
        assert_eq!(body_hash(body).as_ref(), expected.as_ref());
        let empty = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"");
        assert_eq!(body_hash(b"\r\n\r\n").as_ref(), empty.as_ref());
        // Canonical runs hashed whole, across empty lines, around lines that change; a last
        // line without CRLF gains one; leading empty lines stay.
        let body = b"\r\nA\r\nB\r\n\r\nC  D\r\n\r\nE\r\nF \r\n \r\n\r\nG\nH";
        let expected = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            b"\r\nA\r\nB\r\n\r\nC D\r\n\r\nE\r\nF\r\n\r\n\r\nG\r\nH\r\n",
        );
        assert_eq!(body_hash(body).as_ref(), expected.as_ref());
    }

    #[test]
    fn headers_are_taken_from_the_bottom_up_and_oversigned() {
        let head = b"From: a@x\r\nTo: b@x\r\nSubject: one\r\n two\r\nX-Other: no\r\nTo: c@x\r\n";
        let fields = header_fields(head);
        assert_eq!(fields.len(), 5);
        let (names, data) = signed_headers(&fields);
        assert_eq!(&names[..6], ["from", "from", "to", "to", "to", "subject"]);
        let text = String::from_utf8(data).unwrap();
        assert!(
            text.starts_with("from:a@x\r\nto:c@x\r\nto:b@x\r\nsubject:one two\r\n"),
            "{text}"
        );
    }

    #[test]
    fn key_errors_say_what_to_do() {
        let err = ed25519_key("AAAA").err().unwrap();
        assert!(err.0.contains("3 bytes; an Ed25519 seed is 32"), "{err}");
        let err = rsa_key("hello").err().unwrap();
        assert!(err.0.contains("not a PEM key"), "{err}");
        let err = rsa_key("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
            .err()
            .unwrap();
        assert!(err.0.contains("decrypt it first"), "{err}");
    }
}
