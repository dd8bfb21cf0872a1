//! `newsletter.yaml`: strict keys with documented defaults, each overridable by a
//! `NEWSLETTER_*` environment variable (`smtp.host` -> `NEWSLETTER_SMTP_HOST`).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_norway::Value;

mod analytics;
pub mod bounces;
mod check;
mod dkim;
pub mod dmarc;
pub mod duration;
pub mod identity;
pub mod retention;
mod secret;
mod smtp;
mod throttle;
mod web;

pub use analytics::Analytics;
pub use bounces::Bounces;
pub use check::{Check, Preview};
pub use dkim::{Dkim, DkimAlgorithm};
pub use dmarc::Dmarc;
use duration::string_or_number;
pub use retention::Retention;
pub use secret::secret;
pub use smtp::{AuthMethod, OAuth, RelayKind, Relays, Security, Smtp};
pub use throttle::{Breaker, Rate, Throttle, Warmup};
pub use web::{Archive, DEFAULT_FORM, Serve, Subscribe};

/// Environment variables that hold secrets, never configuration keys.
pub const SECRET_VARS: &[&str] = &[
    "NEWSLETTER_SMTP_PASSWORD",
    "NEWSLETTER_UNSUBSCRIBE_SECRET",
    "NEWSLETTER_DKIM_PRIVATE_KEY",
    "NEWSLETTER_DKIM_ED25519_PRIVATE_KEY",
    "NEWSLETTER_SMTP_OAUTH_TOKEN",
    "NEWSLETTER_SMTP_OAUTH_CLIENT_SECRET",
    "NEWSLETTER_UNSUBSCRIBE_SECRET_PREVIOUS",
    "NEWSLETTER_BOUNCES_PASSWORD",
    "NEWSLETTER_DMARC_PASSWORD",
];

/// Variables the tool reads that are not configuration keys.
const OTHER_VARS: &[&str] = &["NEWSLETTER_LOG"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The sender: `{ name, address }`.
    pub from: Sender,
    /// Where replies go; none by default.
    pub reply_to: Option<String>,
    /// The List-Id header's `name <id>`; its id is a domain-like string that stays the same
    /// for every issue.
    pub list_id: String,
    /// The foundation's postal address, printed in the footer (required by anti-spam laws).
    pub address: String,
    /// Scheme and host against which site-relative links (`/img/x.png`) resolve; by default
    /// that of the issue's `seo.url`.
    pub site_origin: Option<String>,
    /// The recipient list (CSV with an `email` column).
    pub recipients: PathBuf,
    /// Staff inboxes that receive test sends.
    pub test_recipients: Vec<String>,
    /// Where issues live (`newsletters/2025-07.md`).
    pub newsletters: PathBuf,
    /// Where layout folders live.
    pub layouts: PathBuf,
    /// Where previews and dry runs are written.
    pub out: PathBuf,
    /// The ledger: who was sent what, the suppression list. Its lock file sits beside it.
    pub ledger: PathBuf,
    pub unsubscribe: Unsubscribe,
    /// The envelope sender (MAIL FROM), where bounces go; by default `from.address`.
    pub return_path: Option<String>,
    /// The Feedback-ID header of every real message, which Gmail's feedback loop reports
    /// complaints by: `{issue}`, `{list}` (the List-Id's id) and `{sender}` (the domain of from.address)
    /// are filled in; null for none.
    pub feedback_id: Option<String>,
    /// One relay, or a list of relays (a pool) that a send spreads its messages over.
    pub smtp: Relays,
    pub throttle: Throttle,
    pub dkim: Dkim,
    /// How many personalized messages `send --dry-run` writes as .eml files (all with `--all`).
    pub dry_run_samples: usize,
    pub check: Check,
    pub preview: Preview,
    pub serve: Serve,
    pub subscribe: Subscribe,
    pub archive: Archive,
    pub bounces: Bounces,
    pub dmarc: Dmarc,
    pub retention: Retention,
    pub analytics: Analytics,
    /// What loading found worth saying but not stopping for (a misspelt variable); the
    /// command prints them like its other warnings.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The file it was read from, if any, for messages about its values.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Unsubscribe {
    /// The one-click unsubscribe endpoint; a signed `?token=` is appended per recipient.
    pub url: String,
    /// The mailbox for `mailto:` unsubscribes in List-Unsubscribe. Each message's mailto
    /// carries the reader's token in its subject; `bounces` acts only on requests whose token
    /// is valid, whatever their From says.
    pub mailto: String,
    /// How long after an unsubscribe its page's "subscribe me again" button still undoes it;
    /// later, only a new subscription or the operator can.
    #[serde(with = "duration")]
    pub resubscribe_within: std::time::Duration,
    /// Accept the first release's unsubscribe tokens (the address in base64, bound to no
    /// issue). Off by default: turn it on only while issues sent by that release are recent.
    pub accept_release_0_tokens: bool,
}

