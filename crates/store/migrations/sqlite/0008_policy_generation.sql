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
CREATE TRIGGER entitlements_insert_generation AFTER INSERT ON entitlements BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER entitlements_update_generation AFTER UPDATE ON entitlements BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER entitlements_delete_generation AFTER DELETE ON entitlements BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER entitlement_members_insert_generation AFTER INSERT ON entitlement_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER entitlement_members_update_generation AFTER UPDATE ON entitlement_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER entitlement_members_delete_generation AFTER DELETE ON entitlement_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policies_insert_generation AFTER INSERT ON policies BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policies_update_generation AFTER UPDATE ON policies BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policies_delete_generation AFTER DELETE ON policies BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policy_scope_insert_generation AFTER INSERT ON policy_scope BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policy_scope_update_generation AFTER UPDATE ON policy_scope BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policy_scope_delete_generation AFTER DELETE ON policy_scope BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER user_group_members_insert_generation AFTER INSERT ON user_group_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER user_group_members_update_generation AFTER UPDATE ON user_group_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER user_group_members_delete_generation AFTER DELETE ON user_group_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER account_group_members_insert_generation AFTER INSERT ON account_group_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER account_group_members_update_generation AFTER UPDATE ON account_group_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER account_group_members_delete_generation AFTER DELETE ON account_group_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER asset_group_members_insert_generation AFTER INSERT ON asset_group_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER asset_group_members_update_generation AFTER UPDATE ON asset_group_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER asset_group_members_delete_generation AFTER DELETE ON asset_group_members BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER accounts_insert_generation AFTER INSERT ON accounts BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER accounts_update_generation AFTER UPDATE OF asset_id ON accounts BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER accounts_delete_generation AFTER DELETE ON accounts BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER users_insert_generation AFTER INSERT ON users BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER users_update_generation AFTER UPDATE OF time_zone ON users BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER users_delete_generation AFTER DELETE ON users BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END;
