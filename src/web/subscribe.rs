//! Sign-up with double opt-in, and the preference centre.
//!
//! `POST /subscribe` (a plain form post from the website, or the form page `GET /subscribe`
//! serves) always answers "check your inbox", whatever the address, so the form cannot tell
//! anyone who is subscribed. An address that may be asked gets one confirmation email an
//! hour; its link opens a page with one button, and only the button's POST confirms: link
//! scanners open links, they do not press buttons. The confirmation is a reader event that
//! keeps the consent record. The preference centre (`{{preferences_url}}` in every issue)
//! is reached with the reader's unsubscribe token.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::pages::{ProjectBox, SubscribeView as View, private_page};
use super::request::{mask, percent_decode, query_param, remote};
use super::writer::{Write, Written};
use super::{App, Peer, confirmation};
use crate::choice::{self, Choice};
use crate::config::DEFAULT_FORM;
use crate::ledger::Signup;
use crate::readers::Confirmed;

/// The field people never fill: bots that fill every field are answered as if they were
/// people, and nothing is stored or sent.
pub const HONEYPOT: &str = "website";

/// A form body's fields, in order (`projects` may repeat).
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').all(|t| t.trim().starts_with("application/json")))
}

/// The page of `state`, or for a client that accepts only JSON `{"state": ..., "message": ...}`.
fn answer(app: &App, headers: &HeaderMap, status: StatusCode, view: View<'_>) -> Response {
    if wants_json(headers) {
        let body = json!({ "state": view.state, "message": view.message });
        return (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    }
    private_page(status, app.pages.subscribe(&view))
}

fn boxes<'a>(app: &'a App, choice: &Choice) -> Vec<ProjectBox<'a>> {
    app.pages
        .projects()
        .iter()
        .map(|p| ProjectBox {
            id: &p.id,
            name: &p.name,
            checked: *choice != Choice::Everything && choice.includes(Some(&p.id)),
        })
        .collect()
}

fn form_view<'a>(app: &'a App, message: Option<String>) -> View<'a> {
    View {
        state: "form",
        message,
        action: super::path_of(&app.config.subscribe_url()),
        form: DEFAULT_FORM,
        consent: app.config.subscribe.forms.get(DEFAULT_FORM).map_or("", String::as_str),
        honeypot: HONEYPOT,
        max: app.config.subscribe.max_field_bytes,
        projects: boxes(app, &Choice::Everything),
        ..View::default()
    }
}

fn state(state: &str) -> View<'_> {
    View {
        state,
        ..View::default()
    }
}

pub async fn form_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    with_origin_sent(answer(&app, &headers, StatusCode::OK, form_view(&app, None)))
}

/// A form that cannot be taken: the form again with what to fix.
fn bad_form(app: &App, headers: &HeaderMap, message: String) -> Response {
    with_origin_sent(answer(
        app,
        headers,
        StatusCode::BAD_REQUEST,
        form_view(app, Some(message)),
    ))
}

/// The form's page holds no token: its posts may carry our origin, which the sign-up checks.
fn with_origin_sent(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
    response
}

