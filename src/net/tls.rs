//! TLS to the relay: which certificates are trusted, and what a failed handshake means in
//! words that say what to change.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, CertificateError, InvalidMessage};

use crate::config::{Security, Smtp};

/// Why no TLS client could be set up: the trust settings, and what to fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsSetup(pub String);

/// The client configuration for `smtp`: the built-in Mozilla roots and the operating system's
/// store (which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`), plus `ca_file`; or `ca_file`
/// alone with `ca_only`.
pub fn client_config(smtp: &Smtp) -> Result<Arc<rustls::ClientConfig>, TlsSetup> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &smtp.ca_file {
        let added = add_ca_file(&mut roots, path)?;
        if added == 0 {
            return Err(TlsSetup(format!(
                "smtp.ca_file {} holds no certificate: give a PEM file with -----BEGIN CERTIFICATE----- blocks",
                path.display()
            )));
        }
    } else if smtp.ca_only {
        return Err(TlsSetup(
            "smtp.ca_only is set but smtp.ca_file is not: name the CA bundle to trust".into(),
        ));
    }
    if !smtp.ca_only {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // Unreadable entries of the system store are skipped, as every TLS client does.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM before AES-256-GCM (rustls lists 256 first): as safe for mail in transit,
    // and 10 rounds per block instead of 14 at both ends, the relay decrypting what we
    // encrypt. Servers that choose by their own preference are not affected.
    provider.cipher_suites.sort_by_key(|suite| {
        let tls12 = matches!(suite, rustls::SupportedCipherSuite::Tls12(_));
        let aes128 = matches!(
            suite.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (tls12, !aes128)
    });
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetup(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn add_ca_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<usize, TlsSetup> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            TlsSetup(format!(
                "cannot read smtp.ca_file {}: {}",
                path.display(),
                pem_error(&e)
            ))
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetup(format!("smtp.ca_file {}: {}", path.display(), pem_error(&e))))?;
    let mut added = 0;
    for cert in certs {
        roots.add(cert).map_err(|e| {
            TlsSetup(format!(
                "smtp.ca_file {} holds a certificate that is not a valid CA: {e}",
                path.display()
            ))
        })?;
        added += 1;
    }
    Ok(added)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not a PEM file ({other:?})"),
    }
}

/// A failed handshake in one sentence that says what is wrong and what to change.
pub fn explain(error: &std::io::Error, host: &str, port: u16, security: Security) -> String {
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => format!(
                "the server closed the connection during the TLS handshake{}",
                mode_hint(port, security)
            ),
            _ => error.to_string(),
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => certificate(cert, host),
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType)
        | rustls::Error::InvalidMessage(InvalidMessage::UnknownProtocolVersion) => format!(
            "the server answered in plain text, not TLS{}",
            mode_hint(port, security)
        ),
        rustls::Error::AlertReceived(alert) => format!("the server refused the TLS handshake ({alert:?})"),
        rustls::Error::PeerIncompatible(why) => {
            format!("the server has no TLS version or cipher in common with us (TLS 1.2 or 1.3): {why:?}")
        }
        other => other.to_string(),
    }
}

/// Said only where the mode is the likely cause.
pub fn mode_hint(port: u16, security: Security) -> String {
    match security {
        Security::Tls => format!(
            ": port {port} expects SMTP first and TLS after STARTTLS, so set smtp.security: starttls (usually port 587)"
        ),
        Security::Starttls | Security::None => {
            format!(": port {port} expects TLS from the first byte, so set smtp.security: tls (usually port 465)")
        }
    }
}

/// `mail.example.org` of rustls' `DnsName("mail.example.org")`.
fn bare_name(presented: &str) -> &str {
    presented
        .split_once("(\"")
        .and_then(|(_, rest)| rest.strip_suffix("\")"))
        .unwrap_or(presented)
}

fn certificate(error: &CertificateError, host: &str) -> String {
    let date = |t: &rustls::pki_types::UnixTime| {
        chrono::DateTime::from_timestamp(t.as_secs() as i64, 0).map_or_else(
            || format!("{} s after 1970", t.as_secs()),
            |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
    };
    match error {
        CertificateError::Expired => "the server's certificate has expired: the relay's administrator must renew it".into(),
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "the server's certificate expired on {}: the relay's administrator must renew it",
            date(not_after)
        ),
        CertificateError::NotValidYet => "the server's certificate is not valid yet: check this machine's clock".into(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "the server's certificate is valid only from {}: check this machine's clock",
            date(not_before)
        ),
        CertificateError::NotValidForName => {
            format!("the server's certificate is not for `{host}`: set smtp.host to the name the certificate carries")
        }
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the server's certificate is for {}, not `{host}`: set smtp.host to one of those names",
            if presented.is_empty() {
                "no host name".to_owned()
            } else {
                presented.iter().map(|p| bare_name(p)).collect::<Vec<_>>().join(", ")
            }
        ),
        CertificateError::UnknownIssuer => "the server's certificate is self-signed or signed by a CA this machine does not trust: add that CA's certificate (PEM) to smtp.ca_file".into(),
        CertificateError::Revoked => "the server's certificate has been revoked".into(),
        CertificateError::BadSignature => "the server's certificate has a bad signature".into(),
        CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            "the server presents a self-signed CA certificate as its own, which TLS does not accept even when trusted: the relay needs a certificate issued by a CA (a private one is fine: name it in smtp.ca_file)".into()
        }
        other => format!("the server's certificate was refused: {other}"),
    }
}
