//! Discovery, JWKS, userinfo, revocation (RFC 7009) and introspection (RFC 7662).

use std::sync::Arc;

use agora_core::scope::Scopes;
use agora_store::secret::token_digest;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::Validation;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client_auth::presented;
use crate::error::{OAuthError, OAuthResult};
use crate::extract::{OAuthForm, bearer};
use crate::keys::ALL_ALGS;
use crate::tokens::{AccessClaims, REFRESH_TOKEN_PREFIX};
use crate::{AuthServer, now};

type Server = State<Arc<AuthServer>>;

pub async fn discovery(State(server): Server) -> Json<Value> {
    let c = &server.config;
    let algs: Vec<&str> = ALL_ALGS.iter().map(|a| a.as_str()).collect();
    Json(json!({
        "issuer": c.issuer(),
        "authorization_endpoint": c.endpoint("auth"),
        "token_endpoint": c.endpoint("token"),
        "userinfo_endpoint": c.endpoint("userinfo"),
        "jwks_uri": c.endpoint("jwks"),
        "end_session_endpoint": c.endpoint("session/end"),
        "registration_endpoint": c.endpoint("reg"),
        "revocation_endpoint": c.endpoint("token/revocation"),
        "introspection_endpoint": c.endpoint("token/introspection"),
        "scopes_supported": agora_core::scope::SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "email",
            "email_verified", "name", "given_name", "family_name", "picture", "username", "updated_at"],
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    }))
}

pub async fn jwks(State(server): Server) -> Response {
    match server.keys.jwks().await {
        Ok(set) => {
            let mut response = Json(set).into_response();
            // Short enough that a rotation's new key is seen quickly; verifiers refetch on unknown kid anyway.
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            response
        }
        Err(e) => OAuthError::internal(e).into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct UserinfoForm {
    access_token: Option<String>,
}

pub async fn userinfo(
    State(server): Server,
    headers: HeaderMap,
    form: OAuthResult<OAuthForm<UserinfoForm>>,
) -> Response {
    let result: OAuthResult<Value> = async {
        let from_form = form.ok().and_then(|OAuthForm(f)| f.access_token);
        let token = match (bearer(&headers), from_form.as_deref()) {
            (Some(_), Some(_)) => return Err(OAuthError::invalid_request("send the token once")),
            (Some(t), None) | (None, Some(t)) => t.to_owned(),
            (None, None) => {
                let mut error = OAuthError::invalid_token("a bearer token is required");
                error.challenge = Some("Bearer realm=\"agora\"".into());
                return Err(error);
            }
        };
        let claims = server.verify_access_token(&token).await.map_err(OAuthError::invalid_token)?;
        let scope = Scopes::from_stored(&claims.scope);
        if !scope.contains("openid") {
            let mut error =
                OAuthError::new(crate::error::ErrorCode::InsufficientScope, "the token lacks the openid scope");
            error.challenge = Some("Bearer error=\"insufficient_scope\", scope=\"openid\"".into());
            return Err(error);
        }
        let user = server
            .store
            .active_user(&claims.sub)
            .await?
            .ok_or_else(|| OAuthError::invalid_token("the token's user no longer exists"))?;
        let mut body = serde_json::to_value(user.claims_for(&scope)).map_err(OAuthError::internal)?;
        body["sub"] = Value::String(user.id);
        Ok(body)
    }
    .await;
    match result {
        Ok(body) => {
            let mut response = Json(body).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct TokenParamForm {
    token: Option<String>,
    #[allow(dead_code, reason = "accepted per RFC 7009; agora tells token kinds apart by their form")]
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// What a presented token turned out to be.
enum Known {
    Access(AccessClaims),
    Refresh { grant: agora_store::Grant, scope: String, expires_at: i64 },
}

async fn identify(server: &AuthServer, token: &str) -> OAuthResult<Option<Known>> {
    if token.starts_with(REFRESH_TOKEN_PREFIX) {
        return Ok(server
            .store
            .refresh_token(&token_digest(token))
            .await?
            .filter(|(grant, _, expires_at)| !grant.revoked && *expires_at >= now())
            .map(|(grant, scope, expires_at)| Known::Refresh { grant, scope, expires_at }));
    }
    Ok(server.verify_access_token(token).await.ok().map(Known::Access))
}

pub async fn revoke(
    State(server): Server,
    headers: HeaderMap,
    form: OAuthResult<OAuthForm<TokenParamForm>>,
) -> Response {
    let result: OAuthResult<()> = async {
        let OAuthForm(form) = form?;
        let client = server
            .authenticate_client(&presented(&headers, form.client_id.as_deref(), form.client_secret.as_deref())?)
            .await?;
        let token = form
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        // RFC 7009 §2.2: unknown tokens, and tokens of other clients, get the same 200 and no effect.
        match identify(&server, token).await? {
            Some(Known::Refresh { grant, .. }) if grant.client_id == client.id => {
                server.store.revoke_grant(&grant.id, now()).await?;
            }
            Some(Known::Access(claims)) if claims.client_id == client.id => {
                server.store.revoke_access_token(&claims.jti, claims.exp).await?;
            }
            _ => {}
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn introspect(
    State(server): Server,
    headers: HeaderMap,
    form: OAuthResult<OAuthForm<TokenParamForm>>,
) -> Response {
    let result: OAuthResult<Value> = async {
        let OAuthForm(form) = form?;
        let client = server
            .authenticate_client(&presented(&headers, form.client_id.as_deref(), form.client_secret.as_deref())?)
            .await?;
        if client.is_public() {
            return Err(OAuthError::invalid_client("introspection needs a confidential client", false));
        }
        let token = form
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        // Operator-created (first-party) clients may introspect any token — they are the resource
        // servers; a self-registered client only its own.
        let visible = |owner: &str| client.is_first_party() || owner == client.id;
        Ok(match identify(&server, token).await? {
            Some(Known::Access(c)) if visible(&c.client_id) => json!({
                "active": true, "token_type": "Bearer", "scope": c.scope, "client_id": c.client_id, "sub": c.sub,
                "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "jti": c.jti,
            }),
            Some(Known::Refresh { grant, scope, expires_at }) if visible(&grant.client_id) => json!({
                "active": true, "token_type": "refresh_token", "scope": scope, "client_id": grant.client_id,
                "sub": grant.user_id, "iss": server.config.issuer(), "exp": expires_at,
            }),
            _ => json!({"active": false}),
        })
    }
    .await;
    match result {
        Ok(body) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Validation for an ID token agora signed, used as a logout hint: expiry does not matter there.
pub(crate) fn id_token_hint_validation(server: &AuthServer) -> Validation {
    let mut validation = Validation::default();
    validation.set_issuer(&[server.config.issuer()]);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["iss", "sub", "aud"]);
    validation
}
