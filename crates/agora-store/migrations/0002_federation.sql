-- Token exchange: identity providers per client, external identities mapped to users, and the
-- subject-token ids already exchanged (replay protection, kept until the token would expire).

CREATE TABLE identity_providers (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    issuer TEXT NOT NULL,
    audience TEXT,
    jwks_uri TEXT,
    public_key_pem TEXT,
    algorithms TEXT NOT NULL,
    default_scopes TEXT NOT NULL,
    max_token_lifetime BIGINT NOT NULL,
    link_by_email BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (client_id, issuer)
);

CREATE TABLE federated_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX federated_identities_user ON federated_identities(user_id);

CREATE TABLE exchanged_subject_tokens (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
