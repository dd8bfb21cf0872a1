//! Amazon SNS messages that carry SES's events: their signature checked against the
//! certificate SNS names, fetched only from `https://sns.REGION.amazonaws.com/` (over TLS)
//! and cached. A message whose topic is not ours, or whose signature fails, changes nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use ring::signature::{RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde::Deserialize;

/// An SNS message as posted to the endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
}

impl Message {
    /// The region of the topic (`arn:aws:sns:REGION:ACCOUNT:NAME`).
    pub fn region(&self) -> Option<&str> {
        let mut parts = self.topic_arn.split(':');
        (parts.next() == Some("arn") && parts.nth(1) == Some("sns"))
            .then(|| parts.next())
            .flatten()
            .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    }

    /// The text SNS signed: the message's fields as "Name\nvalue\n", in the documented order.
    pub fn string_to_sign(&self) -> String {
        let mut fields: Vec<(&str, &str)> = vec![("Message", &self.message), ("MessageId", &self.message_id)];
        if self.kind == "Notification" {
            if let Some(subject) = &self.subject {
                fields.push(("Subject", subject));
            }
        } else {
            fields.push(("SubscribeURL", self.subscribe_url.as_deref().unwrap_or_default()));
        }
        fields.push(("Timestamp", &self.timestamp));
        if self.kind != "Notification" {
            fields.push(("Token", self.token.as_deref().unwrap_or_default()));
        }
        fields.push(("TopicArn", &self.topic_arn));
        fields.push(("Type", &self.kind));
        fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect()
    }
}

/// Whether `url` is one of SNS's own, in the topic's region: `https://sns.REGION.amazonaws.com/...`
/// (the signing certificate and the subscription's confirmation come only from there).
pub fn is_sns_url(url: &str, region: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    host.eq_ignore_ascii_case(&format!("sns.{region}.amazonaws.com"))
}

/// The signing certificate's URL as the cache keys it (host and path), when it is one SNS
/// would name: its own host in the topic's region, one `.pem` file at the root, no port,
/// user, query or fragment to make a second spelling of it.
fn certificate_key(url: &str, region: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/')?;
    let file_ok = path.len() <= 128
        && path.ends_with(".pem")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (host.eq_ignore_ascii_case(&format!("sns.{region}.amazonaws.com")) && file_ok)
        .then(|| format!("{}/{path}", host.to_ascii_lowercase()))
}

/// What can be told without fetching anything: a message SNS could have sent, or why not.
/// Checked before the signing certificate is fetched, so that forged requests cost nothing
/// outside.
pub fn check_form(message: &Message, region: &str) -> Result<(), Rejected> {
    if !matches!(
        message.kind.as_str(),
        "Notification" | "SubscriptionConfirmation" | "UnsubscribeConfirmation"
    ) {
        return Err(Rejected(format!("unknown message type {}", message.kind)));
    }
    if !matches!(message.signature_version.as_str(), "1" | "2") {
        return Err(Rejected(format!(
            "unknown SignatureVersion {}",
            message.signature_version
        )));
    }
    // RSA-2048 to RSA-8192 signatures, base64.
    let signature = base64::engine::general_purpose::STANDARD
        .decode(message.signature.trim())
        .map_err(|e| Rejected(format!("the signature is not base64: {e}")))?;
    if !(256..=1024).contains(&signature.len()) {
        return Err(Rejected(format!(
            "a signature of {} bytes is no RSA signature SNS makes",
            signature.len()
        )));
    }
    if message.message_id.is_empty() || message.timestamp.is_empty() {
        return Err(Rejected("MessageId or Timestamp is missing".into()));
    }
    if certificate_key(&message.signing_cert_url, region).is_none() {
        return Err(Rejected(format!(
            "the signing certificate's URL {} is not SNS's own (https://sns.{region}.amazonaws.com/NAME.pem)",
            message.signing_cert_url
        )));
    }
    Ok(())
}

/// Why a message is not to be believed.
pub fn check_signature(message: &Message, certificate_pem: &str) -> Result<(), Rejected> {
    let algorithm = match message.signature_version.as_str() {
        "1" => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        "2" => &RSA_PKCS1_2048_8192_SHA256,
        other => return Err(Rejected(format!("unknown SignatureVersion {other}"))),
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(message.signature.trim())
        .map_err(|e| Rejected(format!("the signature is not base64: {e}")))?;
    let key = rsa_public_key(certificate_pem)?;
    UnparsedPublicKey::new(algorithm, key)
        .verify(message.string_to_sign().as_bytes(), &signature)
        .map_err(|_| Rejected("the signature does not match the message".to_owned()))
}

/// The RSA key of a PEM certificate, as ring takes it (PKCS#1 RSAPublicKey): the BIT STRING
/// of the certificate's subjectPublicKeyInfo.
fn rsa_public_key(pem: &str) -> Result<Vec<u8>, Rejected> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| Rejected("the signing certificate is no PEM certificate".to_owned()))?;
    let bad = || "the signing certificate cannot be read".to_owned();
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serial, signature,
    // issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }
    let (_, certificate, _) = der_item(&der).ok_or_else(bad)?;
    let (_, tbs, _) = der_item(certificate).ok_or_else(bad)?;
    let mut rest = tbs;
    let (tag, _, after) = der_item(rest).ok_or_else(bad)?;
    if tag == 0xa0 {
        rest = after; // the explicit version
    }
    for _ in 0..5 {
        rest = der_item(rest).ok_or_else(bad)?.2; // serial, signature, issuer, validity, subject
    }
    let (_, spki, _) = der_item(rest).ok_or_else(bad)?;
    let (_, _algorithm, rest) = der_item(spki).ok_or_else(bad)?;
    let (tag, bits, _) = der_item(rest).ok_or_else(bad)?;
    if tag != 0x03 || bits.first() != Some(&0) {
        return Err(Rejected(bad()));
    }
    Ok(bits[1..].to_vec())
}

