//! The SSH session proxy (R-SES-1 to 11, 14, 15).
//!
//! A client connects with a connection string as its username (`alice#root@db1`, or a launch
//! token), authenticates as the Portcullis user (password, or keyboard-interactive with a
//! one-time code), and is authorized by an available SSH request for that account now. The
//! proxy then logs in to the target with the vaulted credential (the user never sees it),
//! relays the channels the policy allows, records every byte through a bounded queue into an
//! encrypted recording, and ends the session on revocation, expiry, check-in, idleness,
//! termination by an administrator, or recording failure.
//!
//! Whether the user may connect now is decided by `portcullis_app::session_access`, and how
//! (connection policy: target, source address, algorithms, channels, content rules, waits for
//! a person) by `portcullis_app::gateway`, both shared by every protocol proxy. Module map:
//! `host_keys` (the proxy's persistent host keys), `conn` (the per-connection russh handler;
//! `conn::channels` checks each channel against the connection policy, `conn::wait` holds a
//! connection for gateway authentication and four-eyes), `content` (the content rules on a
//! live session), `relay` (the per-channel pump from the target back to the client), `gate`
//! (the bound on connections waiting to sign in, in total and per address), `serve` (accept
//! loop, per-session supervision and finalization).

mod aa;
mod conn;
mod content;
mod files;
mod gate;
mod host_keys;
mod pipeline;
pub mod rdp;
mod relay;
mod serve;
mod telnet;

pub use aa::{check_transport, AaPlugin, AaPlugins, AaTransport};
pub use gate::{Gate, GateLimits, Ticket};
pub use host_keys::{host_key_fingerprints, load_or_create_host_keys, HostKeyError};
pub use rdp::{public_key as rdp_public_key, serve_rdp, RdpConfig};
pub use serve::{serve, ProxyConfig};
pub use telnet::{serve_telnet, PromptPatterns, Prompts, TelnetConfig};
