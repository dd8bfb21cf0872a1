//! `bounces:`: where delivery reports and complaints come back, and what they do.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// `newsletter bounces`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Bounces {
    /// The bounce mailbox: `maildir:PATH`, `mbox:PATH`, or `imaps://USER@HOST[:PORT]/FOLDER`
    /// (the user may itself contain an @; the password comes from
    /// NEWSLETTER_BOUNCES_PASSWORD; TLS trusts what `smtp` trusts). `--maildir` and `--mbox`
    /// override it.
    pub source: Option<String>,
    /// VERP: each message's envelope sender, with `{token}` replaced by a short signed token
    /// naming the issue and the recipient (`bounces+{token}@lists.openinfra.dev`). Reports
    /// then name the recipient even when the server rewrote the address. Null: the envelope
    /// sender is `return_path` (or `from.address`) for everyone.
    pub return_path: Option<String>,
    /// Soft bounces (full mailbox, expired in queue) on this many different issues in a row,
    /// with no delivery between them, suppress the address. Blocks aimed at our sending never
    /// count.
    pub soft_limit: u32,
    /// The guard against mass suppression: when one run (of `bounces`, or a `send` refused
    /// synchronously) would suppress more than this many readers at one receiving domain
    /// with the same diagnostic, it suppresses none of them and holds them as a group for
    /// `newsletter bounces review` (a blocklisting misread as "user unknown" must not
    /// unsubscribe everyone behind that receiver). They are mailed until the group is accepted.
    pub mass_guard: u32,
    /// Amazon SES's bounce and complaint events, posted by SNS to `serve`.
    pub ses_events: SesEvents,
}

/// `bounces.ses_events`: where `serve` takes SNS notifications of SES's events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SesEvents {
    /// The path SNS posts to (the subscription's endpoint is this path on serve's URL).
    pub path: String,
    /// The topic ARNs whose messages are taken (`arn:aws:sns:eu-west-1:123456789012:ses`);
    /// empty: the endpoint is off. Anyone can sign an SNS message with a topic of their own:
    /// only these topics' are believed.
    pub topics: Vec<String>,
    /// Suppressions from events wait this long before they are settled, so that the mass
    /// guard sees a blocklisting's burst of bounces as one group.
    #[serde(with = "super::duration")]
    pub settle_every: std::time::Duration,
}

impl Default for SesEvents {
    fn default() -> Self {
        SesEvents {
            path: "/events/ses".into(),
            topics: Vec::new(),
            settle_every: std::time::Duration::from_secs(60),
        }
    }
}

impl Default for Bounces {
    fn default() -> Self {
        Bounces {
            source: None,
            return_path: None,
            soft_limit: 3,
            mass_guard: 20,
            ses_events: SesEvents::default(),
        }
    }
}

pub const PASSWORD_VAR: &str = "NEWSLETTER_BOUNCES_PASSWORD";

/// `bounces.source`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Maildir(std::path::PathBuf),
    Mbox(std::path::PathBuf),
    Imap(Imap),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Imap {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub folder: String,
}

impl std::str::FromStr for Source {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Source, Invalid> {
        if let Some(path) = s.strip_prefix("maildir:") {
            return Ok(Source::Maildir(path.into()));
        }
        if let Some(path) = s.strip_prefix("mbox:") {
            return Ok(Source::Mbox(path.into()));
        }
        let Some(rest) = s.strip_prefix("imaps://") else {
            return Err(Invalid(format!(
                "`{s}` is not a mailbox: write maildir:PATH, mbox:PATH or imaps://USER@HOST/FOLDER"
            )));
        };
        let (authority, folder) = rest.split_once('/').unwrap_or((rest, "INBOX"));
        // The user may be an address itself: the host is after the last @.
        let Some((user, host)) = authority.rsplit_once('@') else {
            return Err(Invalid(format!("`{s}` names no user: write imaps://USER@HOST/FOLDER")));
        };
        let (host, port) = match host.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| Invalid(format!("`{p}` in `{s}` is not a port")))?,
            ),
            None => (host, 993),
        };
        if user.is_empty() || host.is_empty() {
            return Err(Invalid(format!(
                "`{s}` needs both a user and a host: imaps://USER@HOST/FOLDER"
            )));
        }
        Ok(Source::Imap(Imap {
            user: user.to_owned(),
            host: host.to_owned(),
            port,
            folder: if folder.is_empty() {
                "INBOX".into()
            } else {
                folder.to_owned()
            },
        }))
    }
}

impl Bounces {
    /// What cannot work: the key and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(source) = &self.source {
            source
                .parse::<Source>()
                .map_err(|why| ("bounces.source".to_owned(), why.0))?;
        }
        if let Some(rp) = &self.return_path
            && (!rp.contains("{token}") || rp.matches('@').count() != 1 || rp.find("{token}") > rp.find('@'))
        {
            return Err((
                "bounces.return_path".into(),
                format!("`{rp}` needs {{token}} in its local part, like bounces+{{token}}@lists.example.org"),
            ));
        }
        if self.soft_limit == 0 {
            return Err(("bounces.soft_limit".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!("maildir:/var/mail/b".parse(), Ok(Source::Maildir("/var/mail/b".into())));
        assert_eq!(
            "imaps://bounces@openinfra.dev@imap.example.org/INBOX".parse(),
            Ok(Source::Imap(Imap {
                user: "bounces@openinfra.dev".into(),
                host: "imap.example.org".into(),
                port: 993,
                folder: "INBOX".into()
            }))
        );
        let Ok(Source::Imap(i)) = "imaps://u@127.0.0.1:10993/Bounces".parse::<Source>() else {
            panic!()
        };
        assert_eq!((i.port, i.folder.as_str()), (10993, "Bounces"));
        assert!("pop3://x".parse::<Source>().unwrap_err().0.contains("maildir:PATH"));
    }
}
