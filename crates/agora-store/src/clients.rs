use agora_core::UnixTime;
use agora_core::client::{AuthMethod, Client, ClientOrigin, GrantType};
use sqlx::Row as _;

use crate::{Result, Row, Store, StoreError, conflict_as, json_list, parse_json_list};

pub struct NewClient {
    pub id: String,
    pub name: String,
    /// Digest of the client secret ([`crate::secret::token_digest`]); `None` for public clients.
    pub secret_digest: Option<String>,
    pub auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub origin: ClientOrigin,
}

macro_rules! client_columns {
    () => {
        "id, name, auth_method, redirect_uris, post_logout_redirect_uris, grant_types, origin, revoked, created_at"
    };
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { table: "clients", detail }
}

fn client_from_row(row: &Row) -> Result<Client> {
    let auth_method: String = row.try_get("auth_method")?;
    let origin: String = row.try_get("origin")?;
    let grant_types = parse_json_list("clients", &row.try_get::<String, _>("grant_types")?)?
        .iter()
        .map(|g| GrantType::parse(g).ok_or_else(|| corrupt(format!("grant type {g}"))))
        .collect::<Result<_>>()?;
    Ok(Client {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        auth_method: AuthMethod::parse(&auth_method).ok_or_else(|| corrupt(format!("auth method {auth_method}")))?,
        redirect_uris: parse_json_list("clients", &row.try_get::<String, _>("redirect_uris")?)?,
        post_logout_redirect_uris: parse_json_list("clients", &row.try_get::<String, _>("post_logout_redirect_uris")?)?,
        grant_types,
        origin: ClientOrigin::parse(&origin).ok_or_else(|| corrupt(format!("origin {origin}")))?,
        revoked: crate::flag(row, "revoked")?,
        created_at: row.try_get("created_at")?,
    })
}

fn grant_names(grants: &[GrantType]) -> String {
    json_list(&grants.iter().map(|g| g.as_str().to_owned()).collect::<Vec<_>>())
}

impl Store {
    pub async fn create_client(&self, new: NewClient, now: UnixTime) -> Result<Client> {
        sqlx::query(
            "INSERT INTO clients (id, name, secret_hash, auth_method, redirect_uris, post_logout_redirect_uris, \
             grant_types, origin, revoked, created_at, refreshed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(&new.id)
        .bind(&new.name)
        .bind(&new.secret_digest)
        .bind(new.auth_method.as_str())
        .bind(json_list(&new.redirect_uris))
        .bind(json_list(&new.post_logout_redirect_uris))
        .bind(grant_names(&new.grant_types))
        .bind(new.origin.as_str())
        .bind(0_i64)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(conflict_as("a client with this id"))?;
        self.client_by_id(&new.id).await?.ok_or_else(|| corrupt("insert vanished".into()))
    }

    /// Stores (or refreshes) a client described by a metadata document; returns it with the time it was fetched.
    pub async fn upsert_metadata_client(&self, new: NewClient, now: UnixTime) -> Result<Client> {
        sqlx::query(
            "INSERT INTO clients (id, name, secret_hash, auth_method, redirect_uris, post_logout_redirect_uris, \
             grant_types, origin, revoked, created_at, refreshed_at) VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (id) DO UPDATE SET name = $2, auth_method = $3, redirect_uris = $4, \
             post_logout_redirect_uris = $5, grant_types = $6, refreshed_at = $9",
        )
        .bind(&new.id)
        .bind(&new.name)
        .bind(new.auth_method.as_str())
        .bind(json_list(&new.redirect_uris))
        .bind(json_list(&new.post_logout_redirect_uris))
        .bind(grant_names(&new.grant_types))
        .bind(new.origin.as_str())
        .bind(0_i64)
        .bind(now)
        .execute(self.pool())
        .await?;
        self.client_by_id(&new.id).await?.ok_or_else(|| corrupt("upsert vanished".into()))
    }

    pub async fn client_by_id(&self, id: &str) -> Result<Option<Client>> {
        let row = sqlx::query(concat!("SELECT ", client_columns!(), " FROM clients WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// When a metadata-document client was last fetched.
    pub async fn client_refreshed_at(&self, id: &str) -> Result<Option<UnixTime>> {
        Ok(sqlx::query_scalar("SELECT refreshed_at FROM clients WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// A client with the digest of its secret (confidential clients), in one read.
    pub async fn client_and_secret_digest(&self, id: &str) -> Result<Option<(Client, Option<String>)>> {
        let row = sqlx::query(concat!("SELECT ", client_columns!(), ", secret_hash FROM clients WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| Ok((client_from_row(&row)?, row.try_get("secret_hash")?))).transpose()
    }

    pub async fn list_clients(&self) -> Result<Vec<Client>> {
        let rows = sqlx::query(concat!("SELECT ", client_columns!(), " FROM clients ORDER BY created_at, id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Revokes a client and every grant it holds; its tokens stop working at once.
    pub async fn revoke_client(&self, id: &str, now: UnixTime) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let done =
            sqlx::query("UPDATE clients SET revoked = $1 WHERE id = $2").bind(1_i64).bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE grants SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::grants::bump_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
