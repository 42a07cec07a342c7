-- Single sign-on (OpenID Connect) in progress: one row from the start of a sign-in until its
-- session is opened (or it expires, after ten minutes). Only hashes of the state and of the
-- one-time grant are kept; the PKCE verifier and nonce are of use only with the provider's
-- one-time code, and die with the row.
CREATE TABLE sso_logins (
    state_hash TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    -- 'web' or 'cli'
    client TEXT NOT NULL,
    -- web: the page to return to; cli: the command's loopback address
    next TEXT NOT NULL DEFAULT '',
    -- cli: SHA-256 (hex) of the command's own verifier, which it shows when it redeems the grant
    cli_challenge TEXT,
    grant_hash TEXT UNIQUE,
    user_id TEXT,
    -- the provider asserted multi-factor authentication
    mfa INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sso_logins_expiry ON sso_logins(expires_at);
