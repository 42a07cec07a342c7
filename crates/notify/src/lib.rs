//! Delivery out of Portcullis. `syslog`: every audit event, as RFC 5424 syslog or CEF, over
//! UDP, TCP (RFC 6587 octet counting) or TLS (RFC 5425), read from the audit chain after a
//! cursor the store keeps, so a restart loses nothing. `mail`: the notification outbox
//! delivered (`notifier`) by e-mail over SMTP (`mail`) and signed webhooks (`webhook`), with
//! retries, back-off and failures shown to administrators.
//!
//! Knows the store and the application layer; nothing here changes what the workflow does or
//! how fast: delivery reads what the workflow has committed, after the fact.

pub mod format;
pub mod mail;
pub mod notifier;
pub mod syslog;
pub mod webhook;