pub async fn sign_up(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let settings = &app.config.subscribe;
    let fields = form_fields(&body);
    let max = settings.max_field_bytes;
    if let Some((name, _)) = fields.iter().find(|(_, v)| v.len() > max) {
        return bad_form(
            &app,
            &headers,
            format!("The {name} field is too long: at most {max} characters."),
        );
    }
    if !super::client::origin_allowed(&headers, &app.origins) {
        return answer(&app, &headers, StatusCode::FORBIDDEN, state("forbidden"));
    }
    let sent = |app: &App| answer(app, &headers, StatusCode::OK, state("sent"));
    // A bot: the same answer as anyone gets, and nothing stored or sent.
    if field(&fields, HONEYPOT).is_some_and(|v| !v.is_empty()) {
        return sent(&app);
    }
    let client = super::client::limit_key(app.proxies.client(peer.as_deref().map(|p| p.0.ip()), &headers));
    if !app.limiter.admit(&client, settings.per_client_per_hour) {
        return answer(&app, &headers, StatusCode::TOO_MANY_REQUESTS, state("limited"));
    }
    let raw = field(&fields, "email").unwrap_or("");
    let email = match crate::address::canonical(raw) {
        Ok(email) => email,
        Err(why) => {
            let shown = if raw.trim().is_empty() {
                "The email address is missing.".to_owned()
            } else {
                format!(
                    "“{}” is not an email address ({why}): check it and try again.",
                    raw.trim()
                )
            };
            return bad_form(&app, &headers, shown);
        }
    };
    let mut ids = std::collections::BTreeSet::new();
    for (_, id) in fields.iter().filter(|(k, _)| k == choice::COLUMN) {
        let (chosen, unknown) = Choice::parse(id, app.pages.registry());
        if let Some(id) = unknown.first() {
            return bad_form(&app, &headers, format!("There is no project “{id}” to choose."));
        }
        ids.extend(chosen.ids().into_iter().map(str::to_owned));
    }
    let projects = Choice::from_ids(ids, app.pages.registry()).to_string();
    let form = field(&fields, "form").filter(|f| !f.is_empty()).unwrap_or(DEFAULT_FORM);
    let Some(wording) = settings.forms.get(form) else {
        return bad_form(
            &app,
            &headers,
            format!("This form (“{form}”) is not known here; tell the site's owner."),
        );
    };
    let name = field(&fields, "name").map(str::trim).filter(|n| !n.is_empty());
    if let Some(why) = name.and_then(name_problem) {
        return bad_form(
            &app,
            &headers,
            format!("The name {why}: write just your name, or leave it empty."),
        );
    }
    let signup = Signup {
        id: 0,
        email,
        name: name.map(str::to_owned),
        projects,
        form: form.to_owned(),
        wording: wording.clone(),
        layout_version: app.pages.version().to_owned(),
        client: remote(peer.as_deref(), &headers),
        posted_at: crate::ledger::now(),
        emailed_at: None,
        message_id: None,
        confirmed_at: None,
        attempts: 0,
        last_error: None,
        retry_at: None,
    };
    let Some(mailer) = app.mailer.clone() else {
        tracing::error!("a sign-up came but no relay is configured (smtp.host): nothing sent");
        return answer(&app, &headers, StatusCode::SERVICE_UNAVAILABLE, state("failed"));
    };
    let write = Write::SignUp {
        signup: Box::new(signup),
        per_address: settings.per_address,
    };
    match app.write(write).await {
        Some(Written::SignedUp(Some(signup))) => {
            // Sent at once, but the page does not wait for the relay.
            tokio::spawn(confirmation::email(Arc::clone(&app), mailer, *signup));
            sent(&app)
        }
        // Fail closed: without the key a forgotten person could be emailed and stored again.
        Some(Written::KeyMissing(missing)) => {
            tracing::error!("a sign-up refused: {missing}");
            answer(&app, &headers, StatusCode::SERVICE_UNAVAILABLE, state("failed"))
        }
        Some(_) => sent(&app),
        None => answer(&app, &headers, StatusCode::SERVICE_UNAVAILABLE, state("failed")),
    }
}

/// Why a name typed into the form is not one: a name is kept for later issues, and a line
/// break or a link in it is how a stranger's text would ride on the foundation's mail.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.chars().any(char::is_control) {
        return Some("cannot hold a line break or control character");
    }
    let lower = name.to_lowercase();
    // A scheme however mangled (`https://`, `http:/`), a www. host, an address, or a word
    // with a dot between letters as host names have.
    let linkish = lower.contains(":/")
        || lower
            .split_whitespace()
            .any(|w| w.starts_with("http:") || w.starts_with("https:"))
        || lower.contains("www.")
        || lower.contains('@')
        || lower.split_whitespace().any(|word| {
            // `evil.example`, `bit.ly/x`: a dot between letters, as in a host name.
            let word = word.trim_matches(|c: char| !c.is_alphanumeric());
            word.split_once('.').is_some_and(|(a, b)| {
                a.chars().last().is_some_and(char::is_alphanumeric)
                    && b.chars().take(2).filter(|c| c.is_alphabetic()).count() == 2
            })
        });
    linkish.then_some("cannot hold a web or email address")
}

/// The token a button posts, or the link's.
fn token_of(fields: &[(String, String)], uri: &Uri) -> String {
    field(fields, "token")
        .map(str::to_owned)
        .or_else(|| query_param(uri, "token"))
        .unwrap_or_default()
}

/// A confirmation token's address and sign-up, if it is one and has not expired;
/// `Err(())`: a token that is not one.
fn confirmation_claim(app: &App, token: &str) -> Result<Option<(String, i64)>, ()> {
    let claim = app.secrets.verify(token).ok_or(())?;
    let (id, expires) = confirmation::parse(&claim).ok_or(())?;
    Ok((chrono::Utc::now().timestamp() <= expires).then_some((claim.email, id)))
}

