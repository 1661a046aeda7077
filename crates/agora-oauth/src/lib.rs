//! agora's OpenID Connect / OAuth 2.1 authorization server, mounted under `{base}/oauth`.
//!
//! Layout: `authorize` (browser flow: sign-in, consent, codes), `token` (the token endpoint and its
//! grants), `endpoints` (discovery, JWKS, userinfo, revocation, introspection), `logout`,
//! `registration` (RFC 7591 and Client ID Metadata Documents). Every handler reports failures as
//! [`error::OAuthError`], turned into wire bodies in one place.

mod authorize;
mod client_auth;
mod endpoints;
pub mod error;
mod exchange;
pub mod extract;
mod federation;
mod fetch;
pub mod jose;
pub mod keys;
mod logout;
pub mod mail;
pub mod pages;
pub mod password;
pub mod provider;
mod registration;
mod token;
mod tokens;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_core::client::Client;
use agora_store::Store;
use axum::Router;
use axum::routing::{get, post};
use url::Url;

pub use federation::check_static_key;
pub use keys::{KeyRing, SigningAlg};
pub use mail::Mailer;
pub use tokens::AccessClaims;

use crate::error::{OAuthError, OAuthResult};

const ID_TOKEN_TTL: i64 = 3600;

/// Longest time a token signed by some key can stay valid — access and ID tokens, and exchanged
/// tokens up to a provider's maximum — and so how long a retired key must stay published.
pub fn retired_key_retention(access_token_ttl: i64) -> i64 {
    access_token_ttl.max(ID_TOKEN_TTL).max(agora_core::federation::MAX_TOKEN_LIFETIME)
}

/// Settings of the authorization server.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// `{base}`: agora's public URL, without a trailing slash.
    pub public_url: Url,
    pub access_token_ttl: i64,
    pub id_token_ttl: i64,
    pub refresh_token_ttl: i64,
    pub code_ttl: i64,
    pub session_ttl: i64,
    /// `aud` of every access token (the wire contract's default is `["civic"]`).
    pub audiences: Vec<String>,
    pub signing_alg: SigningAlg,
    /// Lets agora fetch client metadata documents and provider keys from loopback hosts over plain
    /// HTTP (tests, local development).
    pub allow_loopback_fetch: bool,
    /// Lets agora fetch provider keys from private addresses (an identity provider inside the network).
    pub allow_private_fetch: bool,
    /// Whether anyone may register a client at `/oauth/reg`.
    pub open_registration: bool,
    /// Protected resources (RFC 8707 `resource`) tokens may be issued for, besides `audiences`.
    pub resources: Vec<String>,
    /// How long a provider's fetched JWKS is trusted.
    pub jwks_cache_ttl: Duration,
    /// Least time between two fetches of one provider's JWKS (an unknown `kid` cannot force more).
    pub jwks_refetch_interval: Duration,
}

impl OAuthConfig {
    pub fn new(public_url: Url) -> Self {
        Self {
            public_url,
            access_token_ttl: 3600,
            id_token_ttl: ID_TOKEN_TTL,
            refresh_token_ttl: 30 * 86400,
            code_ttl: 120,
            session_ttl: 7 * 86400,
            audiences: vec!["civic".to_owned()],
            signing_alg: SigningAlg::Rs256,
            allow_loopback_fetch: false,
            allow_private_fetch: false,
            open_registration: true,
            resources: Vec::new(),
            jwks_cache_ttl: Duration::from_secs(3600),
            jwks_refetch_interval: Duration::from_secs(30),
        }
    }

    /// `{base}/oauth/`, with the trailing slash the wire contract requires.
    pub fn issuer(&self) -> String {
        format!("{}/oauth/", self.base())
    }

    pub fn base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}/oauth/{path}", self.base())
    }

    /// An RFC 8707 `resource` must name a resource this server issues tokens for; anything else
    /// would let a client mint tokens for resource servers that merely trust this issuer.
    pub(crate) fn check_resource(&self, resource: &str) -> Result<(), OAuthError> {
        if self.resources.iter().chain(&self.audiences).any(|known| known == resource) {
            Ok(())
        } else {
            Err(OAuthError::new(error::ErrorCode::InvalidTarget, format!("resource `{resource}` is not served here")))
        }
    }

    fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// How long a retired signing key stays published.
    pub fn longest_token_ttl(&self) -> i64 {
        retired_key_retention(self.access_token_ttl)
    }
}

/// The authorization server's shared state.
pub struct AuthServer {
    pub store: Store,
    pub keys: KeyRing,
    pub config: OAuthConfig,
    mailer: Mailer,
    csrf_key: aws_lc_rs::hmac::Key,
    /// Keys the digests of emailed sign-in codes: six digits are too few to store as a plain hash.
    login_code_key: aws_lc_rs::hmac::Key,
    fetcher: fetch::Fetcher,
    provider_keys: federation::ProviderKeys,
    /// Metadata-document URLs whose last fetch failed, and when: not fetched again for a while, so
    /// anonymous requests cannot turn agora into a fetch amplifier.
    failed_documents: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    liveness: tokens::LivenessCache,
}

