//! Platform connectors (R-VAULT-4): they verify that a vaulted credential logs in to its
//! target, and change it there. A connector never decides anything about policy and never
//! stores anything: the caller (the API's credential service) chooses the credential to log
//! in with and the new one, and commits the new version only when the connector returns `Ok`,
//! which it does only after it has logged in with the new credential.
//!
//! Secrets arrive as [`Plaintext`] borrowed from the vault and are handed to the SSH library
//! only for the authentication or the change itself; no error, log line or `Debug` output of
//! this crate contains one.
//!
//! [`Connector`] is the trait each platform implements; [`for_platform`] picks one. Linux and
//! Unix use [`UnixSsh`]; Windows (WinRM) and network devices will be further implementations.

mod ssh;
mod unix;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use portcullis_vault::Plaintext;
pub use ssh::{
    check_algorithms, connect, connect_session, connect_session_via, session_with_password, tcp, HostKeyCheck, Leg,
    SshClient,
};
pub use unix::UnixSsh;

/// Where a target is and which host key it must present.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// The pinned host public key (OpenSSH format). `None`: accept the first one and report it
    /// (trust on first use), so the caller can pin it.
    pub host_key: Option<String>,
    /// Limit for connecting, and for every step after it.
    pub timeout: Duration,
}

/// A credential to log in with.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    Password(&'a Plaintext),
    /// An unencrypted OpenSSH private key.
    PrivateKey(&'a Plaintext),
}

/// Who logs in, with what.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub username: &'a str,
    pub credential: Credential<'a>,
}

/// A new SSH key for an account: the private half to verify with, the public half to install.
#[derive(Debug, Clone, Copy)]
pub struct NewKey<'a> {
    pub private_openssh: &'a Plaintext,
    pub public_openssh: &'a str,
}

/// What a connector saw of the target: its host key, for pinning on first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub host_key: String,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConnectError {
    #[error("the target cannot be reached: {0}")]
    Unreachable(String),
    #[error("the target did not answer within {0} seconds")]
    Timeout(u64),
    #[error("the target presented host key {presented}, not the pinned {expected}")]
    HostKeyMismatch { expected: String, presented: String },
    #[error("the target refused the credential for {0}")]
    AuthenticationFailed(String),
    #[error("the target refused the change: {0}")]
    Refused(String),
    /// The change was made but the new credential does not log in.
    #[error("the new credential did not log in after the change ({0})")]
    VerificationFailed(String),
    #[error("the stored credential is unusable: {0}")]
    BadCredential(String),
    #[error("SSH protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ConnectError {
    /// A stable code for API errors and audit details.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::Unreachable(_) => "target_unreachable",
            ConnectError::Timeout(_) => "target_timeout",
            ConnectError::HostKeyMismatch { .. } => "host_key_mismatch",
            ConnectError::AuthenticationFailed(_) => "target_authentication_failed",
            ConnectError::Refused(_) => "target_refused_change",
            ConnectError::VerificationFailed(_) => "verification_failed",
            ConnectError::BadCredential(_) => "bad_credential",
            ConnectError::Protocol(_) => "target_protocol_error",
            ConnectError::Unsupported(_) => "unsupported_platform",
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a platform's credentials are verified and changed.
///
/// `via` is the login used to make a change: the account's own current credential, or a
/// service account of the asset that may change other accounts' credentials. Every change
/// method logs in with the new credential before it returns `Ok`; on any error the caller
/// keeps the old version.
pub trait Connector: Send + Sync {
    /// Logs in with `login` and logs out.
    fn check<'a>(&'a self, target: &'a Target, login: Login<'a>) -> BoxFuture<'a, Result<Seen, ConnectError>>;

    /// Sets `account`'s password to `new_password`, then logs in with it.
    fn change_password<'a>(
        &'a self,
        target: &'a Target,
        account: &'a str,
        via: Login<'a>,
        new_password: &'a Plaintext,
    ) -> BoxFuture<'a, Result<Seen, ConnectError>>;

    /// Authorizes `new_key` for `account`, logs in with it, and only then removes
    /// `old_public` (if any). If the new key does not log in, it is removed again.
    fn replace_key<'a>(
        &'a self,
        target: &'a Target,
        account: &'a str,
        via: Login<'a>,
        old_public: Option<&'a str>,
        new_key: NewKey<'a>,
    ) -> BoxFuture<'a, Result<Seen, ConnectError>>;
}

/// The connector for a platform (`linux`, `unix`, …), if there is one.
pub fn for_platform(platform: &str) -> Option<&'static dyn Connector> {
    static UNIX: UnixSsh = UnixSsh;
    match platform {
        "linux" | "unix" => Some(&UNIX),
        _ => None,
    }
}
