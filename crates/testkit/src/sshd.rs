//! A real OpenSSH `sshd` for tests: its own configuration and host keys in a temporary
//! directory, listening on 127.0.0.1 at a free high port, stopped by PID. And throwaway local
//! Unix users (created with `useradd`, removed with `userdel -r`), which need root.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{stop, wait_until};

pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl Sshd {
    pub fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "OpenSSH server not installed (apt-get install openssh-server); run the suite with scripts/test"
        );
        // sshd insists on its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::Builder::new().prefix("portcullis-sshd-").tempdir().expect("temp dir");
        for kind in ["ed25519", "rsa"] {
            let key = dir.path().join(format!("host_{kind}"));
            let mut cmd = Command::new("ssh-keygen");
            cmd.args(["-q", "-t", kind, "-N", "", "-f"]).arg(&key);
            if kind == "rsa" {
                cmd.args(["-b", "3072"]);
            }
            run(&mut cmd);
        }
        let mut last = String::new();
        for _ in 0..3 {
            let port = crate::free_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nHostKey {d}/host_rsa\nPidFile {d}/sshd.pid\n\
                     PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n\
                     PermitRootLogin no\nStrictModes no\nAuthorizedKeysFile .ssh/authorized_keys\nSubsystem sftp internal-sftp\n\
                     AllowTcpForwarding yes\nX11Forwarding no\nPrintMotd no\nLogLevel VERBOSE\nMaxStartups 100:30:200\nMaxSessions 100\n",
                    d = dir.path().display()
                ),
            )
            .expect("write sshd_config");
            let log = std::fs::File::create(dir.path().join("sshd.log")).expect("log file");
            let mut child = Command::new(sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd");
            if wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(None)) && TcpStream::connect(("127.0.0.1", port)).is_ok()
            }) {
                return Sshd { child, port, dir };
            }
            stop(&mut child, libc::SIGTERM, Duration::from_secs(5));
            last = std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
        }
        panic!("sshd did not start; its log:\n{last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's Ed25519 host public key, OpenSSH format.
    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_ed25519.pub")).expect("host key").trim().to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
    }
}

/// A throwaway local user with a password, removed (with its home) on drop.
pub struct UnixUser {
    pub name: String,
    pub home: PathBuf,
}

impl UnixUser {
    pub fn create(password: &str) -> UnixUser {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "creating throwaway Unix users needs root");
        let name = format!("pct{}", &crate::random_suffix()[..8]);
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", &name]));
        let user = UnixUser { home: PathBuf::from(format!("/home/{name}")), name };
        user.set_password(password);
        user
    }

    pub fn set_password(&self, password: &str) {
        let mut child =
            Command::new("chpasswd").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("chpasswd");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(format!("{}:{password}\n", self.name).as_bytes()).expect("write");
        let out = child.wait_with_output().expect("chpasswd");
        assert!(out.status.success(), "chpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for UnixUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-KILL", "-u", &self.name]).output();
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

/// Runs `command` on the server with the real `ssh` client, authenticating with `password`
/// through `sshpass`. Returns (exit status, stdout, stderr).
pub fn ssh_with_password(port: u16, user: &str, password: &str, command: &str) -> (Option<i32>, String, String) {
    let out = Command::new("sshpass")
        .args(["-p", password, "ssh", "-p", &port.to_string()])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no"])
        .args(["-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR"])
        .arg(format!("{user}@127.0.0.1"))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run sshpass/ssh");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
