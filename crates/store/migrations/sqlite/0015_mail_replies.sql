-- Approval mails carry two tokens (only their SHA-256 is kept), each bound to one approver,
-- one request and one approval level, valid until expires_at: kind 'reply' is in the address
-- a reply goes to and counts once; kind 'link' opens the request's page in the web UI for that
-- approver (who decides there, signed in).
CREATE TABLE mail_tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL,
    level INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX mail_tokens_expiry ON mail_tokens (expires_at);
-- What a notification needs besides its subject (e.g. why a mailed reply was refused).
ALTER TABLE notification_outbox ADD COLUMN details TEXT;
