-- MCP sessions of protocol revisions before 2026-07-28: the client's initialize parameters, so any
-- replica can restore a session it has not seen, and the subject each session belongs to.
CREATE TABLE mcp_sessions (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE mcp_session_owners (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
