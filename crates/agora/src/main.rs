//! The `agora` binary: command line, configuration, and wiring of the servers. No business logic.

mod admin;
mod config;
mod manage;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, GlobalArgs};

#[derive(Parser)]
#[command(name = "agora", version, about = "Identity-aware MCP hub and OpenID Connect provider")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[expect(clippy::large_enum_variant, reason = "a command line is parsed once per process")]
enum Command {
    /// Run the server (creates the data directory, schema, keys and a first admin on first start).
    Serve(serve::ServeArgs),
    /// Manage users and OAuth clients.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] agora_store::StoreError),
    #[error(transparent)]
    Secret(#[from] agora_store::SecretError),
    #[error(transparent)]
    Keys(#[from] agora_oauth::keys::KeyError),
    #[error(transparent)]
    Service(#[from] agora_api::ServiceError),
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.global) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config.log);
    // One TLS crypto provider for every client in the process (reqwest, lettre, sqlx): aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    agora_oauth::jose::install();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(config, args).await,
            Command::Admin(command) => admin::run_admin(config, command).await,
            Command::Keys(command) => admin::run_keys(config, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: redirected logs stay plain text for files and collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

/// Opens the data directory (mode 0700), the master key and the database.
pub async fn open_store(config: &Config) -> Result<agora_store::Store, AppError> {
    create_private_dir(&config.data_dir)?;
    let master_key = match &config.master_key {
        Some(encoded) => agora_store::MasterKey::from_base64(encoded)?,
        None => agora_store::MasterKey::load_or_create(&config.data_dir)?,
    };
    Ok(agora_store::Store::open(&config.database_url, &master_key).await?)
}

fn create_private_dir(path: &std::path::Path) -> Result<(), AppError> {
    let io = |source| AppError::Io { context: format!("cannot create data directory {}", path.display()), source };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(io)
}

pub fn oauth_config(config: &Config, public_url: url::Url) -> agora_oauth::OAuthConfig {
    let mut oauth = agora_oauth::OAuthConfig::new(public_url);
    oauth.access_token_ttl = config.access_token_ttl;
    oauth.refresh_token_ttl = config.refresh_token_ttl;
    oauth.code_ttl = config.code_ttl;
    oauth.session_ttl = config.session_ttl;
    oauth.audiences = config.audiences.clone();
    oauth.signing_alg = config.signing_alg;
    oauth.open_registration = config.open_registration;
    oauth.resources = vec![format!("{}{}", oauth.base(), agora_hub::HUB_PATH)];
    oauth.allow_loopback_fetch = config.allow_loopback_fetch;
    oauth.allow_private_fetch = config.allow_private_fetch;
    oauth.jwks_cache_ttl = std::time::Duration::from_secs(config.jwks_cache_ttl);
    oauth.jwks_refetch_interval = std::time::Duration::from_secs(config.jwks_refetch_interval);
    oauth
}
