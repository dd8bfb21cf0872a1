//! Amazon SES's v2 API as a transport: `SendEmail` with `Content.Raw`, so that readers get our
//! own bytes (MIME, DKIM signatures, List-Unsubscribe), exactly what `preview` shows. Requests
//! are signed with SigV4; credentials come from the AWS default chain (`aws.rs`).

pub mod aws;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use lettre::address::Envelope;

use self::aws::Chain;
use crate::config::Smtp;
use crate::net::tls;
use crate::transport::{Accepted, Reached, Relay, SendError, Stage, Transport, Unreachable};

/// One SES account in one region; cheap to clone (one clone per concurrent request).
#[derive(Clone)]
pub struct Ses(Arc<Inner>);

struct Inner {
    client: reqwest::Client,
    endpoint: String,
    region: String,
    configuration_set: Option<String>,
    chain: Chain,
}

/// What SES answered a request: the HTTP status, the error's name and its words.
struct Answer {
    status: u16,
    body: String,
    error: Option<(String, String)>,
}

impl Ses {
    pub fn new(relay: &Smtp) -> Result<Ses, Unreachable> {
        let region = relay.region.clone().ok_or("kind: ses needs region")?;
        let tls = tls::client_config(relay).map_err(|e| Unreachable(e.0))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(relay.timeout)
            .connect_timeout(relay.timeout)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client for SES: {e}"))?;
        let endpoint = relay
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://email.{region}.amazonaws.com"));
        Ok(Ses(Arc::new(Inner {
            chain: Chain::new(client.clone(), &region),
            client,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region,
            configuration_set: relay.configuration_set.clone(),
        })))
    }

    /// The account's sending rate (messages per second): v2 `GetAccount`, or v1
    /// `GetSendQuota` where the first is not answered. Also proves the credentials.
    async fn max_send_rate(&self) -> Result<f64, Unreachable> {
        let url = format!("{}/v2/email/account", self.0.endpoint);
        let answer = self.request("GET", &url, Vec::new(), None).await?;
        if answer.status == 200 {
            let v: serde_json::Value =
                serde_json::from_str(&answer.body).map_err(|e| format!("SES GetAccount: not JSON: {e}"))?;
            if let Some(rate) = v["SendQuota"]["MaxSendRate"].as_f64() {
                return Ok(rate);
            }
        } else if answer.status != 404 {
            return Err(describe(&answer).into());
        }
        let body = aws::form(&[("Action", "GetSendQuota"), ("Version", "2010-12-01")]);
        let answer = self
            .request(
                "POST",
                &format!("{}/", self.0.endpoint),
                body.into_bytes(),
                Some("application/x-www-form-urlencoded"),
            )
            .await?;
        if answer.status != 200 {
            return Err(describe(&answer).into());
        }
        aws::xml_value(&answer.body, "MaxSendRate")
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| "SES GetSendQuota: no MaxSendRate in the answer".into())
    }

    /// A signed request; `Err` when no answer came (or no credentials).
    async fn request(
        &self,
        method: &str,
        url: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<Answer, Unreachable> {
        let credentials = self.0.chain.get().await?;
        let identity = aws_credential_types::Credentials::new(
            credentials.key_id,
            credentials.secret,
            credentials.token,
            credentials.expires,
            "newsletter",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.0.region)
            .name("ses")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("cannot sign the SES request: {e}"))?
            .into();
        let headers: Vec<(&str, &str)> = content_type.map(|c| ("content-type", c)).into_iter().collect();
        let signable = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(&body))
            .map_err(|e| format!("cannot sign the SES request: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("cannot sign the SES request: {e}"))?
            .into_parts();
        let method: reqwest::Method = method.parse().map_err(|_| format!("bad method {method}"))?;
        let mut request = self.0.client.request(method, url).body(body);
        for (name, value) in headers.iter().copied().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        let reply = request
            .send()
            .await
            .map_err(|e| format!("SES at {}: {e}", self.0.endpoint))?;
        let status = reply.status().as_u16();
        let kind = reply
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = reply
            .text()
            .await
            .map_err(|e| format!("SES at {}: {e}", self.0.endpoint))?;
        let error = (status >= 300).then(|| error_of(kind.as_deref(), &body));
        Ok(Answer { status, body, error })
    }
}

