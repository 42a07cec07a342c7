-- Several nodes on one database (issue 21): the nodes and their heartbeats, which node holds
-- each session, and the events that travel between nodes (read by cursor after a notification
-- or a reconnect).
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    version TEXT NOT NULL,
    lost_at BIGINT
);
ALTER TABLE sessions ADD COLUMN node TEXT;
CREATE INDEX sessions_open_by_node ON sessions(node, ended_at);
CREATE TABLE cluster_events (
    id BIGSERIAL PRIMARY KEY,
    origin TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
