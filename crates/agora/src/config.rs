//! Configuration: defaults, then the TOML file, then environment variables, then flags (clap reads
//! a flag or its environment variable, so "flag over environment" comes from clap itself).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("invalid {key}: {detail}")]
    Invalid { key: &'static str, detail: String },
}

/// Settings every subcommand shares (where the data lives, how to reach it).
#[derive(Args, Debug, Default)]
pub struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "AGORA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the SQLite database, the master key file and the dev mailbox [default: ./agora-data].
    #[arg(long, global = true, env = "AGORA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://… [default: SQLite in the data directory].
    #[arg(long, global = true, env = "AGORA_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, global = true, env = "AGORA_LISTEN")]
    pub listen: Option<String>,
    /// agora's public URL, `{base}` [default: http://{listen}]. Never taken from request headers.
    #[arg(long, global = true, env = "AGORA_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// The file's keys; every one optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    public_url: Option<String>,
    database_url: Option<String>,
    master_key: Option<String>,
    signing_alg: Option<String>,
    access_token_ttl: Option<i64>,
    refresh_token_ttl: Option<i64>,
    code_ttl: Option<i64>,
    session_ttl: Option<i64>,
    audiences: Option<Vec<String>>,
    open_registration: Option<bool>,
    allow_loopback_fetch: Option<bool>,
    allow_private_fetch: Option<bool>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
    jwks_cache_ttl: Option<u64>,
    jwks_refetch_interval: Option<u64>,
    demo_upstream: Option<bool>,
    upstream_idle_timeout: Option<u64>,
    max_local_servers: Option<usize>,
    upstream_keep_alive: Option<bool>,
    mcp_session_idle_timeout: Option<u64>,
    audit_retention_days: Option<i64>,
    log: Option<String>,
}

/// The resolved configuration. Not `Debug`: it holds the master key and URLs with credentials.
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: String,
    /// `None` means "http://{the address actually bound}".
    pub public_url: Option<Url>,
    pub database_url: String,
    pub master_key: Option<String>,
    pub signing_alg: agora_oauth::SigningAlg,
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    /// Lifetime of authorization codes (1–600 s; short, as codes are single-use bearer values).
    pub code_ttl: i64,
    pub session_ttl: i64,
    pub audiences: Vec<String>,
    pub open_registration: bool,
    pub allow_loopback_fetch: bool,
    pub allow_private_fetch: bool,
    /// Outgoing mail server (`smtps://user:pass@host`, `smtp://host:587?tls=required`); unset = dev mailbox.
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    /// Seconds a federated provider's JWKS is cached.
    pub jwks_cache_ttl: u64,
    /// Least seconds between two fetches of one provider's JWKS.
    pub jwks_refetch_interval: u64,
    /// Serve the built-in demo upstream (echo, time, calculator) through the hub.
    pub demo_upstream: bool,
    /// Seconds before an unused local (stdio) upstream server is stopped.
    pub upstream_idle_timeout: u64,
    /// Most local (stdio) upstream servers running at once; the least recently used idle one
    /// makes room for a new one.
    pub max_local_servers: usize,
    /// Reuse connections to remote upstreams (off only for servers that stall kept-alive clients).
    pub upstream_keep_alive: bool,
    /// Seconds before an MCP session with no request and no open stream leaves memory (its next
    /// request restores it from the database).
    pub mcp_session_idle_timeout: u64,
    /// Days audit entries are kept.
    pub audit_retention_days: i64,
    pub log: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    env(name).map(|v| v.parse::<T>().map_err(|e| ConfigError::Invalid { key: name, detail: e.to_string() })).transpose()
}

