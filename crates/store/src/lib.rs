//! Persistence for Portcullis: one code path over SQLite (the embedded default) and
//! PostgreSQL (scale-out), through sqlx's `Any` driver.
//!
//! Every state change and its audit event commit in one transaction: a method that changes
//! something takes the acting [`Actor`] and writes the event itself.

mod archive;
mod audit;
mod changes;
mod cluster;
mod commit;
mod db;
mod delivery;
mod directory;
mod error;
mod extras;
mod gateway;
mod groups;
mod inventory;
mod linked;
mod mail_tokens;
mod names;
mod password_resets;
mod policies;
mod queues;
mod recording_views;
mod requests;
mod retention;
mod secrets;
mod sessions;
mod settings;
mod sql;
mod sso;
mod tokens;
mod transitions;
mod users;
mod waits;

pub use audit::{AuditEvent, AuditQuery, ChainReport, NewEvent, Outcome};
pub use changes::CredentialChange;
pub use cluster::{ClusterEvent, NodeRecord, CHANNEL as CLUSTER_CHANNEL};
pub use db::{Backend, Store, StoreOptions};
pub use delivery::{Channel, Delivery, FailedDelivery};
pub use directory::{DirectoryChanges, DirectoryGroup, DirectorySync, DirectoryUser, DIRECTORY_PASSWORD};
pub use error::StoreError;
pub use extras::{Favorite, ReasonCode, SESSION_REQUESTS_SETTING};
pub use gateway::StoredConnectionPolicy;
pub use groups::{Group, GroupKind};
pub use inventory::{Account, AccountPatch, Asset, AssetPatch, NewAccount, NewAsset, ProtocolPort};
pub use mail_tokens::MailToken;
pub use names::Named;
pub use password_resets::PasswordReset;
pub use policies::{rules, Entitlement, EntitlementSpec, Policy, PolicySpec, ResolutionFacts};
pub use queues::{RequestNames, RequestQuery};
pub use recording_views::RecordingView;
pub use requests::{
    state_code, AccessRequest, Approval, ApprovalContext, HistoryEntry, NewRequest, OutboxItem, Transition,
};
pub use secrets::{SealedRow, SecretKey, SecretVersion};
pub use sessions::{NewSession, SessionQuery, SessionRecord, UserKey};
pub use sso::SsoLogin;
pub use tokens::{ApiToken, SessionPrincipal};
pub use users::{LoginState, NewUser, ProxyLogin, User, UserPatch};
pub use waits::WaitRow;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who performs a change, for the audit event written with it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub name: String,
    /// The client address (or `local` for work the server does itself).
    pub source: String,
}

impl Actor {
    pub fn system() -> Self {
        Actor { id: String::new(), name: "system".into(), source: "local".into() }
    }
}

/// Paging for list queries.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Default for Page {
    fn default() -> Self {
        Page { limit: 100, offset: 0 }
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
