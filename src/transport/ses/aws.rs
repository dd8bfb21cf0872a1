//! AWS credentials from the default chain, in the SDKs' order: the environment, the shared
//! profile files, a web identity token (EKS, GitHub Actions), the container's endpoint (ECS)
//! and the instance's role (EC2, IMDSv2). Temporary credentials are renewed before they expire.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use chrono::DateTime;
use tokio::sync::Mutex;

/// Why no credentials could be had, and what to set.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(pub String);

impl From<String> for CredentialsError {
    fn from(s: String) -> Self {
        CredentialsError(s)
    }
}

impl From<&str> for CredentialsError {
    fn from(s: &str) -> Self {
        CredentialsError(s.to_owned())
    }
}

/// One set of credentials; `expires` for temporary ones.
#[derive(Clone)]
pub struct Credentials {
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
    pub expires: Option<SystemTime>,
    /// Where they came from, for messages (never the values).
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials from {}", self.source)
    }
}

/// Renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The metadata services answer at once or not at all: a machine outside AWS must not wait.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// The chain, read once and renewed when temporary credentials near their end.
pub struct Chain {
    client: reqwest::Client,
    region: String,
    env: fn(&str) -> Option<String>,
    current: Mutex<Option<Credentials>>,
}

impl Chain {
    pub fn new(client: reqwest::Client, region: &str) -> Chain {
        Chain {
            client,
            region: region.to_owned(),
            env: |var| std::env::var(var).ok().filter(|v| !v.is_empty()),
            current: Mutex::new(None),
        }
    }

    /// Credentials valid for a few more minutes.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref()
            && c.expires.is_none_or(|at| at > SystemTime::now() + RENEW_BEFORE)
        {
            return Ok(c.clone());
        }
        let fresh = self.find().await?;
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    async fn find(&self) -> Result<Credentials, CredentialsError> {
        let env = self.env;
        if let (Some(key_id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials {
                key_id,
                secret,
                token: env("AWS_SESSION_TOKEN"),
                expires: None,
                source: "the environment (AWS_ACCESS_KEY_ID)".into(),
            });
        }
        if let Some(found) = profile(env)? {
            return Ok(found);
        }
        if let (Some(file), Some(role)) = (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN")) {
            return self.web_identity(&file, &role).await;
        }
        if let Some(url) = container_url(env) {
            return self.container(&url).await;
        }
        if env("AWS_EC2_METADATA_DISABLED").is_none_or(|v| !v.eq_ignore_ascii_case("true")) {
            match self.instance_role().await {
                Ok(found) => return Ok(found),
                Err(e) => tracing::debug!("no instance role: {e}"),
            }
        }
        Err(CredentialsError("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials, or run with a role (web identity, ECS task, EC2 instance)".into()))
    }

    /// STS AssumeRoleWithWebIdentity: the token file's JWT for the role's credentials.
    async fn web_identity(&self, file: &str, role: &str) -> Result<Credentials, CredentialsError> {
        let token = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read AWS_WEB_IDENTITY_TOKEN_FILE {file}: {e}"))?;
        let session = (self.env)("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "newsletter".into());
        let endpoint =
            (self.env)("AWS_ENDPOINT_URL_STS").unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", self.region));
        let reply = self
            .client
            .post(endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("Action", "AssumeRoleWithWebIdentity"),
                ("Version", "2011-06-15"),
                ("RoleArn", role),
                ("RoleSessionName", &session),
                ("WebIdentityToken", token.trim()),
            ]))
            .send()
            .await
            .map_err(|e| format!("STS (web identity for {role}): {e}"))?;
        let status = reply.status();
        let text = reply.text().await.map_err(|e| format!("STS: {e}"))?;
        if !status.is_success() {
            return Err(CredentialsError::from(format!(
                "STS refused the web identity for {role} ({status}): {}",
                xml_value(&text, "Message").unwrap_or(&text)
            )));
        }
        let field = |name| xml_value(&text, name).map(str::to_owned);
        Ok(Credentials {
            key_id: field("AccessKeyId").ok_or("STS's answer has no AccessKeyId")?,
            secret: field("SecretAccessKey").ok_or("STS's answer has no SecretAccessKey")?,
            token: field("SessionToken"),
            expires: field("Expiration").as_deref().and_then(timestamp),
            source: format!("web identity for {role}"),
        })
    }

    /// The ECS container endpoint (or another given by AWS_CONTAINER_CREDENTIALS_FULL_URI).
    async fn container(&self, url: &str) -> Result<Credentials, CredentialsError> {
        let mut request = self.client.get(url).timeout(METADATA_TIMEOUT);
        if let Some(token) = (self.env)("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
            request = request.header("authorization", token);
        }
        let text = fetch(request)
            .await
            .map_err(|e| format!("the container's credentials at {url}: {e}"))?;
        from_json(&text, "the container's role")
    }

    /// IMDSv2: a session token, the role's name, then its credentials.
    async fn instance_role(&self) -> Result<Credentials, CredentialsError> {
        let base = (self.env)("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into());
        let base = base.trim_end_matches('/');
        let token = fetch(
            self.client
                .put(format!("{base}/latest/api/token"))
                .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                .timeout(METADATA_TIMEOUT),
        )
        .await?;
        let get = |path: String| {
            self.client
                .get(format!("{base}/latest/meta-data/iam/security-credentials/{path}"))
                .header("x-aws-ec2-metadata-token", token.clone())
                .timeout(METADATA_TIMEOUT)
        };
        let roles = fetch(get(String::new())).await?;
        let role = roles
            .lines()
            .next()
            .ok_or("the instance has no role")?
            .trim()
            .to_owned();
        let text = fetch(get(role.clone())).await?;
        from_json(&text, &format!("the instance role {role}"))
    }
}

