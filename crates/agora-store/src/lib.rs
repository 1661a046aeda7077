//! Persistence for agora: one schema and one set of queries that run on SQLite (the embedded
//! default) and PostgreSQL (for replicas sharing a database), plus the at-rest secret envelope.
//!
//! Queries go through sqlx's `Any` driver, so each is written once; they keep to the SQL both
//! engines accept (`$n` parameters, `RETURNING`, `ON CONFLICT`), and store times as Unix seconds.

mod accounts;
mod audit;
mod clients;
mod credentials;
mod federation;
mod grants;
mod keys;
mod mcp_sessions;
mod personal_tokens;
pub mod secret;
mod sessions;
mod upstreams;
mod users;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Executor, SqlSafeStr};

pub use accounts::{NewAccount, Toolkit};
pub use audit::AuditEntry;
pub use clients::NewClient;
pub use credentials::{ConnectAttempt, CredentialMeta, CredentialSecret, Service, ServiceKind};
pub use federation::ExternalProfile;
pub use grants::{AuthRequest, CodeRedemption, Grant, RefreshRotation, StoredCode};
pub use keys::{NewKey, StoredKey};
pub use personal_tokens::PersonalToken;
pub use secret::{MasterKey, SecretBox, SecretError};
pub use upstreams::{HttpProtocol, UpstreamServer, UpstreamTransport};
pub use users::NewUser;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database and the master-key envelope; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    secrets: std::sync::Arc<SecretBox>,
    local_policy_changes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Name of the row in `settings` proving which master key sealed this database's secrets.
const MASTER_KEY_CHECK: &str = "master_key_check";

impl Store {
    /// Connects, applies pending migrations, and checks that `master_key` is the one this database
    /// was set up with (a wrong key is refused at start rather than discovered at first use).
    pub async fn open(database_url: &str, master_key: &MasterKey) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if database_url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(database_url)));
        };
        let options = AnyConnectOptions::from_str(database_url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during writes; FULL sync means a commit survives a crash.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        migrator(backend).run(&pool).await?;
        let store = Self {
            pool,
            backend,
            secrets: std::sync::Arc::new(SecretBox::new(master_key)),
            local_policy_changes: Default::default(),
        };
        store.check_master_key().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn check_master_key(&self) -> Result<()> {
        const PROBE: &[u8] = b"agora master key check";
        match self.setting(MASTER_KEY_CHECK).await? {
            Some(sealed) => {
                let bytes = base64_decode(&sealed)
                    .ok_or(StoreError::Corrupt { table: "settings", detail: MASTER_KEY_CHECK.into() })?;
                self.secrets.open(MASTER_KEY_CHECK, &bytes)?;
                Ok(())
            }
            None => {
                let sealed = self.secrets.seal(MASTER_KEY_CHECK, PROBE);
                self.insert_setting_if_absent(MASTER_KEY_CHECK, &base64_encode(&sealed)).await?;
                Ok(())
            }
        }
    }

    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        let value = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    /// Returns true when this call inserted the value (false when another process got there first).
    pub async fn insert_setting_if_absent(&self, name: &str, value: &str) -> Result<bool> {
        let done = sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The revocation epoch: it changes whenever any token, grant, client or user is revoked.
    pub async fn revocation_epoch(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT epoch FROM revocation_epoch WHERE id = 1").fetch_one(&self.pool).await?)
    }

    /// Deletes rows whose lifetime has passed. Safe to run from every replica at any time.
    pub async fn purge_expired(&self, now: i64) -> Result<u64> {
        let statements = [
            "DELETE FROM auth_requests WHERE expires_at < $1",
            "DELETE FROM auth_codes WHERE expires_at < $1",
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            "DELETE FROM revoked_tokens WHERE expires_at < $1",
            "DELETE FROM browser_sessions WHERE expires_at < $1",
            "DELETE FROM login_codes WHERE expires_at < $1",
            "DELETE FROM rate_limits WHERE window_start < $1 - 86400",
            "DELETE FROM exchanged_subject_tokens WHERE expires_at < $1",
            "DELETE FROM mcp_sessions WHERE created_at < $1 - 604800",
            "DELETE FROM mcp_session_owners WHERE created_at < $1 - 604800",
            "DELETE FROM connect_attempts WHERE expires_at < $1",
        ];
        let mut purged = 0;
        for sql in statements {
            purged += sqlx::query(sql).bind(now).execute(&self.pool).await?.rows_affected();
        }
        Ok(purged)
    }
}

/// The single migration source, rewritten for the engine's byte type.
fn migrator(backend: Backend) -> Migrator {
    let sources = [
        (1, "init", include_str!("../migrations/0001_init.sql")),
        (2, "federation", include_str!("../migrations/0002_federation.sql")),
        (3, "upstreams", include_str!("../migrations/0003_upstreams.sql")),
        (4, "one signing key per role", include_str!("../migrations/0004_one_signing_key_per_role.sql")),
        (5, "revocation epoch", include_str!("../migrations/0005_revocation_epoch.sql")),
        (6, "mcp sessions", include_str!("../migrations/0006_mcp_sessions.sql")),
        (7, "accounts", include_str!("../migrations/0007_accounts.sql")),
        (8, "credentials", include_str!("../migrations/0008_credentials.sql")),
        (9, "service revocation", include_str!("../migrations/0009_service_revocation.sql")),
    ];
    let migrations = sources
        .into_iter()
        .map(|(version, description, sql)| {
            let sql = match backend {
                Backend::Sqlite => sql.to_owned(),
                Backend::Postgres => sql.replace(" BLOB ", " BYTEA ").replace(" BLOB,", " BYTEA,"),
            };
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                AssertSqlSafe(sql).into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
pub(crate) fn conflict_as(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(e),
    }
}

pub(crate) fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).expect("a list of strings serializes")
}

pub(crate) fn parse_json_list(table: &'static str, raw: &str) -> Result<Vec<String>> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt { table, detail: e.to_string() })
}

pub(crate) type Row = AnyRow;

/// Reads a 0/1 flag column.
pub(crate) fn flag(row: &Row, column: &str) -> Result<bool> {
    use sqlx::Row as _;
    Ok(row.try_get::<i64, _>(column)? != 0)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// A database URL with any password removed, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests;
