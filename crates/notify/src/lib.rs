//! Delivery out of Portcullis. `syslog`: every audit event, as RFC 5424 syslog or CEF, over
//! UDP, TCP (RFC 6587 octet counting) or TLS (RFC 5425), read from the audit chain after a
//! cursor the store keeps, so a restart loses nothing. `mail`: the notification outbox
//! delivered (`notifier`) by e-mail over SMTP (`mail`) and signed webhooks (`webhook`), with
//! retries, back-off and failures shown to administrators.
//!
//! `inbound`: approvers' replies to approval mails (APPROVE / DISAPPROVE), taken by
//! Portcullis's own SMTP listener and read by `reply`.
//!
//! Knows the store and the application layer. Delivery never slows the workflow: it reads what
//! the workflow has committed, after the fact. A counted reply decides through the same use
//! case as the API.

pub mod format;
pub mod inbound;
pub mod mail;
pub mod notifier;
pub mod reply;
pub mod syslog;
pub mod webhook;