async fn fetch(request: reqwest::RequestBuilder) -> Result<String, CredentialsError> {
    let reply = request.send().await.map_err(|e| e.to_string())?;
    let status = reply.status();
    let text = reply.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(CredentialsError::from(format!(
            "{status}: {}",
            text.chars().take(200).collect::<String>()
        )));
    }
    Ok(text)
}

/// The container endpoint, when the environment names one.
fn container_url(env: fn(&str) -> Option<String>) -> Option<String> {
    env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .map(|path| format!("http://169.254.170.2{path}"))
        .or_else(|| env("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
}

/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`, as the metadata services answer.
fn from_json(text: &str, source: &str) -> Result<Credentials, CredentialsError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{source}: the answer is not JSON: {e}"))?;
    let field = |name: &str| v.get(name).and_then(|x| x.as_str()).map(str::to_owned);
    Ok(Credentials {
        key_id: field("AccessKeyId").ok_or(format!("{source}: no AccessKeyId"))?,
        secret: field("SecretAccessKey").ok_or(format!("{source}: no SecretAccessKey"))?,
        token: field("Token"),
        expires: field("Expiration").as_deref().and_then(timestamp),
        source: source.to_owned(),
    })
}

fn timestamp(text: &str) -> Option<SystemTime> {
    DateTime::parse_from_rfc3339(text.trim()).ok().map(SystemTime::from)
}

/// The text of the first `<name>` element (STS and SES v1 answer in XML; the values we read
/// hold no markup).
pub fn xml_value<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim())
}

/// `application/x-www-form-urlencoded`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The profile's static keys from `~/.aws/credentials` or `~/.aws/config` (AWS_PROFILE, else
/// `default`); a profile that assumes a role or uses SSO is named as unsupported.
fn profile(env: fn(&str) -> Option<String>) -> Result<Option<Credentials>, CredentialsError> {
    let home = env("HOME").map(PathBuf::from).unwrap_or_default();
    let name = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let files = [
        (
            env("AWS_SHARED_CREDENTIALS_FILE").map_or_else(|| home.join(".aws/credentials"), PathBuf::from),
            name.clone(),
        ),
        (
            env("AWS_CONFIG_FILE").map_or_else(|| home.join(".aws/config"), PathBuf::from),
            if name == "default" {
                name.clone()
            } else {
                format!("profile {name}")
            },
        ),
    ];
    for (file, section) in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let keys = ini_section(&text, &section);
        if keys.is_empty() {
            continue;
        }
        let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        if let (Some(key_id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
            return Ok(Some(Credentials {
                key_id,
                secret,
                token: get("aws_session_token"),
                expires: None,
                source: format!("profile {name} in {}", file.display()),
            }));
        }
        if let Some(what) = ["role_arn", "sso_session", "sso_start_url", "credential_process"]
            .iter()
            .find(|k| get(k).is_some())
        {
            return Err(CredentialsError::from(format!(
                "profile {name} in {} uses {what}, which newsletter does not read: give it static keys, or use the environment or a role of the machine",
                file.display()
            )));
        }
    }
    Ok(None)
}

/// The `key = value` lines of `[section]` in an INI file.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_their_sections() {
        let text = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key=s1\n\n[profile news]\n# comment\naws_access_key_id = AKIANEWS\naws_secret_access_key = s2\naws_session_token = t2\n";
        let news = ini_section(text, "profile news");
        assert_eq!(
            news,
            [
                ("aws_access_key_id".to_owned(), "AKIANEWS".to_owned()),
                ("aws_secret_access_key".to_owned(), "s2".to_owned()),
                ("aws_session_token".to_owned(), "t2".to_owned())
            ]
        );
        assert_eq!(ini_section(text, "default").len(), 2);
        assert!(ini_section(text, "other").is_empty());
    }

    #[test]
    fn answers_of_sts_and_the_metadata_services_are_read() {
        let sts = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>sec</SecretAccessKey><SessionToken>tok</SessionToken><Expiration>2026-12-01T10:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_value(sts, "AccessKeyId"), Some("ASIA1"));
        assert_eq!(xml_value(sts, "Missing"), None);
        let imds = r#"{"Code":"Success","AccessKeyId":"ASIA2","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-01T10:00:00Z"}"#;
        let c = from_json(imds, "the instance role r").unwrap();
        assert_eq!((c.key_id.as_str(), c.token.as_deref()), ("ASIA2", Some("t")));
        assert!(c.expires.is_some());
        assert!(!format!("{c:?}").contains("ASIA2"), "never the values");
        assert_eq!(form(&[("A", "b c/d")]), "A=b%20c%2Fd");
    }
}
