//! Test harness shared by the integration tests: real components started on 127.0.0.1 at
//! high ports and stopped by PID when the handle drops.

pub mod oidc;
pub mod pg;
pub mod process;
pub mod pty;
pub mod rdp;
pub mod rsyslog;
pub mod s3;
pub mod slapd;
pub mod sshd;
pub mod telnetd;
pub mod tls;

use std::net::TcpListener;

/// A free TCP port on 127.0.0.1 (the OS picks one from its ephemeral range).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local addr").port()
}

/// 16 random hex characters (from the kernel), for unique throwaway names.
pub fn random_suffix() -> String {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").unwrap_or_default();
    String::from_utf8_lossy(&bytes).chars().filter(char::is_ascii_hexdigit).take(16).collect()
}
