-- The policy generation: a counter every change to what policy resolution reads bumps in the
-- same transaction (entitlements and their members, policies and their scope, group
-- memberships, accounts and their asset, users' time zones). Only the columns resolution reads:
-- the workflow's own writes (requests, row locks) never invalidate the rules. Every node keeps the rules in memory and rebuilds
-- them when the stored generation differs from the one it built, so a change made through any
-- node, or straight in the database, is seen by all.
CREATE TABLE policy_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO policy_generation (id, generation) VALUES (1, 1);
CREATE FUNCTION bump_policy_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE policy_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER entitlements_generation AFTER INSERT OR UPDATE OR DELETE ON entitlements FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_generation();
CREATE TRIGGER entitlement_members_generation AFTER INSERT OR UPDATE OR DELETE ON entitlement_members FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_generation();
CREATE TRIGGER policies_generation AFTER INSERT OR UPDATE OR DELETE ON policies FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_generation();
CREATE TRIGGER policy_scope_generation AFTER INSERT OR UPDATE OR DELETE ON policy_scope FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_generation();
CREATE TRIGGER user_group_members_generation AFTER INSERT OR UPDATE OR DELETE ON user_group_members FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_generation();
CREATE TRIGGER account_group_members_generation AFTER INSERT OR UPDATE OR DELETE ON account_group_members FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_generation();
CREATE TRIGGER asset_group_members_generation AFTER INSERT OR UPDATE OR DELETE ON asset_group_members FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_generation();
CREATE TRIGGER accounts_generation AFTER INSERT OR UPDATE OF asset_id OR DELETE ON accounts FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_generation();
CREATE TRIGGER users_generation AFTER INSERT OR UPDATE OF time_zone OR DELETE ON users FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_generation();
