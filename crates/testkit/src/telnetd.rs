//! A real Telnet server for tests: GNU inetutils `telnetd` (which logs users in with the
//! system's `login`), started per connection by a real `inetutils-inetd` of its own, listening
//! on 127.0.0.1 at a free high port, stopped by PID.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{stop, wait_until};

pub struct Telnetd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Telnetd {
    pub fn start() -> Telnetd {
        for program in ["/usr/sbin/telnetd", "/usr/sbin/inetutils-inetd"] {
            assert!(
                Path::new(program).exists(),
                "{program} is not installed (apt-get install inetutils-telnetd inetutils-inetd); run the suite with scripts/test"
            );
        }
        let dir = tempfile::Builder::new().prefix("portcullis-telnetd-").tempdir().expect("temp dir");
        let mut last = String::new();
        for _ in 0..3 {
            let port = crate::free_port();
            let config = dir.path().join("inetd.conf");
            // -h: no host details before the login prompt.
            std::fs::write(&config, format!("127.0.0.1:{port} stream tcp nowait root /usr/sbin/telnetd telnetd -h\n"))
                .expect("write inetd.conf");
            let log = std::fs::File::create(dir.path().join("inetd.log")).expect("log file");
            let mut child = Command::new("/usr/sbin/inetutils-inetd")
                .arg("-d")
                .arg(format!("--pidfile={}", dir.path().join("inetd.pid").display()))
                .args(["-R", "10000"])
                .arg(&config)
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("start inetutils-inetd");
            if wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(None)) && TcpStream::connect(("127.0.0.1", port)).is_ok()
            }) {
                return Telnetd { child, port, dir };
            }
            stop(&mut child, libc::SIGTERM, Duration::from_secs(5));
            last = std::fs::read_to_string(dir.path().join("inetd.log")).unwrap_or_default();
        }
        panic!("inetd (telnetd) did not start; its log:\n{last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// inetd's log: each connection it took.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("inetd.log")).unwrap_or_default()
    }
}

impl Drop for Telnetd {
    fn drop(&mut self) {
        stop(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
    }
}
