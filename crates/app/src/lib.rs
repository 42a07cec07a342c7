//! The application layer of Portcullis: the use cases every front end calls (the HTTP API,
//! the SSH proxy, and the web UI, Telnet and RDP proxies to come) and the state they share.
//!
//! A front end turns its input into a use-case call and the result into its own output; it
//! holds no business rule. Who may do what is decided in [`access`], whichever front end
//! asks. This crate knows nothing of HTTP, JSON DTOs or SSH.

pub mod access;
pub mod approval_mail;
pub mod archive;
pub mod audit;
pub mod audit_anchor;
pub mod auth;
pub mod cluster;
pub mod credentials;
pub mod directory;
pub mod directory_accounts;
pub mod error;
pub mod follow;
pub mod gateway;
pub mod me;
pub mod metrics;
pub mod names;
pub mod outbox;
pub mod password_reset;
pub mod policies;
pub mod policy_cache;
pub mod recording_views;
pub mod requests;
pub mod retention;
pub mod scheduler;
pub mod screens;
pub mod search;
pub mod search_tail;
pub mod services;
pub mod session_access;
pub mod sessions;
pub mod sso;
pub mod state;
pub mod throttle;
pub mod totp_secret;
pub mod waiting;

pub use error::{AppError, AppResult, ErrorKind};
pub use metrics::Metrics;
pub use sessions::{LiveSession, LiveSessions};
pub use state::{App, AuthSettings, ChangeSettings, Clock, HostKeyInfo, SystemClock};