impl Config {
    pub fn load(args: &GlobalArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("./agora-data"));
        let listen = args.listen.clone().or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        listen
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::Invalid { key: "listen", detail: format!("`{listen}`: {e}") })?;
        let public_url = args
            .public_url
            .clone()
            .or(file.public_url)
            .map(|raw| {
                let url = Url::parse(&raw)
                    .map_err(|e| ConfigError::Invalid { key: "public_url", detail: format!("`{raw}`: {e}") })?;
                if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
                    return Err(ConfigError::Invalid {
                        key: "public_url",
                        detail: "must be an http(s) URL without query or fragment".into(),
                    });
                }
                Ok(url)
            })
            .transpose()?;
        let database_url = args
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("agora.db").display()));
        let signing_alg_raw = env("AGORA_SIGNING_ALG").or(file.signing_alg).unwrap_or_else(|| "RS256".to_owned());
        let signing_alg = agora_oauth::SigningAlg::parse(&signing_alg_raw).ok_or_else(|| ConfigError::Invalid {
            key: "signing_alg",
            detail: format!("`{signing_alg_raw}`; use RS256, ES256 or EdDSA"),
        })?;
        let ttl = |key: &'static str, value: Option<i64>, default: i64| -> Result<i64, ConfigError> {
            match value.unwrap_or(default) {
                v if (60..=365 * 86400).contains(&v) => Ok(v),
                v => Err(ConfigError::Invalid { key, detail: format!("{v} is outside 60..=31536000 seconds") }),
            }
        };
        Ok(Self {
            access_token_ttl: ttl(
                "access_token_ttl",
                env_parse("AGORA_ACCESS_TOKEN_TTL")?.or(file.access_token_ttl),
                3600,
            )?,
            refresh_token_ttl: ttl(
                "refresh_token_ttl",
                env_parse("AGORA_REFRESH_TOKEN_TTL")?.or(file.refresh_token_ttl),
                30 * 86400,
            )?,
            code_ttl: match env_parse("AGORA_CODE_TTL")?.or(file.code_ttl).unwrap_or(120) {
                v if (1..=600).contains(&v) => v,
                v => {
                    return Err(ConfigError::Invalid {
                        key: "code_ttl",
                        detail: format!("{v} is outside 1..=600 seconds"),
                    });
                }
            },
            session_ttl: ttl("session_ttl", env_parse("AGORA_SESSION_TTL")?.or(file.session_ttl), 7 * 86400)?,
            audiences: file.audiences.unwrap_or_else(|| vec!["civic".to_owned()]),
            open_registration: env_parse("AGORA_OPEN_REGISTRATION")?.or(file.open_registration).unwrap_or(true),
            allow_loopback_fetch: env_parse("AGORA_ALLOW_LOOPBACK_FETCH")?
                .or(file.allow_loopback_fetch)
                .unwrap_or(false),
            allow_private_fetch: env_parse("AGORA_ALLOW_PRIVATE_FETCH")?.or(file.allow_private_fetch).unwrap_or(false),
            smtp_url: env("AGORA_SMTP_URL").or(file.smtp_url),
            mail_from: env("AGORA_MAIL_FROM").or(file.mail_from),
            jwks_cache_ttl: env_parse("AGORA_JWKS_CACHE_TTL")?.or(file.jwks_cache_ttl).unwrap_or(3600),
            jwks_refetch_interval: env_parse("AGORA_JWKS_REFETCH_INTERVAL")?
                .or(file.jwks_refetch_interval)
                .unwrap_or(30),
            demo_upstream: env_parse("AGORA_DEMO_UPSTREAM")?.or(file.demo_upstream).unwrap_or(true),
            upstream_idle_timeout: env_parse("AGORA_UPSTREAM_IDLE_TIMEOUT")?
                .or(file.upstream_idle_timeout)
                .unwrap_or(300)
                .max(1),
            max_local_servers: match env_parse("AGORA_MAX_LOCAL_SERVERS")?.or(file.max_local_servers).unwrap_or(32) {
                0 => {
                    return Err(ConfigError::Invalid { key: "max_local_servers", detail: "must be at least 1".into() });
                }
                v => v,
            },
            upstream_keep_alive: env_parse("AGORA_UPSTREAM_KEEP_ALIVE")?.or(file.upstream_keep_alive).unwrap_or(true),
            mcp_session_idle_timeout: env_parse("AGORA_MCP_SESSION_IDLE_TIMEOUT")?
                .or(file.mcp_session_idle_timeout)
                .unwrap_or(60)
                .max(1),
            audit_retention_days: match env_parse("AGORA_AUDIT_RETENTION_DAYS")?
                .or(file.audit_retention_days)
                .unwrap_or(30)
            {
                v if (1..=3650).contains(&v) => v,
                v => {
                    return Err(ConfigError::Invalid {
                        key: "audit_retention_days",
                        detail: format!("{v} is outside 1..=3650 days"),
                    });
                }
            },
            log: env("AGORA_LOG").or(file.log).unwrap_or_else(|| "info,rmcp=warn".to_owned()),
            master_key: env("AGORA_MASTER_KEY").or(file.master_key),
            data_dir,
            listen,
            public_url,
            database_url,
            signing_alg,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: display.clone(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: display, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("agora-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agora.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/from-file\"\n").unwrap();
        let args =
            GlobalArgs { config: Some(path.clone()), listen: Some("127.0.0.1:9100".into()), ..Default::default() };
        let config = Config::load(&args).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9100", "flag (or env, which clap folds in) beats file");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/from-file"));
        assert!(config.database_url.starts_with("sqlite:///tmp/from-file/agora.db"));

        std::fs::write(&path, "listen = \"nonsense\"\n").unwrap();
        assert!(Config::load(&GlobalArgs { config: Some(path.clone()), ..Default::default() }).is_err());
        std::fs::write(&path, "unknown_key = 1\n").unwrap();
        assert!(Config::load(&GlobalArgs { config: Some(path), ..Default::default() }).is_err());
    }
}
