-- An RDP launch token, sealed by the vault (bound to the token's hash): the RDP proxy's NLA
-- (CredSSP/NTLM) sign-in proves the client knows the token without it being sent, which needs
-- the token itself server-side. Only RDP launch tokens have it; it dies with the token row.
ALTER TABLE launch_tokens ADD COLUMN sealed_token TEXT;
