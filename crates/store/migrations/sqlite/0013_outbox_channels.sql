-- When each channel (e-mail, webhook) delivered a notification: a retry after one channel
-- failed sends again only on the channels that have not delivered it yet.
ALTER TABLE notification_outbox ADD COLUMN mail_at INTEGER;
ALTER TABLE notification_outbox ADD COLUMN hook_at INTEGER;
