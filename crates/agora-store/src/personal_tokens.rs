//! Personal access tokens: static bearer tokens for agent platforms, each locked to one profile.
//! Only a digest is stored; revoking one bumps the policy epoch so replicas stop accepting it.

use agora_core::UnixTime;
use sqlx::Row as _;

use crate::{Result, Row, Store};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalToken {
    pub id: String,
    pub user_id: String,
    pub profile_id: String,
    pub name: String,
    pub expires_at: UnixTime,
    pub revoked: bool,
    pub created_at: UnixTime,
}

fn token_from_row(row: &Row) -> Result<PersonalToken> {
    Ok(PersonalToken {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        profile_id: row.try_get("profile_id")?,
        name: row.try_get("name")?,
        expires_at: row.try_get("expires_at")?,
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        created_at: row.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, user_id, profile_id, name, expires_at, revoked_at, created_at";

impl Store {
    pub async fn create_personal_token(&self, token: &PersonalToken, digest: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO personal_tokens (id, digest, user_id, profile_id, name, expires_at, revoked_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(&token.id)
        .bind(digest)
        .bind(&token.user_id)
        .bind(&token.profile_id)
        .bind(&token.name)
        .bind(token.expires_at)
        .bind(token.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn personal_token_by_digest(&self, digest: &str) -> Result<Option<PersonalToken>> {
        let sql = format!("SELECT {COLUMNS} FROM personal_tokens WHERE digest = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(digest)
            .fetch_optional(self.pool())
            .await?
            .map(|r| token_from_row(&r))
            .transpose()
    }

    pub async fn personal_tokens(&self, user_id: &str) -> Result<Vec<PersonalToken>> {
        let sql = format!("SELECT {COLUMNS} FROM personal_tokens WHERE user_id = $1 ORDER BY created_at");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    /// Revokes one of `user_id`'s tokens; false when it is not theirs or already revoked.
    pub async fn revoke_personal_token(&self, user_id: &str, token_id: &str, now: UnixTime) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE personal_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(token_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.commit_policy_change(tx).await?;
        Ok(done.rows_affected() == 1)
    }
}
