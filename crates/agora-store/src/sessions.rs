//! Browser-side state of the sign-in pages: sessions, consents, emailed one-time codes, rate limits.

use agora_core::UnixTime;
use sqlx::Row as _;

use crate::{Result, Store};

/// Most wrong guesses an emailed code tolerates before it is burnt.
pub const LOGIN_CODE_MAX_ATTEMPTS: i64 = 5;

impl Store {
    pub async fn create_browser_session(
        &self,
        id_digest: &str,
        user_id: &str,
        auth_time: UnixTime,
        expires_at: UnixTime,
    ) -> Result<()> {
        sqlx::query("INSERT INTO browser_sessions (id_hash, user_id, auth_time, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(id_digest)
            .bind(user_id)
            .bind(auth_time)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The signed-in user id and sign-in time for a live session.
    pub async fn browser_session(&self, id_digest: &str, now: UnixTime) -> Result<Option<(String, UnixTime)>> {
        let row = sqlx::query(
            "SELECT s.user_id, s.auth_time FROM browser_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.expires_at >= $2 AND u.disabled = $3",
        )
        .bind(id_digest)
        .bind(now)
        .bind(0_i64)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| Ok((row.try_get("user_id")?, row.try_get("auth_time")?))).transpose()
    }

    pub async fn delete_browser_session(&self, id_digest: &str) -> Result<()> {
        sqlx::query("DELETE FROM browser_sessions WHERE id_hash = $1").bind(id_digest).execute(self.pool()).await?;
        Ok(())
    }

    pub async fn consented_scope(&self, user_id: &str, client_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn record_consent(&self, user_id: &str, client_id: &str, scope: &str, now: UnixTime) -> Result<()> {
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, scope, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = $3, created_at = $4",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scope)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn insert_login_code(
        &self,
        id: &str,
        email: &str,
        code_digest: &str,
        expires_at: UnixTime,
    ) -> Result<()> {
        sqlx::query("INSERT INTO login_codes (id, email, code_hash, attempts, expires_at) VALUES ($1, $2, $3, 0, $4)")
            .bind(id)
            .bind(email)
            .bind(code_digest)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Checks a guess against the code sent under `id`: the code is spent on success, and burnt
    /// after [`LOGIN_CODE_MAX_ATTEMPTS`] wrong guesses. Returns the email it was sent to on success.
    pub async fn verify_login_code(&self, id: &str, code_digest: &str, now: UnixTime) -> Result<Option<String>> {
        let row = sqlx::query(
            "UPDATE login_codes SET attempts = attempts + 1 WHERE id = $1 AND used_at IS NULL AND expires_at >= $2 \
             AND attempts < $3 RETURNING email, code_hash",
        )
        .bind(id)
        .bind(now)
        .bind(LOGIN_CODE_MAX_ATTEMPTS)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("code_hash")?;
        if !constant_time_eq(stored.as_bytes(), code_digest.as_bytes()) {
            return Ok(None);
        }
        let spent = sqlx::query("UPDATE login_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        if spent.rows_affected() == 1 { Ok(Some(row.try_get("email")?)) } else { Ok(None) }
    }

    /// Counts one event against `bucket` in the fixed window starting at `window_start`; returns the
    /// count including this one. Shared by every replica through the database.
    pub async fn rate_limit_hit(&self, bucket: &str, window_start: UnixTime) -> Result<i64> {
        let hits = sqlx::query_scalar(
            "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 RETURNING hits",
        )
        .bind(bucket)
        .bind(window_start)
        .fetch_one(self.pool())
        .await?;
        Ok(hits)
    }

    pub async fn rate_limit_count(&self, bucket: &str, window_start: UnixTime) -> Result<i64> {
        let hits: Option<i64> =
            sqlx::query_scalar("SELECT hits FROM rate_limits WHERE bucket = $1 AND window_start = $2")
                .bind(bucket)
                .bind(window_start)
                .fetch_optional(self.pool())
                .await?;
        Ok(hits.unwrap_or(0))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
