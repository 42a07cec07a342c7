-- Credential versions (R-VAULT-2): only envelope-encrypted material; the key-encryption key
-- is never in the database.
CREATE TABLE secret_versions (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    wrapped_dek TEXT NOT NULL,
    dek_nonce TEXT NOT NULL,
    kek_id TEXT NOT NULL,
    public_key TEXT,
    reason TEXT NOT NULL,
    set_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind, version)
);
CREATE INDEX secret_versions_kek ON secret_versions(kek_id);
