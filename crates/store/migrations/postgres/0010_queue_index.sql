-- The work queues (approvals, reviews, in use) list one state's requests newest first: this
-- index serves them without sorting every request of that state.
CREATE INDEX access_requests_state_created ON access_requests(state, created_at);
