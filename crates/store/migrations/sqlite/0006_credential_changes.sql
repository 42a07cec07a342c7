-- Password and key changes on targets (R-VAULT-4). A new credential is first stored as a
-- 'staged' version, then changed on the target, verified, and only then made 'active'; a
-- crash in between leaves the staged version, which the next attempt tests before anything
-- else, so the credential that works is never lost.
ALTER TABLE secret_versions ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE secret_versions ADD COLUMN error TEXT;
-- The account that changes other accounts' credentials on this asset (root or sudo), if any.
ALTER TABLE assets ADD COLUMN service_account_id TEXT;

CREATE TABLE credential_changes (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    request_id TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at INTEGER NOT NULL,
    last_error TEXT,
    version INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX credential_changes_due ON credential_changes(state, due_at);
CREATE INDEX credential_changes_account ON credential_changes(account_id, created_at);

-- Password profiles, per platform ('platform:linux') or asset ('asset:<id>').
CREATE TABLE password_profiles (
    scope TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
