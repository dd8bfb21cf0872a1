//! `newsletter.yaml`: strict keys with documented defaults, each overridable by a
//! `NEWSLETTER_*` environment variable (`smtp.host` -> `NEWSLETTER_SMTP_HOST`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_norway::Value;

/// Environment variables that hold secrets, never configuration keys.
pub const SECRET_VARS: &[&str] = &[
    "NEWSLETTER_SMTP_PASSWORD",
    "NEWSLETTER_UNSUBSCRIBE_SECRET",
    "NEWSLETTER_DKIM_PRIVATE_KEY",
    "NEWSLETTER_DKIM_ED25519_PRIVATE_KEY",
    "NEWSLETTER_SMTP_OAUTH_TOKEN",
    "NEWSLETTER_SMTP_OAUTH_CLIENT_SECRET",
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
    pub smtp: Smtp,
    pub throttle: Throttle,
    pub dkim: Dkim,
    /// How many personalized messages `send --dry-run` writes as .eml files (all with `--all`).
    pub dry_run_samples: usize,
    pub check: Check,
    pub preview: Preview,
    /// What loading found worth saying but not stopping for (a misspelt variable); the
    /// command prints them like its other warnings.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `newsletter check`: the link checker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Check {
    /// Limit for each request, from connecting to the last header.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Requests in flight at once, over all hosts.
    pub concurrency: usize,
    /// Requests in flight at once to one host.
    pub per_host: usize,
    /// How long a result is reused before the URL is asked again (`--no-cache` to force).
    #[serde(with = "duration")]
    pub cache_for: Duration,
    /// Attempts after the first when a server answers 429 or 503.
    pub retries: u32,
    /// The longest `Retry-After` waited for; a longer one counts as a failure.
    #[serde(with = "duration")]
    pub max_retry_after: Duration,
    /// Images larger than this many bytes are a warning (slow on phones, clipped by some clients).
    pub max_image_bytes: u64,
    /// Sent with every request, so site owners can tell who is asking.
    pub user_agent: String,
}

impl Default for Check {
    fn default() -> Self {
        Check {
            timeout: Duration::from_secs(10),
            concurrency: 16,
            per_host: 2,
            cache_for: Duration::from_secs(3600),
            retries: 2,
            max_retry_after: Duration::from_secs(60),
            max_image_bytes: 1024 * 1024,
            user_agent: concat!(
                "newsletter-link-check/",
                env!("CARGO_PKG_VERSION"),
                " (+https://openinfra.dev; checks links of a newsletter before it is sent)"
            )
            .into(),
        }
    }
}

/// `newsletter preview --serve`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Preview {
    /// The port on 127.0.0.1; `--port` overrides it. 0 picks a free one.
    pub port: u16,
}

impl Default for Preview {
    fn default() -> Self {
        Preview { port: 8025 }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption: accepted only for a loopback host.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// The submission server; required to send.
    pub host: Option<String>,
    pub port: u16,
    pub security: Security,
    /// Login name; the password comes only from NEWSLETTER_SMTP_PASSWORD.
    pub username: Option<String>,
    /// The name given in EHLO; by default this machine's host name.
    pub hello_name: Option<String>,
    /// Limit for connecting, and for each command's reply.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// A PEM bundle of CA certificates trusted besides the built-in roots and the system's
    /// store (a relay with a private CA, a network that inspects TLS).
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, neither the built-in roots nor the system's store.
    pub ca_only: bool,
    /// How to log in when `username` is set: `password` (AUTH PLAIN or LOGIN with
    /// NEWSLETTER_SMTP_PASSWORD) or `xoauth2` (an OAuth 2.0 access token).
    pub auth: AuthMethod,
    pub oauth: OAuth,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    #[default]
    Password,
    Xoauth2,
}

/// Where `auth: xoauth2` gets its access token: NEWSLETTER_SMTP_OAUTH_TOKEN when set, else
/// the client-credentials grant at `token_url` with NEWSLETTER_SMTP_OAUTH_CLIENT_SECRET.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth {
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    /// e.g. `https://outlook.office365.com/.default` for Microsoft 365.
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Throttle {
    /// Messages per second, minute or hour: `10/s`, `600/min`, `20000/h`; `off` for no limit.
    #[serde(deserialize_with = "string_or_number")]
    pub rate: String,
    /// Messages that may go out back to back after an idle spell (the token bucket's size).
    pub burst: u32,
    /// SMTP connections sending at once.
    pub concurrency: usize,
    /// Pause for `batch_pause` after every `batch_size` messages; none by default.
    pub batch_size: Option<u64>,
    #[serde(with = "duration")]
    pub batch_pause: Duration,
    /// Attempts after the first for a temporary failure (4xx reply or lost connection).
    pub retries: u32,
    /// The first retry waits this long; each next one twice as long.
    #[serde(with = "duration")]
    pub retry_delay: Duration,
    /// Stop the run after this many failures in a row: a server that rejects everything must
    /// not burn through the list.
    pub max_consecutive_failures: u32,
    /// Attempts over all runs after which a recipient that still fails temporarily is given up
    /// (counted as failed), so that cron can finish the issue.
    pub max_attempts: u32,
}

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

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            host: None,
            port: 587,
            security: Security::Starttls,
            username: None,
            hello_name: None,
            timeout: Duration::from_secs(30),
            ca_file: None,
            ca_only: false,
            auth: AuthMethod::Password,
            oauth: OAuth::default(),
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            rate: "10/s".into(),
            burst: 1,
            concurrency: 4,
            batch_size: None,
            batch_pause: Duration::from_secs(30),
            retries: 3,
            retry_delay: Duration::from_secs(5),
            max_consecutive_failures: 20,
            max_attempts: 20,
        }
    }
}