impl Config {
    /// The sign-up form's URL: `subscribe.url`, else beside `unsubscribe.url`.
    pub fn subscribe_url(&self) -> String {
        self.subscribe
            .url
            .clone()
            .unwrap_or_else(|| beside(&self.unsubscribe.url, "subscribe"))
    }

    /// Where counted links point: `serve`'s redirect, beside the unsubscribe endpoint.
    pub fn click_url(&self) -> String {
        beside(&self.unsubscribe.url, "r")
    }

    pub fn confirm_url(&self) -> String {
        self.subscribe
            .confirm_url
            .clone()
            .unwrap_or_else(|| beside(&self.unsubscribe.url, "confirm"))
    }

    pub fn preferences_url(&self) -> String {
        self.subscribe
            .preferences_url
            .clone()
            .unwrap_or_else(|| beside(&self.unsubscribe.url, "preferences"))
    }
}

/// `https://x.org/newsletter/unsubscribe` -> `https://x.org/newsletter/NAME`.
fn beside(url: &str, name: &str) -> String {
    let url = url.trim_end_matches('/');
    match url.rsplit_once('/') {
        Some((base, _)) if !base.ends_with('/') => format!("{base}/{name}"),
        _ => format!("{url}/{name}"),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            from: Sender {
                name: "OpenInfra Foundation".into(),
                address: "newsletter@openinfra.dev".into(),
            },
            reply_to: None,
            list_id: "Inside Open Infrastructure <newsletter.openinfra.dev>".into(),
            address: "OpenInfra Foundation, P.O. Box 1903, Austin, TX 78767, USA".into(),
            site_origin: None,
            recipients: "recipients.csv".into(),
            test_recipients: Vec::new(),
            newsletters: "newsletters".into(),
            layouts: "layouts".into(),
            out: "out".into(),
            ledger: "state/newsletter.db".into(),
            unsubscribe: Unsubscribe::default(),
            return_path: None,
            feedback_id: Some("{issue}:{list}:newsletter:{sender}".into()),
            smtp: Relays::default(),
            throttle: Throttle::default(),
            dkim: Dkim::default(),
            dry_run_samples: 10,
            check: Check::default(),
            preview: Preview::default(),
            serve: Serve::default(),
            subscribe: Subscribe::default(),
            archive: Archive::default(),
            bounces: Bounces::default(),
            dmarc: Dmarc::default(),
            retention: Retention::default(),
            analytics: Analytics::default(),
            warnings: Vec::new(),
            file: None,
        }
    }
}

impl Default for Unsubscribe {
    fn default() -> Self {
        Unsubscribe {
            url: "https://openinfra.dev/newsletter/unsubscribe".into(),
            mailto: "newsletter-unsubscribe@openinfra.dev".into(),
            resubscribe_within: std::time::Duration::from_secs(7 * 24 * 3600),
            accept_release_0_tokens: false,
        }
    }
}

/// The default configuration file, read when present.
pub const DEFAULT_PATH: &str = "newsletter.yaml";

