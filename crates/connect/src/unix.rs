//! Linux and Unix over SSH.
//!
//! - Password, as the account itself: `passwd` on a pseudo-terminal, answering its prompts
//!   with the current and the new password (echo is off, so neither appears in its output).
//! - Password, through a service account: `chpasswd` (as root) or `sudo -n chpasswd`, the
//!   `account:password` line on standard input, never on a command line.
//! - SSH key: a short POSIX `sh` script adds the new public key to the account's
//!   `~/.ssh/authorized_keys` (resolved with `getent passwd`), the connector logs in with the
//!   new private key, and only then the script removes the old key (matched by its base64
//!   blob, so comments and options do not matter). If the new key does not log in, it is
//!   removed again and the old one stays.

use crate::ssh::{connect, SshClient};
use crate::{BoxFuture, ConnectError, Connector, Credential, Login, NewKey, Plaintext, Seen, Target};

/// The Linux/Unix connector.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnixSsh;

const KEYS_SCRIPT: &str = r#"set -e
umask 077
op="$1"; u="$2"; alg="$3"; blob="$4"
h=$(getent passwd "$u" | cut -d: -f6)
[ -n "$h" ] || { echo "no such user: $u" >&2; exit 3; }
d="$h/.ssh"; f="$d/authorized_keys"
mkdir -p "$d"; touch "$f"
if [ "$op" = add ]; then
  awk -v b="$blob" '{ for (i = 1; i <= NF; i++) if ($i == b) found = 1 } END { exit found ? 0 : 1 }' "$f" \
    || printf '%s %s portcullis\n' "$alg" "$blob" >> "$f"
else
  awk -v b="$blob" '{ keep = 1; for (i = 1; i <= NF; i++) if ($i == b) keep = 0; if (keep) print }' "$f" > "$f.portcullis"
  cat "$f.portcullis" > "$f"; rm -f "$f.portcullis"
fi
if [ "$(id -u)" = 0 ]; then chown "$u" "$d" "$f"; fi
"#;

/// Single-quotes a word for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `sudo -n` for a service account that is not root; nothing for root or the account itself.
fn privilege(account: &str, via: &Login<'_>) -> &'static str {
    if via.username == account || via.username == "root" {
        ""
    } else {
        "sudo -n "
    }
}

/// (algorithm, base64 blob) of a public key line, both restricted to safe characters.
fn key_fields(public: &str) -> Result<(String, String), ConnectError> {
    let mut parts = public.split_whitespace();
    let (Some(alg), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(ConnectError::BadCredential("the public key is not in OpenSSH format".into()));
    };
    let safe_alg = alg.chars().all(|c| c.is_ascii_alphanumeric() || "-.@".contains(c));
    let safe_blob = blob.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
    if !safe_alg || !safe_blob {
        return Err(ConnectError::BadCredential("the public key is not in OpenSSH format".into()));
    }
    Ok((alg.to_owned(), blob.to_owned()))
}

/// The lines of `passwd`'s output that are messages, not prompts.
fn messages(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.ends_with(':')).take(5).collect();
    if lines.is_empty() {
        crate::ssh::last_line(output)
    } else {
        lines.join("; ").chars().take(300).collect()
    }
}

async fn login(target: &Target, who: Login<'_>) -> Result<SshClient, ConnectError> {
    let mut client = connect(target).await?;
    client.authenticate(who).await?;
    Ok(client)
}

async fn verify(target: &Target, who: Login<'_>) -> Result<Seen, ConnectError> {
    let client = login(target, who).await?;
    let seen = Seen { host_key: client.host_key().to_owned() };
    client.close().await;
    Ok(seen)
}

/// After a change whose verification failed: says whether the old credential still works.
async fn after_failed_verification(target: &Target, old: Option<Login<'_>>, why: ConnectError) -> ConnectError {
    let old_state = match old {
        Some(old) => match verify(target, old).await {
            Ok(_) => "the old credential still logs in",
            Err(_) => "the old credential no longer logs in either",
        },
        None => "the old credential was not tested",
    };
    ConnectError::VerificationFailed(format!("{why}; {old_state}"))
}

async fn keys_op(
    client: &SshClient,
    account: &str,
    via: &Login<'_>,
    op: &str,
    public: &str,
) -> Result<(), ConnectError> {
    let (alg, blob) = key_fields(public)?;
    let command = format!(
        "{}sh -c {} portcullis-keys {} {} {} {}",
        privilege(account, via),
        quote(KEYS_SCRIPT),
        op,
        quote(account),
        quote(&alg),
        quote(&blob)
    );
    let out = client.exec(&command, b"").await?;
    if out.status != Some(0) {
        return Err(ConnectError::Refused(format!(
            "updating authorized_keys failed (exit {}): {}",
            out.status.map_or("none".into(), |s| s.to_string()),
            out.stderr_text()
        )));
    }
    Ok(())
}

