//! The MCP hub at `{base}/hub/mcp`: bearer authentication on every request, then one MCP server
//! (rmcp's Streamable HTTP transport) whose tools are the union of the upstream servers'.
//!
//! rmcp types stay inside this crate; the rest of agora sees `router` and `HubConfig`.

mod audit;
mod connect;
mod credentials;
mod demo;
mod handler;
mod legacy_sse;
mod policy;
mod relay;
mod sessions;
mod upstream;

use std::sync::Arc;

use agora_oauth::AuthServer;
use agora_store::Store;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use policy::{Principal, Scope};
pub use upstream::UpstreamPool;

pub const HUB_PATH: &str = "/hub/mcp";
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/hub/mcp";

pub struct HubConfig {
    pub max_body_bytes: usize,
    pub demo_upstream: bool,
    /// Local (stdio) servers unused this long are stopped; they start again on next use.
    pub upstream_idle_timeout: std::time::Duration,
    /// Most local (stdio) upstream servers running at once.
    pub max_local_servers: usize,
    /// Reuse connections to remote upstreams. Off, each request opens its own: slower, but immune
    /// to servers that answer in parts without TCP_NODELAY, which stalls kept-alive clients 40 ms.
    pub upstream_keep_alive: bool,
    /// MCP sessions with no request and no open stream this long leave memory; their next request
    /// restores them from the database.
    pub session_idle: std::time::Duration,
    /// Tests only: requests without a token from loopback clients are served as `anonymous`.
    /// The caller (`agora serve`) allows it only when listening on loopback.
    pub anonymous_loopback: bool,
}

pub struct Hub {
    auth: Arc<AuthServer>,
    store: Store,
    pool: Arc<UpstreamPool>,
    owners: sessions::SessionOwners,
    sessions: Arc<sessions::DormantSessions>,
    policy: Arc<policy::Policy>,
    audit: audit::AuditLog,
    credentials: Arc<credentials::Credentials>,
    shutdown: CancellationToken,
    anonymous_loopback: bool,
}

impl Hub {
    pub fn new(auth: Arc<AuthServer>, store: Store, config: &HubConfig) -> Arc<Self> {
        let base = auth.config.base().to_owned();
        let hub = Arc::new(Self {
            auth,
            pool: Arc::new(UpstreamPool::new(store.clone(), config)),
            owners: sessions::SessionOwners::new(store.clone()),
            sessions: Arc::new(sessions::DormantSessions::new(config.session_idle)),
            policy: Arc::new(policy::Policy::new(store.clone())),
            audit: audit::AuditLog::start(store.clone()),
            credentials: Arc::new(credentials::Credentials::new(store.clone(), &base)),
            store,
            shutdown: CancellationToken::new(),
            anonymous_loopback: config.anonymous_loopback,
        });
        let (pool, stop, idle) = (hub.pool.clone(), hub.shutdown.child_token(), config.upstream_idle_timeout);
        tokio::spawn(async move { pool.reap_idle(idle, stop).await });
        tokio::spawn(hub.policy.clone().watch(hub.shutdown.child_token()));
        tokio::spawn(hub.sessions.clone().sweep(hub.shutdown.child_token()));
        hub
    }

    fn resource(&self) -> String {
        format!("{}{HUB_PATH}", self.auth.config.base())
    }

    fn metadata_url(&self) -> String {
        format!("{}{METADATA_PATH}", self.auth.config.base())
    }

    /// Ends open streams and stops every upstream connection (stdio children are killed).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.pool.shutdown().await;
        self.audit.flush().await;
    }
}

/// `/hub/mcp` and its RFC 9728 protected-resource metadata.
pub fn router(hub: Arc<Hub>, config: &HubConfig) -> Router {
    let base = url::Url::parse(hub.auth.config.base()).expect("the public URL parses");
    let authority = match base.port() {
        Some(port) => format!("{}:{port}", base.host_str().unwrap_or_default()),
        None => base.host_str().unwrap_or_default().to_owned(),
    };
    let origin = base.origin().ascii_serialization();
    let handler =
        handler::HubHandler { pool: hub.pool.clone(), audit: hub.audit.clone(), credentials: hub.credentials.clone() };
    let mut mcp_config = StreamableHttpServerConfig::default()
        // Sessions for revisions before 2026-07-28 (later ones are always sessionless), restorable on
        // any replica from the database.
        .with_legacy_session_mode(true)
        .with_json_response(true)
        .with_max_request_body_bytes(config.max_body_bytes)
        // DNS-rebinding protection: only our own host, only our own origin.
        .with_allowed_hosts([base.host_str().unwrap_or_default().to_owned(), authority])
        .with_allowed_origins([origin])
        .with_cancellation_token(hub.shutdown.child_token());
    mcp_config.session_store = Some(Arc::new(sessions::DatabaseSessionStore { store: hub.store.clone() }));
    let mcp = StreamableHttpService::new(move || Ok(handler.clone()), hub.sessions.clone(), mcp_config);
    Router::new()
        .route(METADATA_PATH, get(protected_resource_metadata))
        .nest_service(HUB_PATH, mcp)
        .layer(axum::middleware::from_fn(jsonrpc_errors))
        .layer(axum::middleware::from_fn_with_state(hub.clone(), authenticate))
        .with_state(hub.clone())
        // Browser pages, outside the MCP endpoint's bearer and JSON-RPC layers.
        .merge(connect::router(hub.credentials.clone()))
}

