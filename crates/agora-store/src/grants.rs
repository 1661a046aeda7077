//! Authorization state: pending authorize requests, grants (one per sign-in of a user to a client,
//! the "family" every code and token descends from), codes, refresh tokens, revoked access tokens.

use agora_core::UnixTime;
use sqlx::Row as _;

use crate::{Result, Row, Store};

/// An `/oauth/auth` request waiting for the user to sign in (and possibly consent).
#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub resource: Option<String>,
    pub prompt: Option<String>,
    pub expires_at: UnixTime,
}

#[derive(Clone, Debug)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub auth_time: UnixTime,
    pub revoked: bool,
}

#[derive(Clone, Debug)]
pub struct StoredCode {
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub expires_at: UnixTime,
}

pub enum CodeRedemption {
    Redeemed,
    /// The code was used before; its grant (and every token from it) is now revoked.
    Replayed,
    Unknown,
}

pub enum RefreshRotation {
    /// The presented token is now spent; the caller issues its successor.
    Rotated {
        grant_id: String,
        scope: String,
        expires_at: UnixTime,
    },
    /// A spent token came back: someone holds a copy, so the whole family was revoked.
    Reused,
    Unknown,
}

fn grant_from_row(row: &Row) -> Result<Grant> {
    Ok(Grant {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        auth_time: row.try_get("auth_time")?,
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

impl Store {
    pub async fn insert_auth_request(&self, request: &AuthRequest) -> Result<()> {
        sqlx::query(
            "INSERT INTO auth_requests (id, client_id, redirect_uri, scope, state, nonce, code_challenge, resource, \
             prompt, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&request.id)
        .bind(&request.client_id)
        .bind(&request.redirect_uri)
        .bind(&request.scope)
        .bind(&request.state)
        .bind(&request.nonce)
        .bind(&request.code_challenge)
        .bind(&request.resource)
        .bind(&request.prompt)
        .bind(request.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn auth_request(&self, id: &str, now: UnixTime) -> Result<Option<AuthRequest>> {
        let row = sqlx::query(
            "SELECT id, client_id, redirect_uri, scope, state, nonce, code_challenge, resource, prompt, expires_at \
             FROM auth_requests WHERE id = $1 AND expires_at >= $2",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(AuthRequest {
                id: row.try_get("id")?,
                client_id: row.try_get("client_id")?,
                redirect_uri: row.try_get("redirect_uri")?,
                scope: row.try_get("scope")?,
                state: row.try_get("state")?,
                nonce: row.try_get("nonce")?,
                code_challenge: row.try_get("code_challenge")?,
                resource: row.try_get("resource")?,
                prompt: row.try_get("prompt")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Consumes a pending request; true when this call removed it (so it completes at most once).
    pub async fn take_auth_request(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM auth_requests WHERE id = $1").bind(id).execute(self.pool()).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a new grant and the authorization code that starts it, atomically.
    pub async fn create_grant_with_code(
        &self,
        grant: &Grant,
        code_digest: &str,
        code: &StoredCode,
        now: UnixTime,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO grants (id, client_id, user_id, scope, resource, auth_time, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&grant.id)
        .bind(&grant.client_id)
        .bind(&grant.user_id)
        .bind(&grant.scope)
        .bind(&grant.resource)
        .bind(grant.auth_time)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, grant_id, redirect_uri, nonce, code_challenge, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(code_digest)
        .bind(&grant.id)
        .bind(&code.redirect_uri)
        .bind(&code.nonce)
        .bind(&code.code_challenge)
        .bind(code.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn grant(&self, id: &str) -> Result<Option<Grant>> {
        let row = sqlx::query(
            "SELECT id, client_id, user_id, scope, resource, auth_time, revoked_at FROM grants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    pub async fn revoke_grant(&self, id: &str, now: UnixTime) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A code's record, its grant, and whether it was already used; nothing is spent.
    pub async fn peek_code(&self, code_digest: &str) -> Result<Option<(StoredCode, Grant, bool)>> {
        let row = sqlx::query(
            "SELECT grant_id, redirect_uri, nonce, code_challenge, expires_at, used_at FROM auth_codes WHERE code_hash = $1",
        )
        .bind(code_digest)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let code = StoredCode {
            redirect_uri: row.try_get("redirect_uri")?,
            nonce: row.try_get("nonce")?,
            code_challenge: row.try_get("code_challenge")?,
            expires_at: row.try_get("expires_at")?,
        };
        let used = row.try_get::<Option<i64>, _>("used_at")?.is_some();
        let grant_id: String = row.try_get("grant_id")?;
        Ok(self.grant(&grant_id).await?.map(|grant| (code, grant, used)))
    }

    /// Marks a code used, exactly once. A second redemption revokes the grant (RFC 6749 §4.1.2).
    pub async fn redeem_code(&self, code_digest: &str, now: UnixTime) -> Result<CodeRedemption> {
        let spent: Option<String> = sqlx::query_scalar(
            "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL RETURNING grant_id",
        )
        .bind(now)
        .bind(code_digest)
        .fetch_optional(self.pool())
        .await?;
        if spent.is_none() {
            let grant_id: Option<String> = sqlx::query_scalar("SELECT grant_id FROM auth_codes WHERE code_hash = $1")
                .bind(code_digest)
                .fetch_optional(self.pool())
                .await?;
            return Ok(match grant_id {
                Some(grant_id) => {
                    self.revoke_grant(&grant_id, now).await?;
                    CodeRedemption::Replayed
                }
                None => CodeRedemption::Unknown,
            });
        }
        Ok(CodeRedemption::Redeemed)
    }

    pub async fn insert_refresh_token(
        &self,
        token_digest: &str,
        grant_id: &str,
        scope: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_digest)
        .bind(grant_id)
        .bind(scope)
        .bind(now)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Spends a refresh token, exactly once, and stores its successor (same grant and scope) in the
    /// same transaction, so a crash never leaves a spent token without one. Presenting a spent one
    /// revokes its family.
    pub async fn spend_refresh_token(
        &self,
        token_digest: &str,
        successor_digest: &str,
        successor_expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<RefreshRotation> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
             RETURNING grant_id, scope, expires_at",
        )
        .bind(now)
        .bind(token_digest)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = &row {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(successor_digest)
            .bind(row.try_get::<String, _>("grant_id")?)
            .bind(row.try_get::<String, _>("scope")?)
            .bind(now)
            .bind(successor_expires_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let Some(row) = row else {
            let grant_id: Option<String> =
                sqlx::query_scalar("SELECT grant_id FROM refresh_tokens WHERE token_hash = $1")
                    .bind(token_digest)
                    .fetch_optional(self.pool())
                    .await?;
            return Ok(match grant_id {
                Some(grant_id) => {
                    self.revoke_grant(&grant_id, now).await?;
                    RefreshRotation::Reused
                }
                None => RefreshRotation::Unknown,
            });
        };
        Ok(RefreshRotation::Rotated {
            grant_id: row.try_get("grant_id")?,
            scope: row.try_get("scope")?,
            expires_at: row.try_get("expires_at")?,
        })
    }

    /// An unspent refresh token's grant, scope and expiry (for introspection and revocation).
    pub async fn refresh_token(&self, token_digest: &str) -> Result<Option<(Grant, String, UnixTime)>> {
        let row = sqlx::query(
            "SELECT g.id, g.client_id, g.user_id, g.scope, g.resource, g.auth_time, g.revoked_at, \
             r.scope AS token_scope, r.expires_at FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id \
             WHERE r.token_hash = $1 AND r.used_at IS NULL",
        )
        .bind(token_digest)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| Ok((grant_from_row(&row)?, row.try_get("token_scope")?, row.try_get("expires_at")?))).transpose()
    }

    pub async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
            .bind(jti)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        bump_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether an access token is still good: not revoked itself, and its grant (if any), client and
    /// user (if any) all live. One round trip.
    pub async fn access_token_live(
        &self,
        jti: &str,
        grant_id: Option<&str>,
        client_id: &str,
        user_id: Option<&str>,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1) AS revoked, \
             (SELECT COUNT(*) FROM grants WHERE id = $2 AND revoked_at IS NULL) AS live_grant, \
             (SELECT COUNT(*) FROM clients WHERE id = $3 AND revoked = 0) AS live_client, \
             (SELECT COUNT(*) FROM users WHERE id = $4 AND disabled = 0) AS live_user",
        )
        .bind(jti)
        .bind(grant_id.unwrap_or_default())
        .bind(client_id)
        .bind(user_id.unwrap_or_default())
        .fetch_one(self.pool())
        .await?;
        let count = |name: &str| row.try_get::<i64, _>(name);
        Ok(count("revoked")? == 0
            && (grant_id.is_none() || count("live_grant")? > 0)
            && count("live_client")? > 0
            && (user_id.is_none() || count("live_user")? > 0))
    }
}

/// Marks, inside a revoking transaction, that cached liveness answers are stale.
pub(crate) async fn bump_revocation_epoch(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    sqlx::query("UPDATE revocation_epoch SET epoch = epoch + 1 WHERE id = 1").execute(&mut **tx).await?;
    Ok(())
}
