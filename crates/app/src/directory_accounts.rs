//! Directory accounts (R-VAULT-1): accounts that live in a directory rather than on one
//! asset. They are the accounts of the asset named like the directory (platform `directory`);
//! vaulted like any other, checked by a bind, and changed through the directory (LDAP
//! Password Modify, AD `unicodePwd`) as the account itself, then verified by a bind.

use portcullis_connect::{BoxFuture, ConnectError, Connector, Credential, Login, NewKey, Plaintext, Seen, Target};
use portcullis_directory::{Directory, DirectoryError};

/// The connector of a directory's accounts.
pub struct DirectoryAccounts(pub Directory);

fn connect_error(e: DirectoryError) -> ConnectError {
    match e {
        DirectoryError::Timeout { seconds, .. } => ConnectError::Timeout(seconds),
        DirectoryError::Refused { what, reason } => ConnectError::Refused(format!("{what}: {reason}")),
        other => ConnectError::Unreachable(other.to_string()),
    }
}

fn password<'a>(login: &Login<'a>) -> Result<&'a Plaintext, ConnectError> {
    match login.credential {
        Credential::Password(p) => Ok(p),
        Credential::PrivateKey(_) => {
            Err(ConnectError::Unsupported("directory accounts have passwords, not SSH keys".into()))
        }
    }
}

fn text(p: &Plaintext) -> Result<&str, ConnectError> {
    std::str::from_utf8(p.expose()).map_err(|_| ConnectError::BadCredential("the password is not UTF-8".into()))
}

fn seen() -> Seen {
    Seen { host_key: String::new() }
}

impl Connector for DirectoryAccounts {
    fn check<'a>(&'a self, _target: &'a Target, login: Login<'a>) -> BoxFuture<'a, Result<Seen, ConnectError>> {
        Box::pin(async move {
            let pw = text(password(&login)?)?;
            match self.0.check_password(login.username, pw).await.map_err(connect_error)? {
                true => Ok(seen()),
                false => Err(ConnectError::AuthenticationFailed(login.username.to_owned())),
            }
        })
    }

    fn change_password<'a>(
        &'a self,
        _target: &'a Target,
        account: &'a str,
        via: Login<'a>,
        new_password: &'a Plaintext,
    ) -> BoxFuture<'a, Result<Seen, ConnectError>> {
        Box::pin(async move {
            if via.username != account {
                return Err(ConnectError::Unsupported(
                    "directory accounts change their own password (as the account, proving the current one)".into(),
                ));
            }
            let current = text(password(&via)?)?;
            match self.0.change_password(account, current, text(new_password)?).await {
                Ok(()) => Ok(seen()),
                Err(DirectoryError::WrongPassword { account }) => Err(ConnectError::AuthenticationFailed(account)),
                Err(DirectoryError::NotVerified { reason, .. }) => Err(ConnectError::VerificationFailed(reason)),
                Err(e) => Err(connect_error(e)),
            }
        })
    }

    fn replace_key<'a>(
        &'a self,
        _target: &'a Target,
        _account: &'a str,
        _via: Login<'a>,
        _old_public: Option<&'a str>,
        _new_key: NewKey<'a>,
    ) -> BoxFuture<'a, Result<Seen, ConnectError>> {
        Box::pin(async { Err(ConnectError::Unsupported("directory accounts have passwords, not SSH keys".into())) })
    }
}
