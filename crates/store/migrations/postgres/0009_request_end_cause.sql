-- How a request's access ended (check_in, expiry or revocation), kept through review so the
-- requester, the reviewer and the proxy's messages say "revoked" or "expired", not "checked in".
ALTER TABLE access_requests ADD COLUMN ended_by TEXT;
