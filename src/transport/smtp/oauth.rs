//! Access tokens for AUTH XOAUTH2 (Microsoft 365, Google Workspace): a token from the
//! environment, or one obtained by the OAuth 2.0 client-credentials grant (RFC 6749 4.4) and
//! obtained again before it expires, so a send that runs for hours keeps logging in.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::Smtp;

pub const TOKEN_VAR: &str = "NEWSLETTER_SMTP_OAUTH_TOKEN";
pub const CLIENT_SECRET_VAR: &str = "NEWSLETTER_SMTP_OAUTH_CLIENT_SECRET";

/// A token this close to its expiry is replaced before it is used.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Why no access token could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

impl From<String> for TokenError {
    fn from(s: String) -> Self {
        TokenError(s)
    }
}

impl From<&str> for TokenError {
    fn from(s: &str) -> Self {
        TokenError(s.to_owned())
    }
}

pub enum Tokens {
    /// Given in the environment; the operator renews it.
    Fixed(String),
    ClientCredentials {
        client: reqwest::Client,
        url: String,
        client_id: String,
        secret: String,
        scope: Option<String>,
        current: Mutex<Option<(String, Instant)>>,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds; an hour when absent, the usual lifetime.
    expires_in: Option<u64>,
}

impl Tokens {
    /// The token source `smtp.oauth` and the environment describe.
    pub fn from_config(smtp: &Smtp, env: impl Fn(&str) -> Option<String>) -> Result<Tokens, TokenError> {
        if let Some(token) = env(TOKEN_VAR) {
            return Ok(Tokens::Fixed(token.trim().to_owned()));
        }
        let oauth = &smtp.oauth;
        let Some(url) = oauth.token_url.clone() else {
            return Err(TokenError(format!(
                "smtp.auth is xoauth2 but neither {TOKEN_VAR} nor smtp.oauth.token_url is set: give an access token, or the token endpoint for the client-credentials flow"
            )));
        };
        let client_id = oauth
            .client_id
            .clone()
            .ok_or("smtp.oauth.token_url is set but smtp.oauth.client_id is not")?;
        let secret = env(CLIENT_SECRET_VAR).ok_or(format!(
            "smtp.oauth.token_url is set but {CLIENT_SECRET_VAR} is not: put the client secret in the environment"
        ))?;
        // reqwest is built without a crypto provider, so that rustls uses ring as lettre does.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(smtp.timeout)
            .build()
            .map_err(|e| TokenError(format!("cannot set up the HTTP client for the token endpoint: {e}")))?;
        Ok(Tokens::ClientCredentials {
            client,
            url,
            client_id,
            secret,
            scope: oauth.scope.clone(),
            current: Mutex::new(None),
        })
    }

    /// A token valid for at least a few more minutes.
    pub async fn token(&self) -> Result<String, TokenError> {
        let (client, url, client_id, secret, scope, current) = match self {
            Tokens::Fixed(token) => return Ok(token.clone()),
            Tokens::ClientCredentials {
                client,
                url,
                client_id,
                secret,
                scope,
                current,
            } => (client, url, client_id, secret, scope, current),
        };
        let mut current = current.lock().await;
        if let Some((token, expires)) = current.as_ref()
            && *expires > Instant::now() + REFRESH_BEFORE
        {
            return Ok(token.clone());
        }
        // The form body, percent-encoded by the URL type reqwest already carries.
        let mut form = reqwest::Url::parse("http://form.invalid/").expect("a valid URL");
        form.query_pairs_mut()
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", secret);
        if let Some(scope) = scope {
            form.query_pairs_mut().append_pair("scope", scope);
        }
        let body = form.query().unwrap_or_default().to_owned();
        let response = client
            .post(url.as_str())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| TokenError(format!("cannot reach the token endpoint {url}: {}", without_url(&e))))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            TokenError(format!(
                "the token endpoint {url} broke off its answer: {}",
                without_url(&e)
            ))
        })?;
        if !status.is_success() {
            // OAuth errors carry `error` and `error_description` (RFC 6749 5.2).
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .map(|v| {
                    [v.get("error"), v.get("error_description")]
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                        .join(": ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| status.to_string());
            return Err(TokenError(format!(
                "the token endpoint {url} refused the client credentials ({detail}): check smtp.oauth.client_id and {CLIENT_SECRET_VAR}"
            )));
        }
        let parsed: TokenResponse = serde_json::from_str(&text).map_err(|e| {
            TokenError(format!(
                "the token endpoint {url} answered without an access_token ({e})"
            ))
        })?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        *current = Some((parsed.access_token.clone(), Instant::now() + lifetime));
        tracing::debug!("obtained an access token valid for {}s", lifetime.as_secs());
        Ok(parsed.access_token)
    }
}

/// reqwest's errors repeat the URL, which the caller names already.
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(i) = e.find(" for url (") {
        e.truncate(i);
    }
    e
}
