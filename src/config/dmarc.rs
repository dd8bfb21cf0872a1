//! `dmarc:`: where DMARC aggregate reports arrive, and which sources are ours.

use serde::{Deserialize, Serialize};

use super::bounces::Source;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Dmarc {
    /// A mailbox of its own for the reports (the domain's `rua=` address), read by `newsletter
    /// dmarc`: `maildir:PATH`, `mbox:PATH` or `imaps://USER@HOST[:PORT]/FOLDER` (password in
    /// NEWSLETTER_DMARC_PASSWORD). Reports that arrive in the bounce mailbox are read by
    /// `newsletter bounces` either way.
    pub mailbox: Option<String>,
    /// The addresses and ranges (`192.0.2.10`, `2001:db8::/32`) our mail leaves from: the
    /// relays. A source is ours also when DKIM passed for our domain with one of our selectors.
    pub our_sources: Vec<String>,
    /// Selectors that sign our mail besides `dkim.selector` and `dkim.ed25519_selector` (a
    /// relay's own, such as SES Easy DKIM's three).
    pub selectors: Vec<String>,
}

pub const PASSWORD_VAR: &str = "NEWSLETTER_DMARC_PASSWORD";

impl Dmarc {
    /// `mailbox`, parsed.
    pub fn source(&self) -> Option<Result<Source, super::Invalid>> {
        self.mailbox.as_deref().map(str::parse)
    }

    /// `our_sources` as networks (an address is a network of one).
    pub fn networks(&self) -> Result<Vec<ipnet::IpNet>, (String, String)> {
        self.our_sources
            .iter()
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        (
                            "dmarc.our_sources".to_owned(),
                            format!("`{s}` is neither an address nor a range: write 192.0.2.10 or 192.0.2.0/24"),
                        )
                    })
            })
            .collect()
    }

    /// What cannot work: the key and why. `bounce_mailbox` is `bounces.source`: reading it here
    /// too would take bounces away from `newsletter bounces`.
    pub fn validate(&self, bounce_mailbox: Option<&str>) -> Result<(), (String, String)> {
        if let Some(source) = self.source() {
            source.map_err(|why| ("dmarc.mailbox".to_owned(), why.0))?;
        }
        if self.mailbox.is_some() && self.mailbox.as_deref() == bounce_mailbox {
            return Err((
                "dmarc.mailbox".into(),
                "is the bounce mailbox: leave it null, `newsletter bounces` reads the reports that arrive there".into(),
            ));
        }
        self.networks().map(|_| ())
    }
}
