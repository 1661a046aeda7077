//! The audit log: hub tool calls and administrative changes, per account, kept for a set period.

use agora_core::UnixTime;
use sqlx::Row as _;

use crate::{Result, Store, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: String,
    /// `None` for changes outside any account (upstream servers, users).
    pub account_id: Option<String>,
    pub at: UnixTime,
    /// The user (or client) that acted.
    pub actor: String,
    /// `tools/call`, or the administrative change (`profile.create`, `member.add`, …).
    pub action: String,
    /// What else is worth knowing (a JSON object): tool, upstream, profile, client, duration and
    /// outcome of a call; before and after of a change. Never arguments of calls.
    pub detail: serde_json::Value,
}

impl Store {
    /// Appends entries in one transaction, many rows per statement.
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        // 6 parameters a row. SQLite finds each `$n` by a linear search, when it parses a statement
        // and when a value is bound, so a statement's cost grows with the square of its parameters:
        // 500 rows a statement took 6 % of the hub's CPU under load. Full chunks share one text,
        // which sqlx prepares once per connection.
        const ROWS_PER_STATEMENT: usize = 32;
        let mut tx = self.pool().begin().await?;
        for chunk in entries.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 6;
                    format!("(${}, ${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6)
                })
                .collect();
            let sql =
                format!("INSERT INTO audit_log (id, account_id, at, actor, action, detail) VALUES {}", rows.join(", "));
            // Only placeholders are generated; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for entry in chunk {
                query = query
                    .bind(&entry.id)
                    .bind(&entry.account_id)
                    .bind(entry.at)
                    .bind(&entry.actor)
                    .bind(&entry.action)
                    .bind(entry.detail.to_string());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// An account's entries with `from <= at < until`, oldest first, at most `limit`.
    pub async fn audit(
        &self,
        account_id: &str,
        from: UnixTime,
        until: UnixTime,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, account_id, at, actor, action, detail FROM audit_log \
             WHERE account_id = $1 AND at >= $2 AND at < $3 ORDER BY at, id LIMIT $4",
        )
        .bind(account_id)
        .bind(from)
        .bind(until)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| StoreError::Corrupt { table: "audit_log", detail: e.to_string() })?,
                })
            })
            .collect()
    }

    /// Forgets entries older than `before`.
    pub async fn purge_audit(&self, before: UnixTime) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM audit_log WHERE at < $1").bind(before).execute(self.pool()).await?.rows_affected())
    }
}