pub async fn confirm_page(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    let token = query_param(&uri, "token").unwrap_or_default();
    match confirmation_claim(&app, &token) {
        Ok(Some(_)) => {
            let view = View {
                action: super::path_of(&app.config.confirm_url()),
                token,
                ..state("ask")
            };
            answer(&app, &headers, StatusCode::OK, view)
        }
        Ok(None) => answer(&app, &headers, StatusCode::GONE, state("expired")),
        Err(()) => answer(&app, &headers, StatusCode::BAD_REQUEST, state("invalid")),
    }
}

pub async fn confirm(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let token = token_of(&fields, &uri);
    let (email, id) = match confirmation_claim(&app, &token) {
        Ok(Some(claim)) => claim,
        Ok(None) => return answer(&app, &headers, StatusCode::GONE, state("expired")),
        Err(()) => return answer(&app, &headers, StatusCode::BAD_REQUEST, state("invalid")),
    };
    let write = Write::Confirm {
        id,
        email,
        client: remote(peer.as_deref(), &headers),
    };
    match app.write(write).await {
        Some(Written::Confirmed(Some(Confirmed::Welcome | Confirmed::Already))) => {
            answer(&app, &headers, StatusCode::OK, state("confirmed"))
        }
        Some(Written::Confirmed(Some(Confirmed::Refused))) => answer(&app, &headers, StatusCode::OK, state("cannot")),
        Some(Written::Confirmed(Some(Confirmed::LeftSince))) => answer(&app, &headers, StatusCode::OK, state("left")),
        Some(_) => answer(&app, &headers, StatusCode::GONE, state("expired")),
        None => answer(&app, &headers, StatusCode::SERVICE_UNAVAILABLE, state("failed")),
    }
}

/// The address of a preference-centre token: any of the reader's links (not a sign-up's).
fn reader_of(app: &App, token: &str) -> Option<String> {
    let claim = app.secrets.verify(token)?;
    confirmation::parse(&claim).is_none().then_some(claim.email)
}

fn choose_view<'a>(app: &'a App, token: String, email: &str, choice: &Choice, state: &'a str) -> View<'a> {
    View {
        state,
        action: super::path_of(&app.config.preferences_url()),
        token,
        address: mask(email),
        everything: *choice == Choice::Everything,
        projects: boxes(app, choice),
        ..View::default()
    }
}

pub async fn preferences_page(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    let token = query_param(&uri, "token").unwrap_or_default();
    let Some(email) = reader_of(&app, &token) else {
        return answer(&app, &headers, StatusCode::BAD_REQUEST, state("invalid"));
    };
    let current = {
        let app = Arc::clone(&app);
        let email = email.clone();
        tokio::task::spawn_blocking(move || app.ledger().choice_of(&email))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    };
    let choice = Choice::parse(current.as_deref().unwrap_or(""), app.pages.registry()).0;
    answer(
        &app,
        &headers,
        StatusCode::OK,
        choose_view(&app, token, &email, &choice, "choose"),
    )
}

pub async fn save_preferences(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let token = token_of(&fields, &uri);
    let Some(email) = reader_of(&app, &token) else {
        return answer(&app, &headers, StatusCode::BAD_REQUEST, state("invalid"));
    };
    let chosen: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == choice::COLUMN)
        .map(|(_, v)| v.as_str())
        .collect();
    let (choice, unknown) = Choice::parse(&chosen.join(";"), app.pages.registry());
    if let Some(id) = unknown.first() {
        let mut view = choose_view(&app, token, &email, &choice, "choose");
        view.message = Some(format!("There is no project “{id}” to choose."));
        return answer(&app, &headers, StatusCode::BAD_REQUEST, view);
    }
    let write = Write::Choose {
        email: email.clone(),
        projects: choice.to_string(),
        evidence: remote(peer.as_deref(), &headers),
    };
    match app.write(write).await {
        Some(_) => answer(
            &app,
            &headers,
            StatusCode::OK,
            choose_view(&app, token, &email, &choice, "saved"),
        ),
        None => answer(&app, &headers, StatusCode::SERVICE_UNAVAILABLE, state("failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_links_or_line_breaks_are_refused() {
        for ok in [
            "Kate Reader",
            "J. R. R. Tolkien",
            "Zoë O'Brien-Smith",
            "李小龙",
            "Dr. Who",
        ] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in [
            "Kate\r\nBcc: x@example.org",
            "Kate\u{0}",
            "Your account will be closed. Verify it at https://evil.example",
            "visit evil.example now",
            "www.evil",
            "bit.ly/abc",
            "mail me@evil.example",
            // Written from the pattern: a host with a path, a port, a dot-less scheme.
            "Kate evil.example:8080/login",
            "go to EVIL.EXAMPLE now",
            "http:/evil",
        ] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
    }
}
