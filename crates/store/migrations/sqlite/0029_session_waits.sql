-- Connections waiting for a person (gateway authentication, four-eyes), on whichever node
-- they reached: listed and decided through any node (issue 21). The connection itself waits
-- on its node; a decision made elsewhere reaches it as an event between nodes.
CREATE TABLE session_waits (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    target TEXT NOT NULL,
    client TEXT NOT NULL,
    connection_policy TEXT NOT NULL,
    group_ids TEXT NOT NULL,
    since INTEGER NOT NULL,
    until INTEGER NOT NULL
);
