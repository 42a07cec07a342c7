-- Connection policies (R-SES-2, 3, 5, 6): tried in `position` order (1 first) by every proxy;
-- the first that matches a connection decides it. `spec` is the policy as the administrator
-- wrote it (JSON, validated by the application before it is stored).
CREATE TABLE connection_policies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    position BIGINT NOT NULL,
    spec TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Every change bumps the generation in the same transaction, so each node's cached copy is
-- rebuilt at its next use, whichever node (or tool) made the change.
CREATE TABLE connection_policy_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO connection_policy_generation (id, generation) VALUES (1, 1);
CREATE FUNCTION bump_connection_policy_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE connection_policy_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER connection_policies_generation AFTER INSERT OR UPDATE OR DELETE ON connection_policies FOR EACH STATEMENT EXECUTE FUNCTION bump_connection_policy_generation();
-- A fresh installation (and an upgraded one, which had no such step) admits SSH as before:
-- from anywhere, to any asset, with shell, exec, SFTP, SCP and local port forwarding.
INSERT INTO connection_policies (id, name, position, spec, created_at, updated_at) VALUES (
    'c0000000-0000-4000-8000-000000000001', 'ssh-default', 1,
    '{"protocol":"ssh","enabled":true,"clients":[],"listen_ports":[],"targets":[],"translate":null,"source_address":null,"algorithms":{"kex":[],"ciphers":[],"macs":[],"host_keys":[]},"channels":[{"kind":"shell","groups":[],"windows":[],"commands":[],"destinations":[]},{"kind":"exec","groups":[],"windows":[],"commands":[],"destinations":[]},{"kind":"sftp","groups":[],"windows":[],"commands":[],"destinations":[]},{"kind":"scp","groups":[],"windows":[],"commands":[],"destinations":[]},{"kind":"local_forward","groups":[],"windows":[],"commands":[],"destinations":[]}],"pre_channel_check":false,"time_zone":"UTC"}',
    0, 0);