const CSRF_KEY_SETTING: &str = "csrf_key";
const LOGIN_CODE_KEY_SETTING: &str = "login_code_key";

impl AuthServer {
    pub async fn new(store: Store, config: OAuthConfig, mailer: Mailer) -> OAuthResult<Arc<Self>> {
        let csrf_key = load_or_create_hmac_key(&store, CSRF_KEY_SETTING).await?;
        let login_code_key = load_or_create_hmac_key(&store, LOGIN_CODE_KEY_SETTING).await?;
        let reach = fetch::Reach { loopback: config.allow_loopback_fetch, private: config.allow_private_fetch };
        let fetcher = fetch::Fetcher::new(reach).map_err(OAuthError::internal)?;
        let provider_keys = federation::ProviderKeys::new(config.jwks_cache_ttl, config.jwks_refetch_interval);
        Ok(Arc::new(Self {
            keys: KeyRing::new(store.clone()),
            store,
            config,
            mailer,
            csrf_key,
            login_code_key,
            fetcher,
            provider_keys,
            failed_documents: Default::default(),
            liveness: Default::default(),
        }))
    }

    /// Finds a client by id; an `https://` id is a Client ID Metadata Document URL, fetched when needed.
    async fn client(&self, client_id: &str) -> OAuthResult<Option<Client>> {
        Ok(self.client_and_secret_digest(client_id).await?.map(|(client, _)| client))
    }

    /// A usable client and, if it is confidential, the digest of its secret: one read.
    async fn client_and_secret_digest(&self, client_id: &str) -> OAuthResult<Option<(Client, Option<String>)>> {
        if registration::is_metadata_document_url(client_id) {
            return Ok(registration::metadata_document_client(self, client_id).await?.map(|client| (client, None)));
        }
        Ok(self.store.client_and_secret_digest(client_id).await?.filter(|(client, _)| !client.revoked))
    }
}

/// An HMAC key shared by every replica through the database (sealed under the master key).
async fn load_or_create_hmac_key(store: &Store, name: &str) -> OAuthResult<aws_lc_rs::hmac::Key> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let fresh = store.secrets().seal(name, &agora_store::secret::random_bytes::<32>());
    store.insert_setting_if_absent(name, &engine.encode(fresh)).await?;
    let sealed = store.setting(name).await?.ok_or_else(|| OAuthError::internal("HMAC key vanished"))?;
    let sealed = engine.decode(sealed).map_err(OAuthError::internal)?;
    let raw = store.secrets().open(name, &sealed).map_err(OAuthError::internal)?;
    Ok(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &raw))
}

/// Routes of the authorization server: `/oauth/...` plus the RFC 8414 / OIDC well-known aliases.
pub fn router(server: Arc<AuthServer>) -> Router {
    // Endpoints that browser-based clients (SPAs, MCP inspectors) call with fetch(): CORS, no cookies.
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(3600));
    let api = Router::new()
        .route("/oauth/.well-known/openid-configuration", get(endpoints::discovery))
        // RFC 8414 path insertion of the issuer's path, `/oauth/`, with and without its trailing slash.
        .route("/.well-known/oauth-authorization-server/oauth", get(endpoints::discovery))
        .route("/.well-known/oauth-authorization-server/oauth/", get(endpoints::discovery))
        .route("/.well-known/openid-configuration/oauth", get(endpoints::discovery))
        .route("/.well-known/openid-configuration/oauth/", get(endpoints::discovery))
        .route("/oauth/jwks", get(endpoints::jwks))
        .route("/oauth/token", post(token::token))
        .route("/oauth/userinfo", get(endpoints::userinfo).post(endpoints::userinfo))
        .route("/oauth/token/revocation", post(endpoints::revoke))
        .route("/oauth/token/introspection", post(endpoints::introspect))
        .route("/oauth/reg", post(registration::register))
        .layer(cors);
    // Pages a person's browser navigates to; same-origin forms only.
    let pages = Router::new()
        .route("/oauth/auth", get(authorize::start_get).post(authorize::start_post))
        .route("/oauth/login", post(authorize::password_login))
        .route("/oauth/login/code", post(authorize::send_login_code))
        .route("/oauth/login/code/verify", post(authorize::verify_login_code))
        .route("/oauth/consent", post(authorize::consent))
        .route("/oauth/session/end", get(logout::end_session_get).post(logout::end_session_post))
        .route("/oauth/session/end/confirm", post(logout::confirm));
    api.merge(pages).with_state(server)
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
