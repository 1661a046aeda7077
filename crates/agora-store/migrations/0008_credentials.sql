-- Third-party services an account's upstreams need, users' (and the organization's) credentials
-- for them, which profiles a credential is assigned to, and connect attempts in flight. Secrets
-- (client secrets, tokens, keys, PKCE verifiers) are sealed under the master key.

ALTER TABLE upstream_servers ADD COLUMN service TEXT;

CREATE TABLE services (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    authorize_url TEXT,
    token_url TEXT,
    client_id TEXT,
    sealed_client_secret BLOB,
    scopes TEXT,
    header_name TEXT NOT NULL,
    header_template TEXT NOT NULL,
    env_name TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    -- NULL: the organization's, shared by its members.
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret BLOB NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX credentials_service ON credentials (service_id);

CREATE TABLE credential_profiles (
    credential_id TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    profile_id TEXT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    PRIMARY KEY (credential_id, profile_id)
);

-- One connect attempt: a ticket handed to the user in a tool result, then (for OAuth) the state
-- of the provider round trip, bound to the browser that started it.
CREATE TABLE connect_attempts (
    ticket_digest TEXT PRIMARY KEY,
    state_digest TEXT UNIQUE,
    browser_digest TEXT,
    sealed_verifier BLOB,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    service_id TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    profile_id TEXT,
    expires_at BIGINT NOT NULL,
    used BIGINT NOT NULL
);
