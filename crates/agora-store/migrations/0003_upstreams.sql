-- Upstream MCP servers the hub aggregates. Headers and environment may carry credentials, so they
-- are stored sealed under the master key (JSON objects inside the envelope).

CREATE TABLE upstream_servers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    transport TEXT NOT NULL,
    url TEXT,
    command TEXT,
    args TEXT NOT NULL,
    sealed_env BLOB,
    sealed_headers BLOB,
    tool_prefix TEXT,
    timeout_ms BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
