//! What every network client of ours shares: TLS (rustls, our trust settings) for SMTP, SES,
//! IMAP and SNS.

pub mod tls;