/// Durations written as people write them: `30s`, `5m`, `1h`, `250ms`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer, de::Error};

    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration: write e.g. 30s, 5m, 1h or 250ms"))?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "s" | "" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            _ => {
                return Err(format!("`{s}` is not a duration: write e.g. 30s, 5m, 1h or 250ms"));
            }
        };
        Ok(Duration::from_secs_f64(secs))
    }

    pub fn format(d: &Duration) -> String {
        let ms = d.as_millis();
        if !ms.is_multiple_of(1000) {
            format!("{ms}ms")
        } else {
            format!("{}s", ms / 1000)
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(d))
    }

    /// A string as written (`30s`), or a bare number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let raw = super::string_or_number(d)?;
        parse(&raw).map_err(D::Error::custom)
    }
}

/// A string, or a number YAML read as one (`rate: 10`, `timeout: 30`), as its text.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Int(i64),
        Float(f64),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Text(s) => s,
        Raw::Int(n) => n.to_string(),
        Raw::Float(n) => n.to_string(),
    })
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
    /// The mailbox for `mailto:` unsubscribes in List-Unsubscribe.
    pub mailto: String,
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
            smtp: Smtp::default(),
            throttle: Throttle::default(),
            dkim: Dkim::default(),
            dry_run_samples: 10,
            check: Check::default(),
            preview: Preview::default(),
            warnings: Vec::new(),
        }
    }
}

impl Default for Unsubscribe {
    fn default() -> Self {
        Unsubscribe {
            url: "https://openinfra.dev/newsletter/unsubscribe".into(),
            mailto: "newsletter-unsubscribe@openinfra.dev".into(),
        }
    }
}

