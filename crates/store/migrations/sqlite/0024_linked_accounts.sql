-- A user's linked directory accounts (R-REQ-2, Linked Account mode): their own administrator
-- accounts in a directory, which sessions of policies in that mode log in with.
CREATE TABLE linked_accounts (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    added_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, account_id)
);
CREATE INDEX linked_accounts_account ON linked_accounts(account_id);
