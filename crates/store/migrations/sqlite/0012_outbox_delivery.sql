-- Delivering the outbox: attempts so far, when the next is due (also the lease a node holds
-- while it sends), the last error, and when delivery was given up.
ALTER TABLE notification_outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notification_outbox ADD COLUMN next_at INTEGER;
ALTER TABLE notification_outbox ADD COLUMN last_error TEXT;
ALTER TABLE notification_outbox ADD COLUMN failed_at INTEGER;
