//! Clients that register themselves: RFC 7591 dynamic registration at `/oauth/reg`, and Client ID
//! Metadata Documents (a `client_id` that is an https URL serving the client's metadata).

use std::sync::Arc;

use agora_core::client::{AuthMethod, Client, ClientOrigin, GrantType, validate_redirect_uri};
use agora_store::NewClient;
use agora_store::secret::{random_token, token_digest};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::extract::{ClientIp, OAuthJson};
use crate::{AuthServer, now};

pub const CLIENT_SECRET_PREFIX: &str = "agora_cs_";
/// How long a fetched metadata document is trusted before it is fetched again.
const METADATA_DOCUMENT_TTL: i64 = 3600;
const METADATA_DOCUMENT_MAX_BYTES: usize = 16 * 1024;
/// How long a metadata document that failed to fetch is left alone.
const FAILED_DOCUMENT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(60);
const REGISTRATIONS_PER_IP: i64 = 30;
const MAX_URIS: usize = 20;

/// Client metadata, as sent to `/oauth/reg` or served as a metadata document.
#[derive(Deserialize)]
pub struct Metadata {
    client_id: Option<String>,
    redirect_uris: Option<Vec<String>>,
    post_logout_redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
}

struct Validated {
    name: String,
    auth_method: AuthMethod,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    grant_types: Vec<GrantType>,
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

fn validate(meta: Metadata, default_auth: AuthMethod) -> OAuthResult<Validated> {
    let auth_method = match meta.token_endpoint_auth_method.as_deref() {
        None => default_auth,
        Some(raw) => AuthMethod::parse(raw)
            .ok_or_else(|| metadata_error(format!("token_endpoint_auth_method `{raw}` is not supported")))?,
    };
    let grant_types = match meta.grant_types {
        None => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        Some(raw) => raw
            .iter()
            .map(|g| match GrantType::parse(g) {
                Some(grant @ (GrantType::AuthorizationCode | GrantType::RefreshToken)) => Ok(grant),
                Some(GrantType::ClientCredentials) if auth_method != AuthMethod::None => {
                    Ok(GrantType::ClientCredentials)
                }
                _ => Err(metadata_error(format!("grant type `{g}` cannot be registered here"))),
            })
            .collect::<OAuthResult<Vec<_>>>()?,
    };
    if let Some(types) = &meta.response_types
        && types.iter().any(|t| t != "code")
    {
        return Err(metadata_error("only the `code` response type is supported"));
    }
    let redirect_uris = meta.redirect_uris.unwrap_or_default();
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(OAuthError::new(ErrorCode::InvalidRedirectUri, "redirect_uris is required"));
    }
    let post_logout_redirect_uris = meta.post_logout_redirect_uris.unwrap_or_default();
    if redirect_uris.len() > MAX_URIS || post_logout_redirect_uris.len() > MAX_URIS {
        return Err(metadata_error("too many URIs"));
    }
    for uri in redirect_uris.iter().chain(&post_logout_redirect_uris) {
        validate_redirect_uri(uri).map_err(|e| OAuthError::new(ErrorCode::InvalidRedirectUri, e.to_string()))?;
    }
    let name: String = meta.client_name.unwrap_or_default().chars().filter(|c| !c.is_control()).take(100).collect();
    let name = if name.trim().is_empty() { "Unnamed application".to_owned() } else { name.trim().to_owned() };
    Ok(Validated { name, auth_method, redirect_uris, post_logout_redirect_uris, grant_types })
}

