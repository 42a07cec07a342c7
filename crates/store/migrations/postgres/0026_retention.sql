-- Retention (R-SES-13): a session under legal hold is never deleted by its policy's retention.
ALTER TABLE sessions ADD COLUMN legal_hold TEXT;
