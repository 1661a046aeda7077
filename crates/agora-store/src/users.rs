use agora_core::UnixTime;
use agora_core::user::User;
use sqlx::Row as _;

use crate::{Result, Row, Store, StoreError, conflict_as};

pub struct NewUser {
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub password_hash: Option<String>,
}

/// Columns read by [`user_from_row`]; a macro so that queries stay `&'static str` (`concat!`).
macro_rules! user_columns {
    () => {
        "id, email, email_verified, name, given_name, family_name, picture, username, disabled, created_at, updated_at"
    };
}
pub(crate) use user_columns;

pub(crate) fn user_from_row(row: &Row) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        email_verified: crate::flag(row, "email_verified")?,
        name: row.try_get("name")?,
        given_name: row.try_get("given_name")?,
        family_name: row.try_get("family_name")?,
        picture: row.try_get("picture")?,
        username: row.try_get("username")?,
        disabled: crate::flag(row, "disabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn create_user(&self, new: NewUser, now: UnixTime) -> Result<User> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO users (id, email, email_verified, name, password_hash, disabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&id)
        .bind(&new.email)
        .bind(i64::from(new.email_verified))
        .bind(&new.name)
        .bind(&new.password_hash)
        .bind(0_i64)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(conflict_as("a user with this email"))?;
        self.user_by_id(&id).await?.ok_or(StoreError::Corrupt { table: "users", detail: "insert vanished".into() })
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user with this id, unless disabled.
    pub async fn active_user(&self, id: &str) -> Result<Option<User>> {
        Ok(self.user_by_id(id).await?.filter(|user| !user.disabled))
    }

    /// The user with this (normalized) email and their password hash, if they have one.
    pub async fn user_with_password(&self, email: &str) -> Result<Option<(User, Option<String>)>> {
        let row = sqlx::query(concat!("SELECT ", user_columns!(), ", password_hash FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => Ok(Some((user_from_row(&row)?, row.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(self.user_with_password(email).await?.map(|(user, _)| user))
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(concat!("SELECT ", user_columns!(), " FROM users ORDER BY created_at, email"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn set_password_hash(&self, user_id: &str, hash: &str, now: UnixTime) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(now)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn mark_email_verified(&self, user_id: &str, now: UnixTime) -> Result<()> {
        sqlx::query("UPDATE users SET email_verified = 1, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Disables a user and revokes everything they hold: browser sessions and token grants.
    pub async fn disable_user(&self, user_id: &str, now: UnixTime) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
            .bind(1_i64)
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        crate::grants::bump_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
