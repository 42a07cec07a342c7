//! LDAP and Active Directory for Portcullis: a directory user's sign-in (a search with the
//! service account, then a bind as the user; no directory password is kept), the users and
//! groups a synchronisation reads (nested groups resolved here), and password changes of
//! accounts that live in the directory, verified by a bind.
//!
//! Knows nothing of the store, HTTP or policy. Every operation is bounded by the connection's
//! timeout; a directory that does not answer is an error, never a guess. Values put into
//! filters are escaped (RFC 4515), so a user name cannot change a filter's meaning.

mod conn;
pub mod nesting;
pub mod oidc;
mod settings;

use std::collections::BTreeSet;

pub use conn::Directory;
pub use settings::{Attributes, Kind, Settings, SettingsError};

/// A person read from the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub dn: String,
    /// The Portcullis user name (the `username` attribute).
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub time_zone: Option<String>,
    /// Disabled in the directory (`disabled_filter`).
    pub disabled: bool,
    /// The DNs of every group the person is in, directly or through nested groups.
    pub groups: BTreeSet<String>,
}

/// A group read from the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub dn: String,
    pub name: String,
}

/// Everything a synchronisation needs, read in one pass; nothing is applied from a pass that
/// did not finish.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub users: Vec<Person>,
    pub groups: Vec<Group>,
    /// Entries left out, with why (no user name, a name Portcullis cannot use, a duplicate).
    pub skipped: Vec<String>,
}

/// The answer to a sign-in.
#[derive(Debug)]
pub enum Login {
    /// No entry matches the name (the caller answers as for any unknown user).
    Unknown,
    /// The entry exists but the password is wrong (or the directory refused the bind).
    WrongPassword { dn: String },
    /// The entry is disabled in the directory.
    Disabled { person: Box<Person> },
    /// The bind as the user succeeded: the person, and the groups they are in.
    Ok { person: Box<Person>, groups: Vec<Group> },
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot reach the directory at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the directory at {url} presented a certificate that was refused ({reason}); check ca_file and the URL's host name")]
    Certificate { url: String, reason: String },
    #[error("the directory at {url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("the directory refused the service bind as {dn} ({reason}); check bind_dn and the bind password")]
    ServiceBind { dn: String, reason: String },
    #[error("the directory refused to {what}: {reason}")]
    Refused { what: String, reason: String },
    /// A directory account's vaulted password does not bind: it is not the current one.
    #[error(
        "the directory refused to sign in as {account}: the vaulted password is not the account's current password"
    )]
    WrongPassword { account: String },
    /// The change was made but the new password does not bind.
    #[error("the directory refused to verify the new password of {account}: {reason}")]
    NotVerified { account: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, DirectoryError>;