/// A value that is not one of its kind (a duration, a rate, a mailbox source): what was
/// written, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Config {
    /// Loads `path` (or `newsletter.yaml` when it exists, else the defaults) and applies
    /// `NEWSLETTER_*` overrides from `env`.
    pub fn load(path: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> Result<Config> {
        let default_path = Path::new(DEFAULT_PATH);
        let (file, text) = match path {
            Some(p) => (
                Some(p),
                Some(std::fs::read_to_string(p).map_err(|e| anyhow!("cannot read config {}: {e}", p.display()))?),
            ),
            None if default_path.is_file() => (
                Some(default_path),
                Some(
                    std::fs::read_to_string(default_path)
                        .map_err(|e| anyhow!("cannot read config {DEFAULT_PATH}: {e}"))?,
                ),
            ),
            None => (None, None),
        };
        let mut value = match (&file, &text) {
            (Some(file), Some(text)) => {
                // Deserialize the file itself first: its errors carry line and column.
                let _: Config = serde_norway::from_str(text).map_err(|e| config_error(file, text, &e))?;
                serde_norway::from_str::<Value>(text).map_err(|e| config_error(file, text, &e))?
            }
            _ => Value::Mapping(Default::default()),
        };
        if value.is_null() {
            value = Value::Mapping(Default::default());
        }
        let keys = leaf_keys(&serde_norway::to_value(Config::default())?);
        let mut warnings = Vec::new();
        // Keys set by a variable, so that an error names the variable rather than the file.
        let mut from_env = Vec::new();
        let env: Vec<(String, String)> = env.filter(|(k, _)| k.starts_with("NEWSLETTER_")).collect();
        for (var, raw) in env.iter().cloned() {
            if SECRET_VARS.contains(&var.as_str()) || OTHER_VARS.contains(&var.as_str()) {
                continue;
            }
            if let Some(base) = var.strip_suffix("_FILE")
                && (SECRET_VARS.contains(&base) || is_relay_secret(base))
            {
                secret::check_file(&var, base, &raw, &env)?;
                continue;
            }
            let Some((key, default)) = keys.iter().find(|(k, _)| env_name(k) == var) else {
                if is_relay_secret(&var) {
                    continue;
                }
                let names: Vec<String> = keys.iter().map(|(k, _)| env_name(k)).collect();
                let key = crate::suggest::nearest(&var, names.iter().map(String::as_str));
                let secret = crate::suggest::nearest(&var, SECRET_VARS.iter().copied());
                // A misspelt secret is suggested among the secrets; when the real one is then
                // missing, going on would fail later for a reason the user cannot see.
                if let Some((distance, secret)) = secret
                    && key.is_none_or(|(d, _)| distance < d)
                {
                    if !env.iter().any(|(k, v)| k == secret && !v.is_empty()) {
                        bail!("{var} is set but {secret} is not: a misspelt secret? rename {var} to {secret}");
                    }
                    warnings.push(format!(
                        "{var} is not a variable newsletter reads, so it is ignored; did you mean `{secret}` (which is set)?"
                    ));
                    continue;
                }
                warnings.push(format!(
                    "{var} is not a configuration variable, so it is ignored{}",
                    key.map(|(_, k)| format!("; did you mean `{k}`?")).unwrap_or_default()
                ));
                continue;
            };
            if key.starts_with("smtp.") && value.get("smtp").is_some_and(Value::is_sequence) {
                bail!(
                    "{var} is set but smtp is a list of relays, so it cannot say which: set it in the configuration file"
                );
            }
            let mut parsed: Value = serde_norway::from_str(&raw).unwrap_or(Value::String(raw.clone()));
            if default.is_sequence() && !parsed.is_sequence() {
                // NEWSLETTER_TEST_RECIPIENTS=a@x.org,b@x.org
                parsed = Value::Sequence(
                    raw.split(',')
                        .map(|s| Value::String(s.trim().to_owned()))
                        .filter(|v| v.as_str() != Some(""))
                        .collect(),
                );
            }
            set_path(&mut value, key, parsed);
            from_env.push(key.clone());
            // Each variable is tried on its own, so that an error names it.
            if let Err(e) = serde_norway::from_value::<Config>(value.clone()) {
                bail!(
                    "{var}={raw:?}: {} (for {key})",
                    crate::suggest::plain_types(&e.to_string())
                );
            }
        }
        let mut config: Config = serde_norway::from_value(value).map_err(|e| anyhow!("configuration: {e}"))?;
        config.warnings = warnings;
        config.file = file.map(Path::to_path_buf);
        if let Err((key, why)) = config.validate() {
            let at = match (file, &text) {
                (Some(file), Some(text)) if key_in(text, &key).is_some() => {
                    format!("{}:{}: ", file.display(), key_in(text, &key).unwrap_or(0))
                }
                (Some(file), _) => format!("{}: ", file.display()),
                (None, _) => String::new(),
            };
            let origin = if from_env.contains(&key) {
                format!(" (from {})", env_name(&key))
            } else {
                String::new()
            };
            bail!("{at}{key}{origin}: {why}");
        }
        Ok(config)
    }

    /// Values that parse but cannot work: the key and why.
    fn validate(&self) -> Result<(), (String, String)> {
        self.validate_relays()?;
        let at_least_one = [
            ("throttle.concurrency", self.throttle.concurrency as u64),
            ("throttle.burst", u64::from(self.throttle.burst)),
            (
                "throttle.max_consecutive_failures",
                u64::from(self.throttle.max_consecutive_failures),
            ),
            ("throttle.max_attempts", u64::from(self.throttle.max_attempts)),
            ("check.concurrency", self.check.concurrency as u64),
            ("check.per_host", self.check.per_host as u64),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if self.throttle.batch_size == Some(0) {
            return Err((
                "throttle.batch_size".into(),
                "must be at least 1, or null for no pauses".into(),
            ));
        }
        if self.check.timeout.is_zero() {
            return Err(("check.timeout".into(), "must be longer than 0s".into()));
        }
        self.throttle
            .rate
            .parse::<Rate>()
            .map_err(|why| ("throttle.rate".to_owned(), why.0))?;
        self.throttle.validate()?;
        one_click_url(&self.unsubscribe.url).map_err(|why| ("unsubscribe.url".to_owned(), why))?;
        self.bounces.validate()?;
        self.dmarc.validate(self.bounces.source.as_deref())?;
        self.retention.validate()
    }
}

/// RFC 8058's one-click unsubscribe needs HTTPS; plain HTTP only for a local trial (a loopback
/// address, `localhost`, or a `.test` or `.localhost` name).
fn one_click_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if !lower.starts_with("http://") {
        return Err(format!(
            "`{url}` is not an https:// URL: one-click unsubscribe links are served by `newsletter serve` behind HTTPS"
        ));
    }
    let local = identity::url_host(url).is_some_and(|h| identity::is_local_host(&h));
    if local {
        Ok(())
    } else {
        Err(format!(
            "`{url}` is plain HTTP on a public host: one-click unsubscribe (RFC 8058) needs HTTPS, and mailbox providers ignore it otherwise; use https://, or a loopback or .test host for a local trial"
        ))
    }
}