/// rmcp answers transport-level failures (unparseable body, forbidden origin, unsupported version,
/// oversized body) in plain text; clients expect a JSON-RPC error body, so those are rewritten here.
async fn jsonrpc_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !status.is_client_error() || is_json || status == StatusCode::UNAUTHORIZED {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    // A body that is not JSON-RPC at all is a parse error / invalid request, and the client's fault.
    let (status, code) = if text.starts_with("fail to deserialize") {
        (StatusCode::BAD_REQUEST, if text.contains("unrecognized JSON-RPC") { -32600 } else { -32700 })
    } else {
        (parts.status, -32600)
    };
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": text.trim()}});
    let mut rewritten = (status, Json(body)).into_response();
    for name in [header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

async fn protected_resource_metadata(State(hub): State<Arc<Hub>>) -> Json<serde_json::Value> {
    Json(json!({
        "resource": hub.resource(),
        "authorization_servers": [hub.auth.config.issuer()],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["openid", "email", "profile", "offline_access", "mcp:tools"],
        "resource_name": "agora MCP hub",
    }))
}

/// Bearer authentication for `/hub/mcp`: a verified access token (or personal token) or 401
/// pointing at the metadata; then admission and profile selection, or 403.
async fn authenticate(State(hub): State<Arc<Hub>>, mut request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with(HUB_PATH) {
        return next.run(request).await;
    }
    let token = agora_oauth::extract::bearer(request.headers()).map(str::to_owned);
    let principal = match token {
        Some(token) if token.starts_with(agora_core::profile::PERSONAL_TOKEN_PREFIX) => {
            match hub.policy.personal_token(&agora_store::secret::token_digest(&token)).await {
                Ok(Some(personal)) => {
                    Principal { subject: personal.user_id, client_id: None, locked_profile: Some(personal.profile_id) }
                }
                Ok(None) => return unauthorized(&hub, Some("unknown, revoked or expired personal token")),
                Err(e) => return unavailable(&e),
            }
        }
        Some(token) => match hub.auth.verify_access_token_cached(&token).await {
            Ok(claims) => Principal {
                subject: claims.sub.clone(),
                client_id: Some(claims.client_id.clone()),
                locked_profile: claims.civic_profile.clone(),
            },
            Err(reason) => return unauthorized(&hub, Some(&reason)),
        },
        None if hub.anonymous_loopback && from_loopback(&request) => {
            Principal { subject: ANONYMOUS.to_owned(), client_id: None, locked_profile: None }
        }
        None => return unauthorized(&hub, None),
    };
    let scope = match hub.policy.scope(&principal, &asked(&request)).await {
        Ok(scope) => scope,
        Err(policy::PolicyError::Forbidden(reason)) => return forbidden(&reason),
        Err(policy::PolicyError::Store(e)) => return unavailable(&e),
    };
    let session = request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(session) = &session {
        // A session is its creator's: another subject's token (or an unknown id) finds nothing.
        match hub.owners.owner(session).await {
            Ok(Some(owner)) if *owner == *principal.subject => {}
            Ok(_) => return session_not_found(),
            Err(e) => return unavailable(&e),
        }
    }
    let subject = principal.subject.clone();
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(scope);
    let response = next.run(request).await;
    if session.is_none()
        && let Some(created) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok())
        && let Err(e) = hub.owners.bind(created, &subject).await
    {
        // An unbound session would be usable by anyone holding its id: refuse it instead.
        return unavailable(&e);
    }
    response
}

/// What a request says about its profile beyond its token: headers, then query parameters.
fn asked(request: &Request) -> policy::Asked {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let query: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
    policy::Asked {
        header: header("x-civic-profile-id").or_else(|| header("x-civic-profile")),
        query_profile: query.get("profile").cloned(),
        query_account: query.get("accountId").cloned(),
        query_lock: query.get("lock").map(|v| v == "true"),
    }
}

fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "hub request cannot be authorized");
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

fn forbidden(reason: &str) -> Response {
    let body =
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": format!("forbidden: {reason}")}});
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
const ANONYMOUS: &str = "anonymous";

fn from_loopback(request: &Request) -> bool {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|info| info.0.ip().is_loopback())
}

fn session_not_found() -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "Session not found"}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

fn unauthorized(hub: &Hub, error: Option<&str>) -> Response {
    let mut challenge = format!("Bearer resource_metadata=\"{}\"", hub.metadata_url());
    if let Some(error) = error {
        challenge.push_str(&format!(", error=\"invalid_token\", error_description=\"{}\"", error.replace('"', "'")));
    }
    let body = json!({
        "error": if error.is_some() { "invalid_token" } else { "invalid_request" },
        "error_description": error.unwrap_or("a bearer token is required"),
    });
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
