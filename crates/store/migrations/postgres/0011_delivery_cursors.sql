-- How far each delivery (the SIEM forwarder) has read the audit chain: it resumes after this
-- sequence number when the server restarts, so nothing is lost (and at most a batch is sent
-- twice, each event carrying its sequence number for de-duplication).
CREATE TABLE delivery_cursors (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