/// The default configuration file, read when present.
pub const DEFAULT_PATH: &str = "newsletter.yaml";

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
                let _: Config = serde_norway::from_str(text).map_err(|e| config_error(file, &e))?;
                serde_norway::from_str::<Value>(text).map_err(|e| config_error(file, &e))?
            }
            _ => Value::Mapping(Default::default()),
        };
        if value.is_null() {
            value = Value::Mapping(Default::default());
        }
        let keys = leaf_keys(&serde_norway::to_value(Config::default())?);
        let mut warnings = Vec::new();
        for (var, raw) in env.filter(|(k, _)| k.starts_with("NEWSLETTER_")) {
            if SECRET_VARS.contains(&var.as_str()) || OTHER_VARS.contains(&var.as_str()) {
                continue;
            }
            let Some((key, default)) = keys.iter().find(|(k, _)| env_name(k) == var) else {
                let names: Vec<String> = keys.iter().map(|(k, _)| env_name(k)).collect();
                warnings.push(format!(
                    "{var} is not a configuration variable, so it is ignored{}",
                    crate::suggest::did_you_mean(&var, names.iter().map(String::as_str))
                ));
                continue;
            };
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
            // Each variable is tried on its own, so that an error names it.
            if let Err(e) = serde_norway::from_value::<Config>(value.clone()) {
                bail!("{var}={raw:?}: {e} (for {key})");
            }
        }
        let mut config: Config = serde_norway::from_value(value).map_err(|e| anyhow!("configuration: {e}"))?;
        config.warnings = warnings;
        if let Err((key, why)) = config.validate() {
            let at = match (file, &text) {
                (Some(file), Some(text)) if key_in(text, &key).is_some() => {
                    format!("{}:{}: ", file.display(), key_in(text, &key).unwrap_or(0))
                }
                (Some(file), _) => format!("{}: ", file.display()),
                (None, _) => String::new(),
            };
            let from_env = std::env::var(env_name(&key)).is_ok();
            let origin = if from_env {
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
        let at_least_one = [
            ("smtp.port", u64::from(self.smtp.port)),
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
        if self.smtp.timeout.is_zero() || self.check.timeout.is_zero() {
            let key = if self.smtp.timeout.is_zero() {
                "smtp.timeout"
            } else {
                "check.timeout"
            };
            return Err((key.into(), "must be longer than 0s".into()));
        }
        self.throttle
            .rate
            .parse::<crate::deliver::throttle::Rate>()
            .map_err(|why| ("throttle.rate".to_owned(), why))?;
        Ok(())
    }
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

fn config_error(file: &Path, e: &serde_norway::Error) -> anyhow::Error {
    let msg = e.to_string();
    let msg = msg.find(" at line ").map_or(msg.as_str(), |i| &msg[..i]).to_owned();
    let hint = unknown_field_hint(&msg);
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
mod tests {
    use super::*;
    use std::io::Write;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(Some(f.path()), env)
    }

    #[test]
    fn the_example_file_holds_every_key_with_its_default() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("newsletter.example.yaml");
        let c = Config::load(Some(&example), std::iter::empty()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn defaults_apply_to_missing_keys() {
        let c = load("reply_to: community@openinfra.dev\n", &[]).unwrap();
        assert_eq!(c.reply_to.as_deref(), Some("community@openinfra.dev"));
        assert_eq!(c.from, Config::default().from);
    }

    #[test]
    fn unknown_key_names_line_and_suggests() {
        let err = load("form:\n  name: X\n  address: x@y.org\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains(":1:1: unknown field `form`"), "{err}");
        assert!(err.ends_with("did you mean `from`?"), "{err}");
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let c = load(
            "from: { name: A, address: a@b.org }\n",
            &[
                ("NEWSLETTER_FROM_NAME", "Env Name"),
                ("NEWSLETTER_SITE_ORIGIN", "https://example.org"),
            ],
        )
        .unwrap();
        assert_eq!(c.from.name, "Env Name");
        assert_eq!(c.from.address, "a@b.org");
        assert_eq!(c.site_origin.as_deref(), Some("https://example.org"));
    }

    #[test]
    fn list_keys_take_comma_separated_values_from_the_environment() {
        let c = load("{}", &[("NEWSLETTER_TEST_RECIPIENTS", "a@x.org, b@x.org")]).unwrap();
        assert_eq!(c.test_recipients, ["a@x.org", "b@x.org"]);
        let c = load(
            "{}",
            &[
                ("NEWSLETTER_TEST_RECIPIENTS", "[c@x.org]"),
                ("NEWSLETTER_THROTTLE_RETRY_DELAY", "250ms"),
            ],
        )
        .unwrap();
        assert_eq!(c.test_recipients, ["c@x.org"]);
        assert_eq!(c.throttle.retry_delay, Duration::from_millis(250));
    }

    #[test]
    fn mistakes_name_their_key_line_or_variable() {
        let err = load("throttle:\n  rates: 10/s\n", &[]).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.ends_with("did you mean `rate`?"), "{err}");
        let err = load("throttle:\n  rate: 10\n", &[]).unwrap_err().to_string();
        assert!(
            err.contains(":2: throttle.rate: `10` is not a rate: write messages per time unit"),
            "{err}"
        );
        let c = load("smtp:\n  timeout: 30\n", &[]).unwrap();
        assert_eq!(c.smtp.timeout, Duration::from_secs(30), "a bare number is seconds");
        let err = load("{}", &[("NEWSLETTER_SMTP_PORT", "abc")]).unwrap_err().to_string();
        assert!(err.starts_with("NEWSLETTER_SMTP_PORT=\"abc\": "), "{err}");
        let err = load("throttle: { rate: off, concurrency: 0 }\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains(":1: throttle.concurrency: must be at least 1"), "{err}");
        let err = load("smtp:\n  host: x\n  port: 0\n", &[]).unwrap_err().to_string();
        assert!(err.contains(":3: smtp.port: must be at least 1"), "{err}");
        let c = load("{}", &[("NEWSLETTER_SMTP_HOTS", "x")]).unwrap();
        assert_eq!(
            c.warnings,
            [
                "NEWSLETTER_SMTP_HOTS is not a configuration variable, so it is ignored; did you mean `NEWSLETTER_SMTP_HOST`?"
            ]
        );
    }

    #[test]
    fn secrets_are_not_config_keys() {
        let c = load("{}", &[("NEWSLETTER_SMTP_PASSWORD", "hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
