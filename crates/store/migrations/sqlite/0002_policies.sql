-- Entitlements and access request policies (R-POL-1, R-POL-2).
CREATE TABLE entitlements (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    priority INTEGER NOT NULL,
    windows TEXT NOT NULL DEFAULT '',
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE entitlement_members (
    entitlement_id TEXT NOT NULL REFERENCES entitlements(id) ON DELETE CASCADE,
    member_type TEXT NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (entitlement_id, member_type, member_id)
);

CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    entitlement_id TEXT NOT NULL REFERENCES entitlements(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    priority INTEGER NOT NULL,
    access_type TEXT NOT NULL,
    windows TEXT NOT NULL DEFAULT '',
    emergency_allowed INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER,
    settings TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (entitlement_id, name)
);
CREATE INDEX policies_entitlement ON policies(entitlement_id);

CREATE TABLE policy_scope (
    policy_id TEXT NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    PRIMARY KEY (policy_id, scope_type, scope_id)
);
CREATE INDEX policy_scope_target ON policy_scope(scope_type, scope_id);