impl Config {
    /// Each relay's settings, and a pool's names: the key and why.
    fn validate_relays(&self) -> Result<(), (String, String)> {
        let pooled = self.smtp.pooled;
        let mut names = std::collections::BTreeSet::new();
        for relay in &self.smtp.relays {
            // One relay keeps its keys' names; a pool's relay is named in the message.
            let fail = |field: &str, why: &str| {
                Err(if pooled {
                    ("smtp".to_owned(), format!("relay `{}`: {field} {why}", relay.name()))
                } else {
                    (format!("smtp.{field}"), why.to_owned())
                })
            };
            if relay.port == 0 {
                return fail("port", "must be at least 1");
            }
            if relay.timeout.is_zero() {
                return fail("timeout", "must be longer than 0s");
            }
            if relay.weight == 0 {
                return fail("weight", "must be at least 1");
            }
            if relay.concurrency == Some(0) {
                return fail("concurrency", "must be at least 1, or null for throttle.concurrency");
            }
            if relay.daily_limit == Some(0) {
                return fail("daily_limit", "must be at least 1, or null for none");
            }
            if let Some(rate) = &relay.rate
                && let Err(why) = rate.parse::<Rate>()
            {
                return fail("rate", &why.0);
            }
            if let Some((field, why)) = relay.kind.check(relay) {
                return fail(field, &why);
            }
            if !names.insert(relay.name()) {
                return fail(
                    "name",
                    "is used by two relays: give each relay of the pool its own name (it names the relay in the ledger and its secrets)",
                );
            }
        }
        Ok(())
    }
}