/// The error's name and message, from the `x-amzn-ErrorType` header or the body (JSON for
/// v2, XML for v1).
fn error_of(header: Option<&str>, body: &str) -> (String, String) {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let from_json = |key: &str| {
        json.as_ref()
            .and_then(|j| j.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let name = header
        .map(str::to_owned)
        .or_else(|| from_json("__type"))
        .or_else(|| from_json("code"))
        .or_else(|| aws::xml_value(body, "Code").map(str::to_owned))
        .unwrap_or_default();
    // "MessageRejected:http://internal.amazon.com/..." and "com.amazon#Throttling" alike.
    let name = name.split(':').next().unwrap_or_default();
    let name = name.rsplit('#').next().unwrap_or_default().to_owned();
    let message = from_json("message")
        .or_else(|| from_json("Message"))
        .or_else(|| aws::xml_value(body, "Message").map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect());
    (name, message)
}

fn describe(answer: &Answer) -> String {
    match &answer.error {
        Some((name, message)) => format!("SES {} {name}: {message}", answer.status),
        None => format!(
            "SES {}: {}",
            answer.status,
            answer.body.chars().take(200).collect::<String>()
        ),
    }
}

/// What an SES refusal means for the run: throttling waits, the account's trouble is the
/// relay's, a rejected message is that reader's.
fn classify(answer: &Answer) -> SendError {
    let (name, message) = answer.error.clone().unwrap_or_default();
    let reply = describe(answer);
    let lower = message.to_ascii_lowercase();
    let refused = |stage| SendError::refused(true, stage, Some(answer.status), reply.clone(), None);
    match (answer.status, name.as_str()) {
        // The daily quota is the account's: another relay, or tomorrow.
        (_, "Throttling" | "TooManyRequestsException" | "LimitExceededException") if lower.contains("daily") => {
            refused(Stage::Sender)
        }
        (429, _) | (_, "Throttling" | "ThrottlingException" | "TooManyRequestsException") => {
            SendError::throttled(reply)
        }
        (500..=599, _) => SendError::connection(reply),
        (403, _)
        | (
            _,
            "AccountSuspendedException"
            | "SendingPausedException"
            | "MailFromDomainNotVerifiedException"
            | "AccessDeniedException"
            | "NotFoundException",
        ) => refused(Stage::Sender),
        _ => refused(Stage::Message),
    }
}

#[async_trait]
impl Relay for Ses {
    fn transport(&self) -> Box<dyn Transport> {
        Box::new(self.clone())
    }

    async fn reach(&self) -> Result<Reached, Unreachable> {
        let max = self.max_send_rate().await?;
        Ok(Reached {
            first: self.transport(),
            max_rate: (max > 0.0).then_some(max),
        })
    }
}

#[async_trait]
impl Transport for Ses {
    async fn send(&self, envelope: &Envelope, email: &[u8]) -> Result<Accepted, SendError> {
        let to: Vec<String> = envelope.to().iter().map(ToString::to_string).collect();
        let mut request = serde_json::json!({
            "Destination": { "ToAddresses": to },
            "Content": { "Raw": { "Data": base64::engine::general_purpose::STANDARD.encode(email) } },
        });
        if let Some(set) = &self.0.configuration_set {
            request["ConfigurationSetName"] = set.clone().into();
        }
        let url = format!("{}/v2/email/outbound-emails", self.0.endpoint);
        let answer = self
            .request("POST", &url, request.to_string().into_bytes(), Some("application/json"))
            .await
            .map_err(|e| SendError::connection(e.0))?;
        if answer.status != 200 {
            return Err(classify(&answer));
        }
        let id = serde_json::from_str::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["MessageId"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(Accepted {
            reply: format!("SES {id}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Fault;

    fn answer(status: u16, header: Option<&str>, body: &str) -> Answer {
        Answer {
            status,
            body: body.into(),
            error: Some(error_of(header, body)),
        }
    }

    #[test]
    fn refusals_are_sorted_by_whose_they_are() {
        let rejected = answer(
            400,
            Some("MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/"),
            r#"{"message":"Email address is not verified. The following identities failed the check in region EU-WEST-1: x@y.org"}"#,
        );
        let e = classify(&rejected);
        assert_eq!(
            (e.permanent, e.fault, e.stage),
            (true, Fault::Message, Stage::Message),
            "{e:?}"
        );
        assert!(
            e.reply()
                .starts_with("SES 400 MessageRejected: Email address is not verified."),
            "{e}"
        );
        let slow = answer(
            429,
            None,
            r#"{"__type":"TooManyRequestsException","message":"Maximum sending rate exceeded."}"#,
        );
        assert_eq!(classify(&slow).fault, Fault::Throttled);
        let v1 = answer(
            400,
            None,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Maximum sending rate exceeded.</Message></Error></ErrorResponse>",
        );
        assert_eq!(classify(&v1).fault, Fault::Throttled);
        let daily = answer(
            400,
            None,
            "<ErrorResponse><Error><Code>Throttling</Code><Message>Daily message quota exceeded.</Message></Error></ErrorResponse>",
        );
        assert_eq!(
            (classify(&daily).permanent, classify(&daily).fault),
            (true, Fault::Sender)
        );
        let paused = answer(400, Some("SendingPausedException"), r#"{"message":"paused"}"#);
        assert_eq!(
            (classify(&paused).permanent, classify(&paused).fault),
            (true, Fault::Sender)
        );
        let down = classify(&answer(503, None, ""));
        assert_eq!((down.permanent, down.fault), (false, Fault::Connection));
    }
}
