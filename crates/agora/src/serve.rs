//! `agora serve`: first-start setup, the HTTP listener, background upkeep, graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use agora_oauth::{AuthServer, Mailer};
use agora_store::NewUser;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::Html;
use axum::routing::get;
use axum::serve::ListenerExt;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::{AppError, oauth_config, open_store};

/// Request bodies larger than this are refused with 413 before any handler reads them.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// MCP messages (tool arguments) may be larger than OAuth forms.
const MAX_MCP_BODY_BYTES: usize = 4 * 1024 * 1024;
const INITIAL_ADMIN_EMAIL: &str = "admin@localhost";
const INITIAL_ADMIN_SETTING: &str = "initial_admin_user_id";

/// Flags of `agora serve` alone.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TESTING ONLY: admit hub requests that carry no token, from loopback clients, when agora
    /// itself listens on a loopback address (the MCP conformance suite sends no token). Requests
    /// with a token are checked as always.
    #[arg(long, env = "AGORA_TEST_ANONYMOUS_HUB")]
    pub test_anonymous_hub: bool,
}

pub async fn run(config: Config, args: ServeArgs) -> Result<(), AppError> {
    let store = open_store(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| AppError::Io { context: format!("cannot listen on {}", config.listen), source })?;
    let bound =
        listener.local_addr().map_err(|source| AppError::Io { context: "cannot read bound address".into(), source })?;
    if args.test_anonymous_hub && !bound.ip().is_loopback() {
        return Err(AppError::Usage("--test-anonymous-hub needs a loopback listen address".into()));
    }
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None => url::Url::parse(&format!("http://{bound}")).expect("a socket address makes a URL"),
    };
    let oauth = oauth_config(&config, public_url.clone());
    let mailer = match &config.smtp_url {
        Some(url) => {
            let default_from = format!("agora <noreply@{}>", public_url.host_str().unwrap_or("localhost"));
            Mailer::smtp(url, config.mail_from.as_deref().unwrap_or(&default_from))
                .map_err(|e| AppError::Usage(e.to_string()))?
        }
        None => Mailer::DevMailbox(config.data_dir.join("mailbox.jsonl")),
    };
    let server = AuthServer::new(store.clone(), oauth, mailer).await.map_err(|e| AppError::Usage(e.description))?;
    if server.keys.ensure_keys(config.signing_alg, agora_oauth::now()).await? {
        tracing::info!(alg = config.signing_alg.as_str(), "created signing keys");
    }
    bootstrap_admin(&store).await?;

    let hub_config = agora_hub::HubConfig {
        max_body_bytes: MAX_MCP_BODY_BYTES,
        demo_upstream: config.demo_upstream,
        upstream_idle_timeout: std::time::Duration::from_secs(config.upstream_idle_timeout),
        max_local_servers: config.max_local_servers,
        upstream_keep_alive: config.upstream_keep_alive,
        session_idle: std::time::Duration::from_secs(config.mcp_session_idle_timeout),
        anonymous_loopback: args.test_anonymous_hub,
    };
    if args.test_anonymous_hub {
        tracing::warn!("the hub admits loopback requests without a token (--test-anonymous-hub); for tests only");
    }
    let hub = agora_hub::Hub::new(server.clone(), store.clone(), &hub_config);
    let app = Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .merge(agora_oauth::router(server.clone()))
        .merge(agora_hub::router(hub.clone(), &hub_config))
        .merge(agora_api::router(server.clone()))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        // Spans name the path only: query strings can carry tokens (id_token_hint) and personal data.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
        }));

    let upkeep = tokio::spawn(upkeep(server.clone(), config.audit_retention_days));
    let revocations = tokio::spawn(server.clone().watch_revocations());
    println!("agora listening on http://{bound}");
    println!("  issuer: {}", server.config.issuer());
    println!("  hub:    {}{}", server.config.base(), agora_hub::HUB_PATH);
    // No Nagle delay: a response written in parts (event streams) must not wait for the peer's
    // delayed ACK, which on a reused connection costs 40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| AppError::Io { context: "server failed".into(), source })?;
    upkeep.abort();
    revocations.abort();
    hub.shutdown().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn home() -> Html<&'static str> {
    Html(
        "<!doctype html><title>agora</title><h1>agora</h1><p>Identity-aware MCP hub.</p>\
         <ul><li><a href=\"/oauth/.well-known/openid-configuration\">OpenID configuration</a></li>\
         <li><a href=\"/oauth/jwks\">JWKS</a></li></ul>",
    )
}

/// On an empty database, creates `admin@localhost` with a random password shown once on stdout.
async fn bootstrap_admin(store: &agora_store::Store) -> Result<(), AppError> {
    if store.setting(INITIAL_ADMIN_SETTING).await?.is_some() || !store.list_users().await?.is_empty() {
        return Ok(());
    }
    let password = agora_store::secret::random_token("");
    let password = &password[..20];
    let hash = agora_oauth::password::hash(password).map_err(|e| AppError::Usage(e.to_string()))?;
    let user = match store
        .create_user(
            NewUser {
                email: Some(INITIAL_ADMIN_EMAIL.into()),
                email_verified: true,
                name: Some("Administrator".into()),
                password_hash: Some(hash),
            },
            agora_oauth::now(),
        )
        .await
    {
        Ok(user) => user,
        // Another replica bootstrapped at the same moment.
        Err(agora_store::StoreError::Conflict(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    store.insert_setting_if_absent(INITIAL_ADMIN_SETTING, &user.id).await?;
    // The administrator owns the default account (that of clients linked to no other).
    store.add_member("default", &user.id, agora_core::account::Role::Owner, agora_oauth::now()).await?;
    println!("first start: created the administrator account");
    println!("  email:    {INITIAL_ADMIN_EMAIL}");
    println!("  password: {password}   (shown once; change it with `agora admin user set-password`)");
    Ok(())
}

/// Purges expired rows every few minutes; any replica may do it at any time.
async fn upkeep(server: std::sync::Arc<AuthServer>, audit_retention_days: i64) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        let now = agora_oauth::now();
        if let Err(e) = server.store.purge_expired(now).await {
            tracing::warn!(error = %e, "purge of expired rows failed");
        }
        if let Err(e) = server.store.purge_retired_keys(now - server.config.longest_token_ttl()).await {
            tracing::warn!(error = %e, "purge of retired keys failed");
        }
        if let Err(e) = server.store.purge_audit(now - audit_retention_days * 86_400).await {
            tracing::warn!(error = %e, "purge of old audit entries failed");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
