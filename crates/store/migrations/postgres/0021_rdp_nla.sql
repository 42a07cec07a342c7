-- An RDP launch token, sealed by the vault (bound to the token's hash): the RDP proxy's NLA
-- (CredSSP/NTLM) sign-in proves the client knows the token without it being sent, which needs
-- the token itself server-side. Only RDP launch tokens have it; it dies with the token row.
ALTER TABLE launch_tokens ADD COLUMN sealed_token TEXT;

-- With `[rdp] nla_passwords` on (off by default): the NT hash (MD4 of the UTF-16 password) of a
-- user's Portcullis password, sealed by the vault and bound to the user, written when they sign
-- in with it, cleared when the password changes. NTLM (RDP's NLA) can check a password only
-- against this form; argon2 stays the password's check everywhere.
ALTER TABLE users ADD COLUMN nla_hash TEXT;