/// One DER element: its tag, its contents and what follows it.
fn der_item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let length = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, &rest[n..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// Signing certificates by host and path: fetched once, at most [`Certificates::KEPT`] kept;
/// a fetch that failed is not tried again for [`Certificates::FAILURE_KEPT`]; and at most
/// [`Certificates::NEW_PER_MINUTE`] new ones fetched a minute, so that forged messages naming
/// ever new certificates cannot make `serve` fetch without end (SNS itself uses a handful).
pub struct Certificates {
    client: reqwest::Client,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    known: HashMap<String, (Instant, Result<String, CertificateError>)>,
    fetches: VecDeque<Instant>,
}

/// Why a message is not believed, for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

impl From<String> for Rejected {
    fn from(s: String) -> Self {
        Rejected(s)
    }
}

/// Why a signing certificate is not at hand.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertificateError {
    /// Not SNS's, not there, or no certificate: the message is not believed.
    #[error("{0}")]
    Refused(String),
    /// Too many new certificates named lately: not fetched now (SNS sends again).
    #[error("{0}")]
    Busy(String),
}

/// More than any certificate: an answer this long is not one.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

impl Certificates {
    pub const KEPT: usize = 32;
    pub const FAILURE_KEPT: Duration = Duration::from_secs(60);
    pub const NEW_PER_MINUTE: usize = 10;

    pub fn new(client: reqwest::Client) -> Certificates {
        Certificates {
            client,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The certificate at `url`, which must be SNS's in `region` ([`check_form`]).
    pub async fn get(&self, url: &str, region: &str) -> Result<String, CertificateError> {
        let Some(key) = certificate_key(url, region) else {
            return Err(CertificateError::Refused(format!(
                "the signing certificate's URL {url} is not SNS's own (https://sns.{region}.amazonaws.com/NAME.pem)"
            )));
        };
        {
            let now = Instant::now();
            let mut cache = self.lock();
            match cache.known.get(&key) {
                Some((_, Ok(pem))) => return Ok(pem.clone()),
                Some((at, Err(e))) if now.duration_since(*at) < Self::FAILURE_KEPT => return Err(e.clone()),
                _ => {}
            }
            let minute = Duration::from_secs(60);
            while cache.fetches.front().is_some_and(|t| now.duration_since(*t) >= minute) {
                cache.fetches.pop_front();
            }
            if cache.fetches.len() >= Self::NEW_PER_MINUTE {
                return Err(CertificateError::Busy(format!(
                    "more than {} new signing certificates named in a minute: {url} not fetched",
                    Self::NEW_PER_MINUTE
                )));
            }
            cache.fetches.push_back(now);
        }
        let fetched = self.fetch(&format!("https://{key}")).await;
        let mut cache = self.lock();
        if cache.known.len() >= Self::KEPT {
            // Failures first, then the oldest.
            let drop = cache
                .known
                .iter()
                .min_by_key(|(_, (at, result))| (result.is_ok(), *at))
                .map(|(k, _)| k.clone());
            if let Some(drop) = drop {
                cache.known.remove(&drop);
            }
        }
        cache.known.insert(key, (Instant::now(), fetched.clone()));
        fetched
    }

    async fn fetch(&self, url: &str) -> Result<String, CertificateError> {
        let reply = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| CertificateError::Refused(format!("cannot fetch the signing certificate {url}: {e}")))?;
        if !reply.status().is_success() {
            return Err(CertificateError::Refused(format!(
                "the signing certificate {url} answered {}",
                reply.status()
            )));
        }
        let pem = reply
            .text()
            .await
            .map_err(|e| CertificateError::Refused(format!("cannot fetch the signing certificate {url}: {e}")))?;
        if pem.len() > MAX_CERTIFICATE_BYTES || !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(CertificateError::Refused(format!("{url} holds no certificate")));
        }
        Ok(pem)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: &str) -> Message {
        Message {
            kind: kind.into(),
            message_id: "id-1".into(),
            topic_arn: "arn:aws:sns:eu-west-1:123456789012:ses-events".into(),
            subject: None,
            message: "{\"notificationType\":\"Bounce\"}".into(),
            timestamp: "2026-11-30T10:00:00.000Z".into(),
            token: Some("tok".into()),
            subscribe_url: Some("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription".into()),
            signature_version: "2".into(),
            signature: String::new(),
            signing_cert_url: "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem".into(),
        }
    }

    #[test]
    fn the_signed_text_follows_the_documented_fields() {
        let n = message("Notification");
        assert_eq!(
            n.string_to_sign(),
            "Message\n{\"notificationType\":\"Bounce\"}\nMessageId\nid-1\nTimestamp\n2026-11-30T10:00:00.000Z\nTopicArn\narn:aws:sns:eu-west-1:123456789012:ses-events\nType\nNotification\n"
        );
        let c = message("SubscriptionConfirmation");
        assert!(
            c.string_to_sign()
                .contains("SubscribeURL\nhttps://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription\nTimestamp\n")
        );
        assert!(c.string_to_sign().contains("Token\ntok\nTopicArn\n"));
        assert_eq!(n.region(), Some("eu-west-1"));
    }

    #[test]
    fn only_sns_s_own_urls_in_the_topic_s_region() {
        let r = "eu-west-1";
        assert!(is_sns_url(
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
            r
        ));
        for url in [
            "http://sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
            "https://user@sns.eu-west-1.amazonaws.com@evil.example/x.pem",
        ] {
            assert!(!is_sns_url(url, r), "{url}");
        }
    }
}
