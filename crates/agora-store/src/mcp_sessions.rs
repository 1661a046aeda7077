//! MCP sessions (revisions before 2026-07-28), kept so any replica can continue any session.
//! Sessions live at most a week; clients start a new one when told theirs is gone.

use agora_core::UnixTime;

use crate::{Result, Store};

impl Store {
    /// Saves a session's state (the client's `initialize` parameters, as JSON).
    pub async fn put_mcp_session(&self, id: &str, state: &str, now: UnixTime) -> Result<()> {
        sqlx::query(
            "INSERT INTO mcp_sessions (id, state, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET state = $2",
        )
        .bind(id)
        .bind(state)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn mcp_session(&self, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT state FROM mcp_sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn delete_mcp_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM mcp_sessions WHERE id = $1").bind(id).execute(self.pool()).await?;
        Ok(())
    }

    /// Binds a new session to the subject that created it.
    pub async fn set_mcp_session_owner(&self, id: &str, owner: &str, now: UnixTime) -> Result<()> {
        sqlx::query("INSERT INTO mcp_session_owners (id, owner, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(owner)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn mcp_session_owner(&self, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT owner FROM mcp_session_owners WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }
}
