//! `POST /oauth/token`: client authentication, then one of the supported grants.

use std::sync::Arc;

use agora_core::client::{Client, GrantType};
use agora_core::scope::Scopes;
use agora_store::secret::token_digest;
use agora_store::{CodeRedemption, RefreshRotation};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::client_auth::presented;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::extract::OAuthForm;
use crate::tokens::{Issue, TokenResponse, is_pkce_value, pkce_s256_matches};
use crate::{AuthServer, now};

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    #[serde(flatten)]
    exchange: crate::exchange::ExchangeParams,
}

pub async fn token(
    State(server): State<Arc<AuthServer>>,
    headers: HeaderMap,
    form: OAuthResult<OAuthForm<TokenForm>>,
) -> Response {
    let result = async {
        let OAuthForm(form) = form?;
        let grant_type = form
            .grant_type
            .as_deref()
            .filter(|g| !g.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
        let presented = presented(&headers, form.client_id.as_deref(), form.client_secret.as_deref())?;
        let client = server.authenticate_client(&presented).await?;
        let grant = GrantType::parse(grant_type).ok_or_else(|| {
            OAuthError::new(ErrorCode::UnsupportedGrantType, format!("grant_type `{grant_type}` is not supported"))
        })?;
        if !client.allows_grant(grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("this client may not use {}", grant.as_str()),
            ));
        }
        match grant {
            GrantType::AuthorizationCode => authorization_code(&server, &client, &form).await,
            GrantType::RefreshToken => refresh(&server, &client, &form).await,
            GrantType::ClientCredentials => client_credentials(&server, &client, &form).await,
            GrantType::TokenExchange => {
                crate::exchange::exchange(
                    &server,
                    &client,
                    &form.exchange,
                    form.scope.as_deref(),
                    form.resource.as_deref(),
                )
                .await
            }
        }
    }
    .await;
    match result {
        Ok(body) => {
            let mut response = Json(body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => error.into_response(),
    }
}

fn required<'a>(value: &'a Option<String>, name: &str) -> OAuthResult<&'a str> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

async fn authorization_code(server: &AuthServer, client: &Client, form: &TokenForm) -> OAuthResult<TokenResponse> {
    let code = required(&form.code, "code")?;
    let redirect_uri = required(&form.redirect_uri, "redirect_uri")?;
    let verifier = required(&form.code_verifier, "code_verifier")?;
    if !is_pkce_value(verifier) {
        return Err(OAuthError::invalid_request("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]"));
    }
    let now = now();
    let digest = token_digest(code);
    // Everything is checked before the code is spent, so a request that cannot redeem it (wrong
    // client, no verifier) cannot burn it either.
    let Some((stored, grant, used)) = server.store.peek_code(&digest).await? else {
        return Err(OAuthError::invalid_grant("unknown code"));
    };
    if grant.client_id != client.id {
        return Err(OAuthError::invalid_grant("the code was issued to another client"));
    }
    if used {
        server.store.revoke_grant(&grant.id, now).await?;
        tracing::warn!(client = %client.id, "authorization code replayed; its grant is revoked");
        return Err(OAuthError::invalid_grant("the code was already used; tokens issued from it are revoked"));
    }
    if stored.expires_at < now {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    if grant.revoked {
        return Err(OAuthError::invalid_grant("the grant has been revoked"));
    }
    if stored.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant("redirect_uri differs from the authorization request"));
    }
    if !pkce_s256_matches(verifier, &stored.code_challenge) {
        return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
    }
    match server.store.redeem_code(&digest, now).await? {
        CodeRedemption::Redeemed => {}
        // Lost a race with a concurrent redemption of the same code: that is a replay too.
        CodeRedemption::Replayed | CodeRedemption::Unknown => {
            return Err(OAuthError::invalid_grant("the code was already used; tokens issued from it are revoked"));
        }
    }
    let user = server
        .store
        .active_user(&grant.user_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the user is disabled"))?;
    let scope = Scopes::from_stored(&grant.scope);
    let refresh_token = match scope.contains("offline_access") && client.allows_grant(GrantType::RefreshToken) {
        true => Some(server.new_refresh_token(&grant.id, &scope).await?),
        false => None,
    };
    let issue = Issue {
        client,
        user: Some(&user),
        grant_id: Some(&grant.id),
        scope: &scope,
        nonce: stored.nonce.as_deref(),
        auth_time: grant.auth_time,
        resource: grant.resource.as_deref(),
        lifetime: None,
        civic_profile: None,
        civic_account: None,
        with_id_token: true,
    };
    server.issue_tokens(issue, refresh_token).await
}

