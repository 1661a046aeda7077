//! `{base}/connect/…`: where a user connects a third-party account, from the link a tool result
//! gave them. API keys are pasted into a form; OAuth services run the provider's authorization
//! code flow with PKCE and a `state` that is single-use and bound (by cookie) to the browser that
//! started it, so a callback cannot be replayed or completed in someone else's browser.

use std::sync::Arc;

use agora_oauth::extract::{cookie, set_cookie};
use agora_oauth::pages::{escape, page};
use agora_store::secret::{random_token, token_digest};
use agora_store::{ConnectAttempt, CredentialSecret, Service, ServiceKind};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::credentials::Credentials;

pub const CONNECT_PATH: &str = "/connect";
const CALLBACK: &str = "/connect/callback";
const BROWSER_COOKIE: &str = "agora_connect";

pub fn router(credentials: Arc<Credentials>) -> Router {
    Router::new()
        .route(CALLBACK, get(callback))
        .route("/connect/{ticket}", get(start).post(submit_key))
        .with_state(credentials)
}

fn gone() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Link expired",
        "<p>This connect link has expired or was already used. Retry the tool to get a new one.</p>",
    )
}

fn connected(service: &str) -> Response {
    page(
        StatusCode::OK,
        "Connected",
        &format!("<p>Your {} account is connected. Go back to your assistant and retry.</p>", escape(service)),
    )
}

fn failed(reason: &str) -> Response {
    page(StatusCode::BAD_REQUEST, "Not connected", &format!("<p>{}</p>", escape(reason)))
}

fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "connect flow failed");
    page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "<p>Something went wrong on our side. Try again shortly.</p>")
}

/// The live connect attempt a ticket names, and its service; or the page to answer with.
async fn attempt_of(credentials: &Credentials, ticket: &str) -> Result<(ConnectAttempt, Service), Response> {
    let store = credentials.store();
    let attempt = match store.connect_attempt(&token_digest(ticket), agora_oauth::now()).await {
        Ok(Some(attempt)) => attempt,
        Ok(None) => return Err(gone()),
        Err(e) => return Err(unavailable(&e)),
    };
    match store.service(&attempt.service_id).await {
        Ok(Some(service)) => Ok((attempt, service)),
        Ok(None) => Err(gone()),
        Err(e) => Err(unavailable(&e)),
    }
}

