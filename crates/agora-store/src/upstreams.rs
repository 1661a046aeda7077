use std::collections::BTreeMap;

use agora_core::UnixTime;
use sqlx::Row as _;

use crate::{Result, Row, Store, StoreError, conflict_as, json_list, parse_json_list};

/// How the hub reaches an upstream MCP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamTransport {
    /// A remote server at `url`, with extra request headers.
    Http { url: String, headers: BTreeMap<String, String>, protocol: HttpProtocol },
    /// A local child process speaking MCP over stdio; its environment holds only `env`.
    Stdio { command: String, args: Vec<String>, env: BTreeMap<String, String> },
}

/// Which of MCP's HTTP transports a remote server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpProtocol {
    /// Streamable HTTP (2025-03-26 and later).
    Streamable,
    /// The older HTTP+SSE transport (2024-11-05): an event stream plus a URL to post messages to.
    LegacySse,
}

impl HttpProtocol {
    fn kind(self) -> &'static str {
        match self {
            Self::Streamable => "http",
            Self::LegacySse => "sse",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamServer {
    pub id: String,
    pub name: String,
    pub transport: UpstreamTransport,
    /// Prepended to its tool names (`{prefix}_{tool}`); `None` exposes them unprefixed.
    pub tool_prefix: Option<String>,
    pub timeout_ms: i64,
    /// The third-party service whose credential the caller's connection carries (by service name,
    /// looked up in the caller's account).
    pub service: Option<String>,
}

fn context(id: &str, what: &str) -> String {
    format!("upstream_server:{id}:{what}")
}

impl Store {
    fn seal_map(&self, id: &str, what: &str, map: &BTreeMap<String, String>) -> Option<Vec<u8>> {
        (!map.is_empty()).then(|| {
            let json = serde_json::to_vec(map).expect("a string map serializes");
            self.secrets().seal(&context(id, what), &json)
        })
    }

    fn open_map(&self, id: &str, what: &str, sealed: Option<Vec<u8>>) -> Result<BTreeMap<String, String>> {
        match sealed {
            None => Ok(BTreeMap::new()),
            Some(sealed) => {
                let json = self.secrets().open(&context(id, what), &sealed)?;
                serde_json::from_slice(&json)
                    .map_err(|e| StoreError::Corrupt { table: "upstream_servers", detail: e.to_string() })
            }
        }
    }

    fn upstream_from_row(&self, row: &Row) -> Result<UpstreamServer> {
        let id: String = row.try_get("id")?;
        let kind: String = row.try_get("transport")?;
        let transport = match kind.as_str() {
            "http" | "sse" => UpstreamTransport::Http {
                url: row.try_get::<Option<String>, _>("url")?.unwrap_or_default(),
                headers: self.open_map(&id, "headers", row.try_get("sealed_headers")?)?,
                protocol: if kind == "sse" { HttpProtocol::LegacySse } else { HttpProtocol::Streamable },
            },
            "stdio" => UpstreamTransport::Stdio {
                command: row.try_get::<Option<String>, _>("command")?.unwrap_or_default(),
                args: parse_json_list("upstream_servers", &row.try_get::<String, _>("args")?)?,
                env: self.open_map(&id, "env", row.try_get("sealed_env")?)?,
            },
            other => {
                return Err(StoreError::Corrupt { table: "upstream_servers", detail: format!("transport {other}") });
            }
        };
        Ok(UpstreamServer {
            name: row.try_get("name")?,
            tool_prefix: row.try_get("tool_prefix")?,
            timeout_ms: row.try_get("timeout_ms")?,
            service: row.try_get("service")?,
            transport,
            id,
        })
    }

    pub async fn create_upstream(&self, server: &UpstreamServer, now: UnixTime) -> Result<()> {
        let (kind, url, command, args, env, headers) = match &server.transport {
            UpstreamTransport::Http { url, headers, protocol } => {
                let headers = self.seal_map(&server.id, "headers", headers);
                (protocol.kind(), Some(url.as_str()), None, Vec::new(), None, headers)
            }
            UpstreamTransport::Stdio { command, args, env } => {
                ("stdio", None, Some(command.as_str()), args.clone(), self.seal_map(&server.id, "env", env), None)
            }
        };
        sqlx::query(
            "INSERT INTO upstream_servers (id, name, transport, url, command, args, sealed_env, sealed_headers, \
             tool_prefix, timeout_ms, created_at, service) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&server.id)
        .bind(&server.name)
        .bind(kind)
        .bind(url)
        .bind(command)
        .bind(json_list(&args))
        .bind(env)
        .bind(headers)
        .bind(&server.tool_prefix)
        .bind(server.timeout_ms)
        .bind(now)
        .bind(&server.service)
        .execute(self.pool())
        .await
        .map_err(conflict_as("an upstream server with this name"))?;
        Ok(())
    }

    pub async fn upstreams(&self) -> Result<Vec<UpstreamServer>> {
        let rows = sqlx::query(
            "SELECT id, name, transport, url, command, args, sealed_env, sealed_headers, tool_prefix, timeout_ms, service \
             FROM upstream_servers ORDER BY created_at, name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| self.upstream_from_row(row)).collect()
    }

    pub async fn delete_upstream(&self, name_or_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM upstream_servers WHERE id = $1 OR name = $1")
            .bind(name_or_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
