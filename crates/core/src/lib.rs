//! The pure domain core of Portcullis.
//!
//! Everything here is deterministic: no I/O, no clock reads, no randomness. Callers pass the
//! current time and any random material in. That makes every rule testable at any instant.

pub mod audit;
pub mod connection;
pub mod content;
pub mod directory;
pub mod gateway;
pub mod inventory;
pub mod policy;
pub mod request;
pub mod role;
pub mod schedule;
pub mod totp;
pub mod validate;

pub use validate::ValidationError;