/// A pool relay's secret (`NEWSLETTER_SMTP_PASSWORD_BACKUP`): one of the secrets with a
/// relay's name appended.
fn is_relay_secret(var: &str) -> bool {
    SECRET_VARS
        .iter()
        .filter(|s| s.starts_with("NEWSLETTER_SMTP_"))
        .any(|s| {
            var.strip_prefix(s)
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('_'))
        })
}

/// The line of a dotted key (`throttle.rate`) in a YAML file, block or flow style.
fn key_in(text: &str, dotted: &str) -> Option<usize> {
    let parts: Vec<&str> = dotted.split('.').collect();
    let mut path: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        path.retain(|(level, _)| *level < indent);
        path.push((indent, key.trim().to_owned()));
        let here: Vec<&str> = path.iter().map(|(_, k)| k.as_str()).collect();
        if here == parts {
            return Some(i + 1);
        }
        // `throttle: { rate: off, concurrency: 0 }`
        if here == parts[..parts.len() - 1] && rest.contains(&format!("{}:", parts[parts.len() - 1])) {
            return Some(i + 1);
        }
    }
    None
}

/// `text` is the file's, to show the line a YAML slip is on.
fn config_error(file: &Path, text: &str, e: &serde_norway::Error) -> anyhow::Error {
    let msg = e.to_string();
    let msg = crate::suggest::plain_types(msg.find(" at line ").map_or(msg.as_str(), |i| &msg[..i]));
    let mut hint = unknown_field_hint(&msg);
    if hint.is_empty()
        && let Some(l) = e.location()
    {
        let line = text.lines().nth(l.line().saturating_sub(1)).unwrap_or_default();
        if let Some(h) = crate::suggest::yaml_hint(&msg, line) {
            hint = format!("; {h}");
        }
    }
    match e.location() {
        Some(l) => anyhow!("{}:{}:{}: {msg}{hint}", file.display(), l.line(), l.column()),
        None => anyhow!("{}: {msg}{hint}", file.display()),
    }
}

/// serde says "unknown field `form`, expected one of `from`, ..."; we add the nearest.
fn unknown_field_hint(msg: &str) -> String {
    // Nested keys come as "throttle: unknown field `rates`, ...".
    let Some(rest) = msg.find("unknown field `").map(|i| &msg[i + "unknown field `".len()..]) else {
        return String::new();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return String::new();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    crate::suggest::did_you_mean(field, candidates.into_iter())
}

/// Every configuration key (`smtp.host`) with its default value.
fn leaf_keys(value: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    fn walk(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or_default();
                    let path = if prefix.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &path, out);
                }
            }
            _ => out.push((prefix.to_owned(), v.clone())),
        }
    }
    walk(value, "", &mut out);
    out
}

/// `smtp.host` -> `NEWSLETTER_SMTP_HOST`.
pub fn env_name(key: &str) -> String {
    format!("NEWSLETTER_{}", key.replace('.', "_").to_ascii_uppercase())
}

fn set_path(root: &mut Value, key: &str, new: Value) {
    let mut cur = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Default::default());
        }
        let map = cur.as_mapping_mut().expect("made a mapping above");
        let k = Value::String((*part).to_owned());
        if i == parts.len() - 1 {
            map.insert(k, new);
            return;
        }
        cur = map.entry(k).or_insert(Value::Null);
    }
}

#[cfg(test)]
mod tests;
