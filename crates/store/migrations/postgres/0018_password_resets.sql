-- Set-password links (an administrator's reset, an invitation): only the token's SHA-256 is
-- kept; a link is used once, before it expires. The administrator who reset never sees it.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX password_resets_user ON password_resets (user_id);
-- Who last set a user's e-mail address, when it was someone else (an administrator): that
-- administrator may not send a set-password link there.
ALTER TABLE users ADD COLUMN email_set_by TEXT;
