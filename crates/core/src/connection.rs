//! The SSH proxy's connection strings: how a user names the target in the SSH username, so
//! that unmodified clients (`ssh`, `scp`, `sftp`, `plink`) can use the proxy.
//!
//! - Inband: `USER#ACCOUNT@ASSET`, e.g. `alice#root@db1`. On the command line:
//!   `ssh -p 2222 'alice#root@db1@portcullis.example'` (clients split at the last `@`).
//!   `USER+ACCOUNT@ASSET` means the same, for `scp`, which refuses `#` in user names
//!   (`+` never occurs in Portcullis user names, so the first `+` is the separator).
//! - Launch token: `pcl_…`, a one-time token issued for one available request (the token
//!   alone names user, account and asset).
//!
//! Parsing is pure and bounded: at most [`MAX_LEN`] bytes, no control characters, each part
//! non-empty and at most 128 bytes.

/// The longest connection string accepted.
pub const MAX_LEN: usize = 512;
/// Launch tokens start with this.
pub const LAUNCH_TOKEN_PREFIX: &str = "pcl_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionString {
    Inband { user: String, account: String, asset: String },
    LaunchToken(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("the connection string is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("the connection string contains control characters")]
    Control,
    #[error("name the target as USER#ACCOUNT@ASSET (e.g. alice#root@db1), or use a launch token")]
    Shape,
    #[error("the {0} part is empty")]
    Empty(&'static str),
    #[error("the {0} part is longer than 128 bytes")]
    PartTooLong(&'static str),
}

fn part(name: &'static str, text: &str) -> Result<String, ConnectionStringError> {
    if text.is_empty() {
        return Err(ConnectionStringError::Empty(name));
    }
    if text.len() > 128 {
        return Err(ConnectionStringError::PartTooLong(name));
    }
    Ok(text.to_owned())
}

/// Parses the username an SSH client sent.
pub fn parse(username: &str) -> Result<ConnectionString, ConnectionStringError> {
    if username.len() > MAX_LEN {
        return Err(ConnectionStringError::TooLong);
    }
    if username.chars().any(char::is_control) {
        return Err(ConnectionStringError::Control);
    }
    if let Some(token) = username.strip_prefix(LAUNCH_TOKEN_PREFIX) {
        if !username.contains(['#', '@']) && !token.is_empty() {
            return Ok(ConnectionString::LaunchToken(username.to_owned()));
        }
    }
    let (user, rest) =
        username.split_once('#').or_else(|| username.split_once('+')).ok_or(ConnectionStringError::Shape)?;
    let (account, asset) = rest.rsplit_once('@').ok_or(ConnectionStringError::Shape)?;
    if account.contains('#') || asset.contains('#') {
        return Err(ConnectionStringError::Shape);
    }
    Ok(ConnectionString::Inband {
        user: part("user", user)?,
        account: part("account", account)?,
        asset: part("asset", asset)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inband(u: &str, acc: &str, a: &str) -> ConnectionString {
        ConnectionString::Inband { user: u.into(), account: acc.into(), asset: a.into() }
    }

    #[test]
    fn forms() {
        assert_eq!(parse("alice#root@db1"), Ok(inband("alice", "root", "db1")));
        assert_eq!(parse("alice#svc@corp@db1.example"), Ok(inband("alice", "svc@corp", "db1.example")));
        assert_eq!(parse("pcl_ABCDEF"), Ok(ConnectionString::LaunchToken("pcl_ABCDEF".into())));
        assert_eq!(parse("alice+root@db1"), Ok(inband("alice", "root", "db1")));
        assert_eq!(parse("alice@corp.com+root@db1"), Ok(inband("alice@corp.com", "root", "db1")));
        assert_eq!(parse("alice"), Err(ConnectionStringError::Shape));
        assert_eq!(parse("alice#root"), Err(ConnectionStringError::Shape));
        assert_eq!(parse("#root@db1"), Err(ConnectionStringError::Empty("user")));
        assert_eq!(parse("alice#@db1"), Err(ConnectionStringError::Empty("account")));
        assert_eq!(parse("alice#root@"), Err(ConnectionStringError::Empty("asset")));
        assert_eq!(parse("a#b#c@d"), Err(ConnectionStringError::Shape));
        assert_eq!(parse("pcl_"), Err(ConnectionStringError::Shape));
        assert_eq!(parse("alice#ro\not@db1"), Err(ConnectionStringError::Control));
        assert_eq!(parse(&"x".repeat(600)), Err(ConnectionStringError::TooLong));
        assert_eq!(parse(&format!("{}#r@d", "u".repeat(200))), Err(ConnectionStringError::PartTooLong("user")));
    }
}
