//! Third-party services, the credentials users (or their organization) hold for them, their
//! profile assignments, and connect attempts. Every secret is sealed, bound to its row. Changes to
//! services, credentials and assignments bump the policy epoch: hubs cache resolutions per epoch.

use agora_core::UnixTime;
use agora_core::credential::CredentialFacts;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::{Result, Row, Store, StoreError};

/// How a service's credential is obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// OAuth 2.0 authorization code with PKCE at the provider.
    OAuth2 {
        authorize_url: String,
        token_url: String,
        client_id: String,
        client_secret: Option<String>,
        scopes: String,
        /// RFC 7009 revocation endpoint, if the provider has one.
        revocation_url: Option<String>,
    },
    /// A key the user pastes into a form.
    ApiKey,
    /// A user name and password the user types into a form, handed over as `base64(user:password)`
    /// (HTTP basic authentication: use the header template `Basic {token}`).
    Basic,
}

/// A third-party service of an account, and how its credential reaches upstreams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub account_id: String,
    /// What upstream servers name in their `service`.
    pub name: String,
    pub kind: ServiceKind,
    /// For remote upstreams: this header, with `{token}` in the template replaced.
    pub header_name: String,
    pub header_template: String,
    /// For local upstreams: this environment variable holds the token.
    pub env_name: Option<String>,
}

/// What may be shown of a credential: never its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialMeta {
    pub id: String,
    pub service: String,
    /// `None`: the organization's.
    pub owner: Option<String>,
    pub profiles: Vec<String>,
    pub expires_at: Option<UnixTime>,
    pub updated_at: UnixTime,
}

/// The secret part of a credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSecret {
    /// The access token or API key handed to upstreams.
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// A connect attempt: who connects which service, through which locked profile if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectAttempt {
    pub ticket_digest: String,
    pub user_id: String,
    pub service_id: String,
    pub profile_id: Option<String>,
    pub browser_digest: Option<String>,
    pub verifier: Option<String>,
}

fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt { table: "services", detail: detail.into() }
}

impl Store {
    fn service_from_row(&self, row: &Row) -> Result<Service> {
        let id: String = row.try_get("id")?;
        let kind: String = row.try_get("kind")?;
        let kind = match kind.as_str() {
            "OAUTH2" => {
                let sealed: Option<Vec<u8>> = row.try_get("sealed_client_secret")?;
                let client_secret = sealed
                    .map(|s| self.secrets().open(&format!("service:{id}:client_secret"), &s))
                    .transpose()?
                    .map(|bytes| String::from_utf8(bytes).map_err(|e| corrupt(e.to_string())))
                    .transpose()?;
                let text = |column: &str| -> Result<String> {
                    Ok(row.try_get::<Option<String>, _>(column)?.unwrap_or_default())
                };
                ServiceKind::OAuth2 {
                    authorize_url: text("authorize_url")?,
                    token_url: text("token_url")?,
                    client_id: text("client_id")?,
                    client_secret,
                    scopes: text("scopes")?,
                    revocation_url: row.try_get("revocation_url")?,
                }
            }
            "API_KEY" => ServiceKind::ApiKey,
            "BASIC" => ServiceKind::Basic,
            other => return Err(corrupt(format!("kind {other}"))),
        };
        Ok(Service {
            account_id: row.try_get("account_id")?,
            name: row.try_get("name")?,
            kind,
            header_name: row.try_get("header_name")?,
            header_template: row.try_get("header_template")?,
            env_name: row.try_get("env_name")?,
            id,
        })
    }

    pub async fn create_service(&self, service: &Service, now: UnixTime) -> Result<()> {
        let revocation_url = match &service.kind {
            ServiceKind::OAuth2 { revocation_url, .. } => revocation_url.clone(),
            ServiceKind::ApiKey | ServiceKind::Basic => None,
        };
        let (kind, authorize_url, token_url, client_id, secret, scopes) = match &service.kind {
            ServiceKind::OAuth2 { authorize_url, token_url, client_id, client_secret, scopes, .. } => (
                "OAUTH2",
                Some(authorize_url.clone()),
                Some(token_url.clone()),
                Some(client_id.clone()),
                client_secret
                    .as_ref()
                    .map(|s| self.secrets().seal(&format!("service:{}:client_secret", service.id), s.as_bytes())),
                Some(scopes.clone()),
            ),
            ServiceKind::ApiKey => ("API_KEY", None, None, None, None, None),
            ServiceKind::Basic => ("BASIC", None, None, None, None, None),
        };
        let query = sqlx::query(
            "INSERT INTO services (id, account_id, name, kind, authorize_url, token_url, client_id, sealed_client_secret, \
             scopes, header_name, header_template, env_name, created_at, revocation_url) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&service.id)
        .bind(&service.account_id)
        .bind(&service.name)
        .bind(kind)
        .bind(authorize_url)
        .bind(token_url)
        .bind(client_id)
        .bind(secret)
        .bind(scopes)
        .bind(&service.header_name)
        .bind(&service.header_template)
        .bind(&service.env_name)
        .bind(now)
        .bind(revocation_url);
        self.policy_change(query, "service").await?;
        Ok(())
    }

    const SERVICE_COLUMNS: &str = "id, account_id, name, kind, authorize_url, token_url, client_id, sealed_client_secret, \
                                   scopes, header_name, header_template, env_name, revocation_url";

    pub async fn service_by_name(&self, account_id: &str, name: &str) -> Result<Option<Service>> {
        let sql = format!("SELECT {} FROM services WHERE account_id = $1 AND name = $2", Self::SERVICE_COLUMNS);
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).bind(name).fetch_optional(self.pool()).await?;
        row.map(|r| self.service_from_row(&r)).transpose()
    }

