use agora_core::UnixTime;
use sqlx::Row as _;

use crate::{Result, Row, Store, StoreError, conflict_as};

/// A signing key as stored: the private half sealed under the master key.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    /// `next` (published, not yet signing), `active` (signing), or `retired` (published until its tokens expire).
    pub state: String,
    pub private_key_pem: Vec<u8>,
    pub public_jwk: String,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
}

/// A freshly generated key to install.
pub struct NewKey {
    pub kid: String,
    pub alg: String,
    pub private_key_pem: Vec<u8>,
    pub public_jwk: String,
}

fn key_context(kid: &str) -> String {
    format!("signing_key:{kid}")
}

impl Store {
    fn key_from_row(&self, row: &Row) -> Result<StoredKey> {
        let kid: String = row.try_get("kid")?;
        let sealed: Vec<u8> = row.try_get("private_key")?;
        Ok(StoredKey {
            private_key_pem: self.secrets().open(&key_context(&kid), &sealed)?,
            alg: row.try_get("alg")?,
            state: row.try_get("state")?,
            public_jwk: row.try_get("public_jwk")?,
            created_at: row.try_get("created_at")?,
            retired_at: row.try_get("retired_at")?,
            kid,
        })
    }

    /// Every key that is published: `next`, `active` and `retired` ones not yet purged.
    pub async fn published_keys(&self) -> Result<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, state, private_key, public_jwk, created_at, retired_at FROM signing_keys \
             ORDER BY created_at DESC, kid",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| self.key_from_row(row)).collect()
    }

    /// Kid of the key currently signing, if any.
    pub async fn active_kid(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT kid FROM signing_keys WHERE state = 'active'")
            .fetch_optional(self.pool())
            .await?)
    }

    /// Installs the very first keys (an active one and its published successor). Does nothing when
    /// another process already did, so replicas may start concurrently.
    pub async fn install_initial_keys(&self, active: &NewKey, next: &NewKey, now: UnixTime) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys").fetch_one(&mut *tx).await?;
        if existing > 0 {
            return Ok(false);
        }
        for (key, state) in [(active, "active"), (next, "next")] {
            match self.insert_key(&mut tx, key, state, now).await {
                Ok(()) => {}
                // Another replica installed its keys first.
                Err(StoreError::Conflict(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        tx.commit().await.map_err(conflict_as("a signing key"))?;
        Ok(true)
    }

    /// Rotation: the active key retires (still published), the published `next` key starts signing,
    /// and `new_next` is published to sign at the following rotation.
    pub async fn rotate_keys(&self, new_next: &NewKey, now: UnixTime) -> Result<String> {
        let mut tx = self.pool().begin().await?;
        let next_kid: Option<String> =
            sqlx::query_scalar("SELECT kid FROM signing_keys WHERE state = 'next'").fetch_optional(&mut *tx).await?;
        let next_kid = next_kid.ok_or(StoreError::Corrupt { table: "signing_keys", detail: "no next key".into() })?;
        sqlx::query("UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE state = 'active'")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE signing_keys SET state = 'active', activated_at = $1 WHERE kid = $2")
            .bind(now)
            .bind(&next_kid)
            .execute(&mut *tx)
            .await?;
        self.insert_key(&mut tx, new_next, "next", now).await?;
        tx.commit().await?;
        Ok(next_kid)
    }

    /// Drops retired keys once no token they signed can still be valid.
    pub async fn purge_retired_keys(&self, retired_before: UnixTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM signing_keys WHERE state = 'retired' AND retired_at < $1")
            .bind(retired_before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_key(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        key: &NewKey,
        state: &str,
        now: UnixTime,
    ) -> Result<()> {
        let sealed = self.secrets().seal(&key_context(&key.kid), &key.private_key_pem);
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, state, private_key, public_jwk, created_at, activated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(state)
        .bind(sealed)
        .bind(&key.public_jwk)
        .bind(now)
        .bind((state == "active").then_some(now))
        .execute(&mut **tx)
        .await
        .map_err(conflict_as("a signing key in this role"))?;
        Ok(())
    }
}
