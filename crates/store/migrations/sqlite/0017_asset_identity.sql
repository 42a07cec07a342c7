-- An asset's identity (address, ports, host key) as changed by administrators and not yet
-- confirmed by another one: the user ids of everyone who changed it since the last
-- confirmation (space-separated), and when the last change was. While set, no vaulted
-- credential of the asset is sent to it (checks, changes, session injection).
ALTER TABLE assets ADD COLUMN identity_changed_by TEXT;
ALTER TABLE assets ADD COLUMN identity_changed_at INTEGER;
