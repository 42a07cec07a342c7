-- Proxied sessions (R-SES-1, R-SES-11): who, what, from where, how long, how much, why it
-- ended, and the recording (its data key sealed by the vault, never in plaintext).
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    request_id TEXT,
    account_id TEXT,
    asset_id TEXT,
    protocol TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT,
    bytes_up BIGINT NOT NULL DEFAULT 0,
    bytes_down BIGINT NOT NULL DEFAULT 0,
    recording TEXT,
    key_ciphertext TEXT,
    key_nonce TEXT,
    key_wrapped TEXT,
    key_wrapped_nonce TEXT,
    key_kek_id TEXT
);
CREATE INDEX sessions_request ON sessions(request_id);
CREATE INDEX sessions_started ON sessions(started_at);
CREATE INDEX sessions_live ON sessions(ended_at);

-- One-time launch tokens for a request's session (stored by SHA-256 hash).
CREATE TABLE launch_tokens (
    token_hash TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES access_requests(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- Users' SSH public keys, for signing in to the proxy (a key belongs to one user).
CREATE TABLE user_ssh_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX user_ssh_keys_user ON user_ssh_keys(user_id);
