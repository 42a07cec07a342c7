-- Several nodes on one database (issue 21): the nodes and their heartbeats, which node holds
-- each session, and the events that travel between nodes (read by cursor after a notification
-- or a reconnect).
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    version TEXT NOT NULL,
    lost_at INTEGER
);
ALTER TABLE sessions ADD COLUMN node TEXT;
CREATE INDEX sessions_open_by_node ON sessions(node, ended_at);
CREATE TABLE cluster_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