pub async fn register(
    State(server): State<Arc<AuthServer>>,
    ClientIp(ip): ClientIp,
    body: OAuthResult<OAuthJson<Metadata>>,
) -> Response {
    let result = async {
        if !server.config.open_registration {
            return Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "dynamic client registration is disabled on this server",
            ));
        }
        let OAuthJson(meta) = body?;
        if meta.client_id.is_some() {
            return Err(metadata_error("client_id is assigned by the server"));
        }
        let bucket = format!("register-ip:{ip}");
        let window = now() / 900 * 900;
        if server.store.rate_limit_hit(&bucket, window).await? > REGISTRATIONS_PER_IP {
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many registrations from this address; try later",
            )
            .with_status(StatusCode::TOO_MANY_REQUESTS));
        }
        // RFC 7591 §2: the default method is client_secret_basic.
        let valid = validate(meta, AuthMethod::ClientSecretBasic)?;
        let secret = (valid.auth_method != AuthMethod::None).then(|| random_token(CLIENT_SECRET_PREFIX));
        let now = now();
        let client = server
            .store
            .create_client(
                NewClient {
                    id: uuid::Uuid::new_v4().to_string(),
                    name: valid.name,
                    secret_digest: secret.as_deref().map(token_digest),
                    auth_method: valid.auth_method,
                    redirect_uris: valid.redirect_uris,
                    post_logout_redirect_uris: valid.post_logout_redirect_uris,
                    grant_types: valid.grant_types,
                    origin: ClientOrigin::Registered,
                },
                now,
            )
            .await?;
        tracing::info!(client = %client.id, "client registered");
        let mut body = client_metadata(&client);
        body["client_id_issued_at"] = json!(now);
        if let Some(secret) = secret {
            body["client_secret"] = json!(secret);
            body["client_secret_expires_at"] = json!(0);
        }
        Ok(body)
    }
    .await;
    match result {
        Ok(body) => {
            (StatusCode::CREATED, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn client_metadata(client: &Client) -> serde_json::Value {
    json!({
        "client_id": client.id,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "response_types": ["code"],
        "token_endpoint_auth_method": client.auth_method.as_str(),
    })
}

pub fn is_metadata_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// The client a metadata document describes: the stored copy while fresh, else fetched again.
pub async fn metadata_document_client(server: &AuthServer, client_id: &str) -> OAuthResult<Option<Client>> {
    let now = now();
    let stored = server.store.client_by_id(client_id).await?;
    if let Some(client) = &stored {
        if client.revoked || client.origin != ClientOrigin::MetadataDocument {
            return Ok(None);
        }
        let fresh =
            server.store.client_refreshed_at(client_id).await?.is_some_and(|at| now - at < METADATA_DOCUMENT_TTL);
        if fresh {
            return Ok(stored);
        }
    }
    {
        let failed = server.failed_documents.lock().expect("failed-documents lock");
        if failed.get(client_id).is_some_and(|at| at.elapsed() < FAILED_DOCUMENT_BACKOFF) {
            return Ok(stored);
        }
    }
    match fetch_metadata_document(server, client_id).await {
        Ok(valid) => {
            let client = server
                .store
                .upsert_metadata_client(
                    NewClient {
                        id: client_id.to_owned(),
                        name: valid.name,
                        secret_digest: None,
                        auth_method: AuthMethod::None,
                        redirect_uris: valid.redirect_uris,
                        post_logout_redirect_uris: valid.post_logout_redirect_uris,
                        grant_types: valid.grant_types,
                        origin: ClientOrigin::MetadataDocument,
                    },
                    now,
                )
                .await?;
            Ok(Some(client))
        }
        Err(e) => {
            tracing::warn!(client = %client_id, error = %e.description, "client metadata document unusable");
            let mut failed = server.failed_documents.lock().expect("failed-documents lock");
            if failed.len() >= 10_000 {
                failed.retain(|_, at| at.elapsed() < FAILED_DOCUMENT_BACKOFF);
            }
            failed.insert(client_id.to_owned(), std::time::Instant::now());
            // A stale copy still serves while the document cannot be fetched.
            Ok(stored)
        }
    }
}

async fn fetch_metadata_document(server: &AuthServer, client_id: &str) -> OAuthResult<Validated> {
    let url = Url::parse(client_id).map_err(|_| metadata_error("client_id is not a URL"))?;
    if url.path() == "/" || url.fragment().is_some() || !url.username().is_empty() {
        return Err(metadata_error("a metadata document URL needs a path and no fragment or credentials"));
    }
    let document =
        server.fetcher.get_json(&url, METADATA_DOCUMENT_MAX_BYTES).await.map_err(|e| metadata_error(e.to_string()))?;
    let meta: Metadata = serde_json::from_value(document).map_err(|e| metadata_error(e.to_string()))?;
    if meta.client_id.as_deref() != Some(client_id) {
        return Err(metadata_error("the document's client_id differs from its URL"));
    }
    let valid = validate(meta, AuthMethod::None)?;
    if valid.auth_method != AuthMethod::None {
        return Err(metadata_error("metadata document clients must be public (token_endpoint_auth_method=none)"));
    }
    Ok(valid)
}
