-- Access requests (R-REQ-1..8), their approvals, history and notification outbox.
CREATE TABLE access_requests (
    id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    requester_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    asset_id TEXT NOT NULL,
    access_type TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    state TEXT NOT NULL,
    emergency INTEGER NOT NULL DEFAULT 0,
    start_at INTEGER NOT NULL,
    end_at INTEGER NOT NULL,
    ticket TEXT,
    reason_code TEXT,
    comment TEXT,
    current_level INTEGER NOT NULL DEFAULT 0,
    review_required INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX access_requests_requester ON access_requests(requester_id, created_at);
CREATE INDEX access_requests_account ON access_requests(account_id, state);
CREATE INDEX access_requests_due ON access_requests(state, start_at, end_at);

CREATE TABLE request_approvals (
    request_id TEXT NOT NULL REFERENCES access_requests(id) ON DELETE CASCADE,
    approver_id TEXT NOT NULL,
    level INTEGER NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT,
    at INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver_id)
);

CREATE TABLE request_history (
    request_id TEXT NOT NULL REFERENCES access_requests(id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    at INTEGER NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    comment TEXT,
    PRIMARY KEY (request_id, n)
);

CREATE TABLE notification_outbox (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    request_id TEXT NOT NULL,
    recipients TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX notification_outbox_pending ON notification_outbox(delivered_at, created_at);