async fn start(State(credentials): State<Arc<Credentials>>, Path(ticket): Path<String>) -> Response {
    let (attempt, service) = match attempt_of(&credentials, &ticket).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let store = credentials.store();
    match &service.kind {
        ServiceKind::ApiKey => page(
            StatusCode::OK,
            &format!("Connect {}", service.name),
            &format!(
                "<form method=\"post\"><label>Your {} API key <input name=\"api_key\" type=\"password\" required \
                 autocomplete=\"off\"></label> <button>Connect</button></form>",
                escape(&service.name)
            ),
        ),
        ServiceKind::Basic => page(
            StatusCode::OK,
            &format!("Connect {}", service.name),
            &format!(
                "<form method=\"post\"><p>Your {} account</p><label>User name <input name=\"username\" required \
                 autocomplete=\"off\"></label> <label>Password <input name=\"password\" type=\"password\" required \
                 autocomplete=\"off\"></label> <button>Connect</button></form>",
                escape(&service.name)
            ),
        ),
        ServiceKind::OAuth2 { authorize_url, client_id, scopes, .. } => {
            let (state, verifier, browser) = (random_token(""), random_token(""), random_token(""));
            if let Err(e) = store
                .begin_oauth(&attempt.ticket_digest, &token_digest(&state), &token_digest(&browser), &verifier)
                .await
            {
                return unavailable(&e);
            }
            let Ok(mut target) = url::Url::parse(authorize_url) else { return failed("the service is misconfigured") };
            target
                .query_pairs_mut()
                .append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", &format!("{}{CALLBACK}", credentials.base()))
                .append_pair("state", &state)
                // `token_digest` is base64url(SHA-256): exactly the S256 challenge.
                .append_pair("code_challenge", &token_digest(&verifier))
                .append_pair("code_challenge_method", "S256");
            if !scopes.is_empty() {
                target.query_pairs_mut().append_pair("scope", scopes);
            }
            let secure = credentials.base().starts_with("https://");
            let mut response = Redirect::to(target.as_str()).into_response();
            if let Ok(value) = HeaderValue::from_str(&set_cookie(BROWSER_COOKIE, &browser, 900, secure)) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
    }
}

/// What the connect form sends: an API key, or a user name and password.
#[derive(Deserialize)]
struct KeyForm {
    api_key: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

async fn submit_key(
    State(credentials): State<Arc<Credentials>>,
    Path(ticket): Path<String>,
    Form(form): Form<KeyForm>,
) -> Response {
    let (attempt, service) = match attempt_of(&credentials, &ticket).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let (store, now) = (credentials.store(), agora_oauth::now());
    let key = match (&service.kind, form.api_key.as_deref(), form.username.as_deref(), form.password.as_deref()) {
        (ServiceKind::ApiKey, Some(key), None, None) if !key.trim().is_empty() && key.len() <= 4096 => {
            key.trim().to_owned()
        }
        (ServiceKind::Basic, None, Some(user), Some(password))
            if !user.is_empty() && !user.contains(':') && user.len() + password.len() <= 4096 =>
        {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        }
        (ServiceKind::OAuth2 { .. }, ..) => return gone(),
        _ => return failed("fill in the form"),
    };
    // Spent only now, so a mistyped form can be sent again.
    match store.spend_connect_attempt(&attempt.ticket_digest, now).await {
        Ok(Some(_)) => {}
        Ok(None) => return gone(),
        Err(e) => return unavailable(&e),
    }
    let secret = CredentialSecret { token: key, refresh_token: None };
    match store
        .add_credential(&service.id, Some(&attempt.user_id), &secret, None, attempt.profile_id.as_deref(), now)
        .await
    {
        Ok(_) => connected(&service.name),
        Err(e) => unavailable(&e),
    }
}

#[derive(Deserialize)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(credentials): State<Arc<Credentials>>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let store = credentials.store();
    let now = agora_oauth::now();
    let Some(state) = callback.state.filter(|s| !s.is_empty()) else { return failed("the provider sent no state") };
    // Single use: a replayed or forged state finds nothing.
    let attempt = match store.spend_connect_attempt(&token_digest(&state), now).await {
        Ok(Some(attempt)) if attempt.browser_digest.is_some() => attempt,
        Ok(_) => return failed("this sign-in is unknown, expired or already finished; retry the tool for a new link"),
        Err(e) => return unavailable(&e),
    };
    if cookie(&headers, BROWSER_COOKIE).map(token_digest) != attempt.browser_digest {
        return failed("this sign-in was started in another browser; open the connect link here");
    }
    if let Some(error) = callback.error {
        return failed(&format!("the provider refused: {error}"));
    }
    let Some(code) = callback.code.filter(|c| !c.is_empty()) else { return failed("the provider sent no code") };
    let service = match store.service(&attempt.service_id).await {
        Ok(Some(service)) => service,
        Ok(None) => return gone(),
        Err(e) => return unavailable(&e),
    };
    let verifier = attempt.verifier.clone().unwrap_or_default();
    let redirect_uri = format!("{}{CALLBACK}", credentials.base());
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let tokens = match credentials.provider().token_request(&service, &form).await {
        Ok(tokens) => tokens,
        Err(reason) => return failed(&reason),
    };
    let secret = CredentialSecret { token: tokens.access_token, refresh_token: tokens.refresh_token };
    let expires_at = tokens.expires_in.map(|secs| now + secs);
    match store
        .add_credential(&service.id, Some(&attempt.user_id), &secret, expires_at, attempt.profile_id.as_deref(), now)
        .await
    {
        Ok(_) => connected(&service.name),
        Err(e) => unavailable(&e),
    }
}