async fn refresh(server: &AuthServer, client: &Client, form: &TokenForm) -> OAuthResult<TokenResponse> {
    let presented = required(&form.refresh_token, "refresh_token")?;
    let digest = token_digest(presented);
    let requested = form
        .scope
        .as_deref()
        .map(Scopes::parse)
        .transpose()
        .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
    // Check ownership and scope before spending, so neither another client nor a bad request can
    // burn (and so revoke) someone's token.
    let peeked = server.store.refresh_token(&digest).await?;
    if let Some((grant, stored_scope, _)) = &peeked {
        if grant.client_id != client.id {
            return Err(OAuthError::invalid_grant("the refresh token was issued to another client"));
        }
        if let Some(requested) = &requested {
            Scopes::from_stored(stored_scope)
                .narrow(requested)
                .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
        }
    }
    let now = now();
    // The successor is stored as the presented token is spent, in one transaction.
    let successor = agora_store::secret::random_token(crate::tokens::REFRESH_TOKEN_PREFIX);
    let spent = server
        .store
        .spend_refresh_token(&digest, &token_digest(&successor), now + server.config.refresh_token_ttl, now)
        .await?;
    let (grant_id, stored_scope, expires_at) = match spent {
        RefreshRotation::Rotated { grant_id, scope, expires_at } => (grant_id, scope, expires_at),
        RefreshRotation::Reused => {
            tracing::warn!(client = %client.id, "refresh token reused; its family is revoked");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; its whole family is now revoked",
            ));
        }
        RefreshRotation::Unknown => return Err(OAuthError::invalid_grant("unknown refresh token")),
    };
    // A token's grant never changes: the one read before spending is the spent token's own.
    let grant = match peeked {
        Some((grant, _, _)) if grant.id == grant_id => grant,
        _ => server.store.grant(&grant_id).await?.ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?,
    };
    if grant.client_id != client.id {
        return Err(OAuthError::invalid_grant("the refresh token was issued to another client"));
    }
    if expires_at < now {
        return Err(OAuthError::invalid_grant("the refresh token has expired"));
    }
    if grant.revoked {
        return Err(OAuthError::invalid_grant("the grant has been revoked"));
    }
    let granted = Scopes::from_stored(&stored_scope);
    let scope = match &requested {
        Some(requested) => {
            granted.narrow(requested).map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?
        }
        None => granted.clone(),
    };
    let user = server
        .store
        .active_user(&grant.user_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the user is disabled"))?;
    // The successor kept the full granted scope (RFC 6749 §6); only this access token is narrowed.
    let issue = Issue {
        client,
        user: Some(&user),
        grant_id: Some(&grant.id),
        scope: &scope,
        nonce: None,
        auth_time: grant.auth_time,
        resource: grant.resource.as_deref(),
        lifetime: None,
        civic_profile: None,
        civic_account: None,
        with_id_token: true,
    };
    server.issue_tokens(issue, Some(successor)).await
}

/// Scopes a client may ask for on its own behalf: none that describe a user.
const CLIENT_SCOPES: &[&str] = &["mcp:tools"];

async fn client_credentials(server: &AuthServer, client: &Client, form: &TokenForm) -> OAuthResult<TokenResponse> {
    if client.is_public() {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "public clients cannot use client_credentials"));
    }
    let scope = Scopes::parse(form.scope.as_deref().unwrap_or(""))
        .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
    if let Some(user_scope) = scope.iter().find(|s| !CLIENT_SCOPES.contains(s)) {
        return Err(OAuthError::new(ErrorCode::InvalidScope, format!("scope `{user_scope}` needs a user")));
    }
    if let Some(resource) = form.resource.as_deref() {
        server.config.check_resource(resource)?;
    }
    let issue = Issue {
        client,
        user: None,
        grant_id: None,
        scope: &scope,
        nonce: None,
        auth_time: now(),
        resource: form.resource.as_deref(),
        lifetime: None,
        civic_profile: None,
        civic_account: None,
        with_id_token: false,
    };
    server.issue_tokens(issue, None).await
}
