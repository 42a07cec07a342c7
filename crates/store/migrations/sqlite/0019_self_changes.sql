-- Who changed an entitlement or a policy since another Security Policy Administrator last
-- confirmed it: none of them gets access through it until then (a change that benefits its
-- author needs a second administrator). Rows are removed by a confirmation.
CREATE TABLE rule_changes (
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (object_type, object_id, user_id)
);
-- Who added a user to a group: a membership the member added themself grants no access.
ALTER TABLE user_group_members ADD COLUMN added_by TEXT;
