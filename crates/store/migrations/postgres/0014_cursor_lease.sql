-- Which node forwards to the SIEM: the node holding an unexpired lease on the cursor. Several
-- nodes share one store; one sends, the others wait and take over when its lease runs out.
ALTER TABLE delivery_cursors ADD COLUMN holder TEXT;
ALTER TABLE delivery_cursors ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
