-- Accounts (organizations and personal accounts), their members, invitations, auth clients,
-- profiles, toolkits, personal access tokens and audit log. Every change to what the hub decides
-- from these bumps `policy_epoch`, so replicas know when their cached view is stale.

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    public_access BIGINT NOT NULL,
    default_profile TEXT,
    -- The account of clients linked to none (exactly one row has it: the first-start account).
    is_default BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A client belongs to at most one account. `sealed_secret`: the secret of a client linked "existing",
-- kept (encrypted) so the Integration page can show it again to its owners.
CREATE TABLE account_clients (
    client_id TEXT PRIMARY KEY REFERENCES clients (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    sealed_secret BLOB,
    created_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    default_profile TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    client_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX invitations_account ON invitations (account_id);

CREATE TABLE profiles (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    alias TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name),
    UNIQUE (account_id, alias)
);

CREATE TABLE toolkits (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

-- One selected tool of a toolkit: `server` is an upstream's name, `tool` its own tool name, `*` for
-- every one; `fixed_arguments` is a JSON object injected on call and hidden from the schema.
CREATE TABLE toolkit_tools (
    toolkit_id TEXT NOT NULL REFERENCES toolkits (id) ON DELETE CASCADE,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    alias TEXT,
    description TEXT,
    fixed_arguments TEXT NOT NULL,
    hidden BIGINT NOT NULL,
    PRIMARY KEY (toolkit_id, server, tool)
);

CREATE TABLE profile_toolkits (
    profile_id TEXT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    toolkit_id TEXT NOT NULL REFERENCES toolkits (id) ON DELETE CASCADE,
    PRIMARY KEY (profile_id, toolkit_id)
);

-- Personal access tokens: stored only as a SHA-256 digest; always locked to their profile.
CREATE TABLE personal_tokens (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    profile_id TEXT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX personal_tokens_user ON personal_tokens (user_id);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    account_id TEXT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_account_at ON audit_log (account_id, at);

CREATE TABLE policy_epoch (
    id BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL
);
INSERT INTO policy_epoch (id, epoch) VALUES (1, 0);

-- The default account: clients linked to no account belong to it. Public access is on and its
-- default profile offers every tool, so a fresh install (and one upgraded from before accounts)
-- serves tools at once; an operator narrows it like any other account.
INSERT INTO accounts (id, name, kind, public_access, default_profile, is_default, created_at)
VALUES ('default', 'Default', 'ORGANIZATION', 1, '00000000-0000-4000-8000-000000000001', 1, 0);
INSERT INTO profiles (id, account_id, name, alias, created_at)
VALUES ('00000000-0000-4000-8000-000000000001', 'default', 'Default', 'default', 0);
INSERT INTO toolkits (id, account_id, name, created_at)
VALUES ('00000000-0000-4000-8000-000000000002', 'default', 'Everything', 0);
INSERT INTO toolkit_tools (toolkit_id, server, tool, alias, description, fixed_arguments, hidden)
VALUES ('00000000-0000-4000-8000-000000000002', '*', '*', NULL, NULL, '{}', 0);
INSERT INTO profile_toolkits (profile_id, toolkit_id)
VALUES ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002');
