-- Users and user groups read from a directory (`[directories.NAME]`): the connection's name and
-- the entry's DN. A directory user has no Portcullis password (its hash is a marker no password
-- verifies); the directory's bind decides. A directory group's members are the directory's:
-- written only by a synchronisation.
ALTER TABLE users ADD COLUMN directory TEXT;
ALTER TABLE users ADD COLUMN directory_dn TEXT;
-- Disabled because the directory disabled or dropped the user (so the directory may enable them
-- again); an administrator's disable is the directory's to keep, never to undo.
ALTER TABLE users ADD COLUMN directory_disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_groups ADD COLUMN directory TEXT;
ALTER TABLE user_groups ADD COLUMN directory_dn TEXT;
CREATE INDEX users_directory ON users(directory);
CREATE INDEX user_groups_directory ON user_groups(directory);

-- The last synchronisation of each directory: when, how it ended, what it changed.
CREATE TABLE directory_syncs (
    directory TEXT PRIMARY KEY,
    attempted_at INTEGER NOT NULL,
    succeeded_at INTEGER,
    error TEXT,
    user_count INTEGER NOT NULL DEFAULT 0,
    group_count INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT ''
);
