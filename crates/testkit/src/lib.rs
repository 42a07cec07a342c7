//! Test harness shared by the integration tests: real components started on 127.0.0.1 at
//! high ports and stopped by PID when the handle drops.

pub mod pg;
pub mod process;

use std::net::TcpListener;

/// A free TCP port on 127.0.0.1 (the OS picks one from its ephemeral range).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local addr").port()
}
