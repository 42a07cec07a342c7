-- The pinned TLS certificate of an asset's RDP service ("sha256:" and the hex SHA-256 of the
-- leaf certificate): pinned on first use by the RDP proxy, part of the asset's identity like
-- the SSH host key (a change needs another administrator's confirmation).
ALTER TABLE assets ADD COLUMN tls_fingerprint TEXT;