    pub async fn service(&self, id: &str) -> Result<Option<Service>> {
        let sql = format!("SELECT {} FROM services WHERE id = $1", Self::SERVICE_COLUMNS);
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await?;
        row.map(|r| self.service_from_row(&r)).transpose()
    }

    /// What resolution needs of every credential of a service.
    pub async fn credential_facts(&self, service_id: &str) -> Result<Vec<CredentialFacts>> {
        let rows = sqlx::query(
            "SELECT c.id, c.user_id, c.updated_at, cp.profile_id FROM credentials c \
             LEFT JOIN credential_profiles cp ON cp.credential_id = c.id WHERE c.service_id = $1 ORDER BY c.id",
        )
        .bind(service_id)
        .fetch_all(self.pool())
        .await?;
        let mut facts: Vec<CredentialFacts> = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let profile: Option<String> = row.try_get("profile_id")?;
            if facts.last().is_none_or(|f| f.id != id) {
                facts.push(CredentialFacts {
                    id,
                    owner: row.try_get("user_id")?,
                    profiles: Vec::new(),
                    updated_at: row.try_get("updated_at")?,
                });
            }
            if let (Some(profile), Some(last)) = (profile, facts.last_mut()) {
                last.profiles.push(profile);
            }
        }
        Ok(facts)
    }

    /// A credential's secret and when its access token expires.
    pub async fn credential_secret(&self, id: &str) -> Result<Option<(CredentialSecret, Option<UnixTime>)>> {
        let row = sqlx::query("SELECT sealed_secret, expires_at FROM credentials WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get("sealed_secret")?;
        let json = self.secrets().open(&format!("credential:{id}"), &sealed)?;
        let secret = serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some((secret, row.try_get("expires_at")?)))
    }

    /// Stores a newly connected credential, assigned to `profile` when connected through a locked one.
    pub async fn add_credential(
        &self,
        service_id: &str,
        user_id: Option<&str>,
        secret: &CredentialSecret,
        expires_at: Option<UnixTime>,
        profile: Option<&str>,
        now: UnixTime,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let sealed = self.secrets().seal(&format!("credential:{id}"), &serde_json::to_vec(secret).expect("serializes"));
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO credentials (id, service_id, user_id, sealed_secret, expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&id)
        .bind(service_id)
        .bind(user_id)
        .bind(sealed)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(profile) = profile {
            sqlx::query("INSERT INTO credential_profiles (credential_id, profile_id) VALUES ($1, $2)")
                .bind(&id)
                .bind(profile)
                .execute(&mut *tx)
                .await?;
        }
        self.commit_policy_change(tx).await?;
        Ok(id)
    }

    /// Replaces a credential's secret after a refresh.
    pub async fn update_credential(
        &self,
        id: &str,
        secret: &CredentialSecret,
        expires_at: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<()> {
        let sealed = self.secrets().seal(&format!("credential:{id}"), &serde_json::to_vec(secret).expect("serializes"));
        sqlx::query("UPDATE credentials SET sealed_secret = $2, expires_at = $3, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(sealed)
            .bind(expires_at)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn services(&self, account_id: &str) -> Result<Vec<Service>> {
        let sql = format!("SELECT {} FROM services WHERE account_id = $1 ORDER BY name", Self::SERVICE_COLUMNS);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).fetch_all(self.pool()).await?;
        rows.iter().map(|r| self.service_from_row(r)).collect()
    }

    /// Every credential of an account's services, without secrets.
    pub async fn credentials_of_account(&self, account_id: &str) -> Result<Vec<CredentialMeta>> {
        let rows = sqlx::query(
            "SELECT c.id, s.name AS service, c.user_id, c.expires_at, c.updated_at, cp.profile_id FROM credentials c \
             JOIN services s ON s.id = c.service_id LEFT JOIN credential_profiles cp ON cp.credential_id = c.id \
             WHERE s.account_id = $1 ORDER BY c.id",
        )
        .bind(account_id)
        .fetch_all(self.pool())
        .await?;
        let mut metas: Vec<CredentialMeta> = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            if metas.last().is_none_or(|m| m.id != id) {
                metas.push(CredentialMeta {
                    id,
                    service: row.try_get("service")?,
                    owner: row.try_get("user_id")?,
                    profiles: Vec::new(),
                    expires_at: row.try_get("expires_at")?,
                    updated_at: row.try_get("updated_at")?,
                });
            }
            if let (Some(profile), Some(last)) = (row.try_get::<Option<String>, _>("profile_id")?, metas.last_mut()) {
                last.profiles.push(profile);
            }
        }
        Ok(metas)
    }

    /// Assigns (`true`) or unassigns a credential to a profile.
    pub async fn set_assignment(&self, credential_id: &str, profile_id: &str, assigned: bool) -> Result<()> {
        let sql = if assigned {
            "INSERT INTO credential_profiles (credential_id, profile_id) VALUES ($1, $2) ON CONFLICT (credential_id, profile_id) DO NOTHING"
        } else {
            "DELETE FROM credential_profiles WHERE credential_id = $1 AND profile_id = $2"
        };
        self.policy_change(sqlx::query(sql).bind(credential_id).bind(profile_id), "assignment").await?;
        Ok(())
    }

    pub async fn delete_credential(&self, id: &str) -> Result<bool> {
        Ok(self.policy_change(sqlx::query("DELETE FROM credentials WHERE id = $1").bind(id), "credential").await? == 1)
    }

    pub async fn create_connect_attempt(&self, attempt: &ConnectAttempt, expires_at: UnixTime) -> Result<()> {
        sqlx::query(
            "INSERT INTO connect_attempts (ticket_digest, user_id, service_id, profile_id, expires_at, used) \
             VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(&attempt.ticket_digest)
        .bind(&attempt.user_id)
        .bind(&attempt.service_id)
        .bind(&attempt.profile_id)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    fn attempt_from_row(&self, row: &Row) -> Result<ConnectAttempt> {
        let ticket_digest: String = row.try_get("ticket_digest")?;
        let verifier = row
            .try_get::<Option<Vec<u8>>, _>("sealed_verifier")?
            .map(|sealed| self.secrets().open(&format!("connect:{ticket_digest}"), &sealed))
            .transpose()?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        Ok(ConnectAttempt {
            user_id: row.try_get("user_id")?,
            service_id: row.try_get("service_id")?,
            profile_id: row.try_get("profile_id")?,
            browser_digest: row.try_get("browser_digest")?,
            verifier,
            ticket_digest,
        })
    }

    /// An unused, unexpired attempt by its ticket.
    pub async fn connect_attempt(&self, ticket_digest: &str, now: UnixTime) -> Result<Option<ConnectAttempt>> {
        let row = sqlx::query(
            "SELECT ticket_digest, user_id, service_id, profile_id, browser_digest, sealed_verifier FROM connect_attempts \
             WHERE ticket_digest = $1 AND used = 0 AND expires_at > $2",
        )
        .bind(ticket_digest)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| self.attempt_from_row(&r)).transpose()
    }

    /// Records the OAuth round trip of an attempt: its state, the browser that holds it, the PKCE verifier.
    pub async fn begin_oauth(
        &self,
        ticket_digest: &str,
        state_digest: &str,
        browser_digest: &str,
        verifier: &str,
    ) -> Result<()> {
        let sealed = self.secrets().seal(&format!("connect:{ticket_digest}"), verifier.as_bytes());
        sqlx::query(
            "UPDATE connect_attempts SET state_digest = $2, browser_digest = $3, sealed_verifier = $4 WHERE ticket_digest = $1",
        )
        .bind(ticket_digest)
        .bind(state_digest)
        .bind(browser_digest)
        .bind(sealed)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Spends an attempt (by ticket, or by OAuth state): at most once, while unexpired.
    pub async fn spend_connect_attempt(&self, ticket_or_state: &str, now: UnixTime) -> Result<Option<ConnectAttempt>> {
        let row = sqlx::query(
            "UPDATE connect_attempts SET used = 1 WHERE (ticket_digest = $1 OR state_digest = $1) AND used = 0 \
             AND expires_at > $2 \
             RETURNING ticket_digest, user_id, service_id, profile_id, browser_digest, sealed_verifier",
        )
        .bind(ticket_or_state)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| self.attempt_from_row(&r)).transpose()
    }
}
