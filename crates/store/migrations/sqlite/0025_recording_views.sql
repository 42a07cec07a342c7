-- Requests to view a session's recording (R-REQ-12), for sessions whose access policy asks for
-- them: the justification, the decision (never by the one who asked) and until when an
-- approved view lasts.
CREATE TABLE recording_views (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    requester_id TEXT NOT NULL REFERENCES users(id),
    justification TEXT NOT NULL,
    -- 'pending', 'approved' or 'denied'
    state TEXT NOT NULL,
    decided_by TEXT REFERENCES users(id),
    decided_at INTEGER,
    comment TEXT,
    created_at INTEGER NOT NULL,
    -- approved: viewing is allowed until then
    expires_at INTEGER
);
CREATE INDEX recording_views_session ON recording_views(session_id, requester_id);
CREATE INDEX recording_views_state ON recording_views(state, created_at);
