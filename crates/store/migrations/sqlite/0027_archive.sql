-- Archive (R-SES-13): where a session's recording was copied in object storage, once the copy
-- was verified; the local file may then be removed.
ALTER TABLE sessions ADD COLUMN archive_key TEXT;
ALTER TABLE sessions ADD COLUMN archived_at INTEGER;
CREATE INDEX sessions_unarchived ON sessions(archived_at, ended_at);