impl UnixSsh {
    async fn change_password_impl(
        &self,
        target: &Target,
        account: &str,
        via: Login<'_>,
        new_password: &Plaintext,
    ) -> Result<Seen, ConnectError> {
        if new_password.expose().iter().any(|b| *b == b'\n' || *b == b'\r' || *b == 0) {
            return Err(ConnectError::BadCredential("the new password contains a line break".into()));
        }
        let client = login(target, via).await?;
        let self_service = via.username == account;
        let out = if self_service {
            let Credential::Password(current) = via.credential else {
                client.close().await;
                return Err(ConnectError::Unsupported(
                    "changing a Unix password as the account itself needs its current password; \
                     store the password or configure a service account for the asset"
                        .into(),
                ));
            };
            let answers: [(&str, &[u8]); 4] = [
                ("current password:", current.expose()),
                ("(current) unix password:", current.expose()),
                ("new password:", new_password.expose()),
                ("retype new password:", new_password.expose()),
            ];
            client.converse("LC_ALL=C passwd", &answers, 1).await
        } else {
            let mut line = zeroize::Zeroizing::new(format!("{account}:").into_bytes());
            line.extend_from_slice(new_password.expose());
            line.push(b'\n');
            client.exec(&format!("{}chpasswd", privilege(account, &via)), &line).await
        };
        client.close().await;
        let out = out?;
        if out.status != Some(0) {
            return Err(ConnectError::Refused(format!(
                "{} exited with {}: {}",
                if self_service { "passwd" } else { "chpasswd" },
                out.status.map_or("no status".into(), |s| s.to_string()),
                if self_service { messages(&out.stdout) } else { out.stderr_text() }
            )));
        }
        let new_login = Login { username: account, credential: Credential::Password(new_password) };
        match verify(target, new_login).await {
            Ok(seen) => Ok(seen),
            Err(e) => Err(after_failed_verification(target, Some(via), e).await),
        }
    }

    async fn replace_key_impl(
        &self,
        target: &Target,
        account: &str,
        via: Login<'_>,
        old_public: Option<&str>,
        new_key: NewKey<'_>,
    ) -> Result<Seen, ConnectError> {
        key_fields(new_key.public_openssh)?;
        if let Some(old) = old_public {
            key_fields(old)?;
        }
        let client = login(target, via).await?;
        let added = keys_op(&client, account, &via, "add", new_key.public_openssh).await;
        if let Err(e) = added {
            client.close().await;
            return Err(e);
        }
        let new_login = Login { username: account, credential: Credential::PrivateKey(new_key.private_openssh) };
        let seen = match verify(target, new_login).await {
            Ok(seen) => seen,
            Err(e) => {
                // Take the new key out again; the old one was never touched.
                let _ = keys_op(&client, account, &via, "remove", new_key.public_openssh).await;
                client.close().await;
                return Err(ConnectError::VerificationFailed(format!("{e}; the old key is still authorized")));
            }
        };
        if let Some(old) = old_public {
            let (_, old_blob) = key_fields(old)?;
            let (_, new_blob) = key_fields(new_key.public_openssh)?;
            if old_blob != new_blob {
                let removed = keys_op(&client, account, &via, "remove", old).await;
                if let Err(e) = removed {
                    client.close().await;
                    return Err(ConnectError::Refused(format!(
                        "the new key works but the old one could not be removed: {e}"
                    )));
                }
            }
        }
        client.close().await;
        Ok(seen)
    }
}

impl Connector for UnixSsh {
    fn check<'a>(&'a self, target: &'a Target, login: Login<'a>) -> BoxFuture<'a, Result<Seen, ConnectError>> {
        Box::pin(verify(target, login))
    }

    fn change_password<'a>(
        &'a self,
        target: &'a Target,
        account: &'a str,
        via: Login<'a>,
        new_password: &'a Plaintext,
    ) -> BoxFuture<'a, Result<Seen, ConnectError>> {
        Box::pin(self.change_password_impl(target, account, via, new_password))
    }

    fn replace_key<'a>(
        &'a self,
        target: &'a Target,
        account: &'a str,
        via: Login<'a>,
        old_public: Option<&'a str>,
        new_key: NewKey<'a>,
    ) -> BoxFuture<'a, Result<Seen, ConnectError>> {
        Box::pin(self.replace_key_impl(target, account, via, old_public, new_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn key_fields_reject_shell_characters() {
        assert!(key_fields("ssh-ed25519 AAAAC3Nz+/= c").is_ok());
        assert!(key_fields("ssh-ed25519 AAAA$(reboot)").is_err());
        assert!(key_fields("ssh-ed25519;rm AAAA").is_err());
        assert!(key_fields("only-one-field").is_err());
    }

    #[test]
    fn messages_skip_prompts() {
        let out = b"Changing password for x.\r\nCurrent password: \r\nNew password: \r\nBAD PASSWORD: it is too short\r\nNew password: ";
        assert_eq!(messages(out), "Changing password for x.; BAD PASSWORD: it is too short");
    }
}
