//! RP-initiated logout (`/oauth/session/end`). A redirect goes only to a post-logout URI registered
//! for the client the request names; a request without a valid `id_token_hint` is confirmed by the
//! user first, so a third-party page cannot silently sign people out.

use std::sync::Arc;

use agora_core::client::Client;
use agora_store::secret::token_digest;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use url::Url;

use crate::AuthServer;
use crate::authorize::SESSION_COOKIE;
use crate::endpoints::id_token_hint_validation;
use crate::error::OAuthResult;
use crate::extract::{OAuthForm, cookie, set_cookie};
use crate::pages;
use crate::tokens::IdClaims;

#[derive(Deserialize, Default)]
pub struct LogoutParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
    #[allow(dead_code, reason = "accepted per RP-Initiated Logout; the session cookie identifies the user")]
    logout_hint: Option<String>,
    ui_locales: Option<String>,
    csrf: Option<String>,
}

type Server = State<Arc<AuthServer>>;

/// CSRF binding key of the logout confirmation (it has no authorization request).
const LOGOUT_CSRF_SCOPE: &str = "logout";

pub async fn end_session_get(
    State(server): Server,
    headers: HeaderMap,
    params: Result<Query<LogoutParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match params {
        Ok(Query(params)) => end_session(&server, &headers, params, false).await,
        Err(e) => pages::error(StatusCode::BAD_REQUEST, &format!("Malformed logout request: {}", e.body_text())),
    }
}

pub async fn end_session_post(
    State(server): Server,
    headers: HeaderMap,
    params: OAuthResult<OAuthForm<LogoutParams>>,
) -> Response {
    match params {
        Ok(OAuthForm(params)) => end_session(&server, &headers, params, false).await,
        Err(e) => pages::error(e.status, &e.description),
    }
}

pub async fn confirm(
    State(server): Server,
    headers: HeaderMap,
    params: OAuthResult<OAuthForm<LogoutParams>>,
) -> Response {
    match params {
        Ok(OAuthForm(params)) => {
            let csrf = params.csrf.clone().unwrap_or_default();
            if !server.csrf_valid(&headers, LOGOUT_CSRF_SCOPE, &csrf) {
                return pages::error(StatusCode::FORBIDDEN, "The form expired or was not sent by this browser.");
            }
            end_session(&server, &headers, params, true).await
        }
        Err(e) => pages::error(e.status, &e.description),
    }
}

async fn end_session(server: &AuthServer, headers: &HeaderMap, params: LogoutParams, confirmed: bool) -> Response {
    let hint = match params.id_token_hint.as_deref() {
        Some(token) => match server.keys.verify::<IdClaims>(token, id_token_hint_validation(server)).await {
            Ok((claims, _)) => Some(claims),
            Err(_) => {
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    "The id_token_hint is not a valid ID token from this server.",
                );
            }
        },
        None => None,
    };
    let client_id = match (hint.as_ref().map(|h| h.aud.as_str()), params.client_id.as_deref()) {
        (Some(a), Some(b)) if a != b => {
            return pages::error(StatusCode::BAD_REQUEST, "client_id does not match the id_token_hint.");
        }
        (Some(id), _) | (None, Some(id)) => Some(id.to_owned()),
        (None, None) => None,
    };
    let client: Option<Client> = match client_id.as_deref() {
        Some(id) => match server.client(id).await {
            Ok(Some(client)) => Some(client),
            _ => return pages::error(StatusCode::BAD_REQUEST, "Unknown application."),
        },
        None => None,
    };
    let redirect = match params.post_logout_redirect_uri.as_deref() {
        Some(uri) => match &client {
            Some(client) if client.post_logout_redirect_allowed(uri) => Some(uri.to_owned()),
            Some(_) => {
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    "That post-logout redirect URI is not registered for this application.",
                );
            }
            None => {
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    "A post-logout redirect needs client_id or id_token_hint.",
                );
            }
        },
        None => None,
    };

    let session = server.session_user(headers).await;
    // The hint proves the request comes from the user's own application for the signed-in user.
    let hint_matches = match (&hint, &session) {
        (Some(h), Some((user, _))) => h.sub == user.id,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if session.is_some() && !hint_matches && !confirmed {
        let (binding, set) = server.csrf_binding(headers);
        let csrf = server.csrf_token_for(&binding, LOGOUT_CSRF_SCOPE);
        let mut page = pages::logout_confirm(
            &csrf,
            &[
                ("id_token_hint", params.id_token_hint.as_deref()),
                ("post_logout_redirect_uri", params.post_logout_redirect_uri.as_deref()),
                ("state", params.state.as_deref()),
                ("client_id", params.client_id.as_deref()),
                ("ui_locales", params.ui_locales.as_deref()),
            ],
        );
        if let Some(set) = set.and_then(|s| HeaderValue::from_str(&s).ok()) {
            page.headers_mut().append(header::SET_COOKIE, set);
        }
        return page;
    }
    if let Some(id) = cookie(headers, SESSION_COOKIE)
        && let Err(e) = server.store.delete_browser_session(&token_digest(id)).await
    {
        tracing::error!(error = %e, "cannot end session");
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.");
    }
    let target = redirect.and_then(|uri| Url::parse(&uri).ok()).map(|mut url| {
        if let Some(state) = params.state.as_deref() {
            url.query_pairs_mut().append_pair("state", state);
        }
        url
    });
    // Without an ID token of the client's own, nothing proves the request came from it: the user
    // gets a link back instead of being sent (RP-Initiated Logout 1.0 §3).
    let mut response = match target {
        Some(url) if hint.is_some() => {
            let mut response = StatusCode::FOUND.into_response();
            if let Ok(location) = HeaderValue::from_str(url.as_str()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Some(url) => pages::signed_out(Some(url.as_str())),
        None => pages::signed_out(None),
    };
    let clear = set_cookie(SESSION_COOKIE, "", 0, server.config.public_url.scheme() == "https");
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
