//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory, `postgres` listening
//! on 127.0.0.1 at a free high port (and a Unix socket inside the directory), stopped by PID.
//! When the tests run as root, the server runs as the `postgres` system user, since
//! PostgreSQL refuses to run as root.

use std::ffi::CString;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{stop, wait_until};

pub struct PgCluster {
    child: std::sync::Mutex<Child>,
    /// The server's command line settings (kept for a restart).
    settings: Vec<String>,
    port: u16,
    _dir: tempfile::TempDir,
    bin: PathBuf,
    socket_dir: PathBuf,
    uid: Option<(u32, u32)>,
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PORTCULLIS_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql (set PORTCULLIS_PG_BIN). \
             Run the test suite with scripts/test, which installs them."
        )
    })
}

fn postgres_uid() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = CString::new("postgres").expect("static name");
    // SAFETY: getpwnam returns null or a pointer to a static passwd record that we copy from
    // immediately.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "running as root needs the 'postgres' system user (apt-get install postgresql)");
    // SAFETY: pw is non-null and points to a valid passwd record.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
    // SAFETY: c is a valid NUL-terminated path.
    unsafe {
        libc::chown(c.as_ptr(), uid, gid);
    }
}

impl PgCluster {
    /// A cluster for tests: fsync off, fast.
    pub fn start() -> PgCluster {
        Self::start_with(&["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
    }

    /// A cluster with PostgreSQL's durable defaults (fsync on), for benchmarks.
    pub fn start_durable() -> PgCluster {
        Self::start_with(&[])
    }

    /// A cluster that accepts TCP connections only over TLS (its certificate, for `127.0.0.1`,
    /// signed by the CA at [`PgCluster::ca_pem`]); the Unix socket stays open for `psql`.
    pub fn start_tls() -> PgCluster {
        Self::start_inner(&["-c", "fsync=off", "-c", "synchronous_commit=off"], true)
    }

    /// The CA that signed a TLS cluster's certificate (`other-ca.pem` beside it signed nothing
    /// of this cluster's).
    pub fn ca_pem(&self) -> PathBuf {
        self._dir.path().join("tls/ca.pem")
    }

    /// The `postgres` command for this cluster's data directory and port.
    fn command(
        bin: &Path,
        dir: &Path,
        port: u16,
        settings: &[String],
        log: std::fs::File,
        uid: Option<(u32, u32)>,
    ) -> Command {
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(dir)
            .args(settings)
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((u, g)) = uid {
            postgres.uid(u).gid(g);
        }
        postgres
    }

    /// Stops the server (a fast shutdown: what was committed is kept), waits `pause`, and
    /// starts it again on the same port: clients see their connections drop, then come back.
    pub fn restart(&self, pause: Duration) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        stop(&mut child, libc::SIGINT, Duration::from_secs(30));
        std::thread::sleep(pause);
        let dir = self._dir.path();
        let log_path = dir.join(format!("postgres-{}-restarted.log", self.port));
        let log = std::fs::File::create(&log_path).expect("postgres log file");
        if let Some((u, g)) = self.uid {
            chown_tree(&log_path, u, g);
        }
        *child =
            Self::command(&self.bin, dir, self.port, &self.settings, log, self.uid).spawn().expect("start postgres");
        let probe = PgProbe { bin: &self.bin, socket_dir: &self.socket_dir, port: self.port, uid: self.uid };
        let ready = wait_until(Duration::from_secs(30), || probe.psql("postgres", "SELECT 1").is_ok());
        assert!(ready, "postgres did not come back: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
    }

    fn start_with(settings: &[&str]) -> PgCluster {
        Self::start_inner(settings, false)
    }

    fn start_inner(settings: &[&str], tls: bool) -> PgCluster {
        let mut settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("portcullis-pg-").tempdir().expect("temp dir");
        let uid = postgres_uid();
        if let Some((u, g)) = uid {
            chown_tree(dir.path(), u, g);
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((u, g)) = uid {
            initdb.uid(u).gid(g);
        }
        let out = initdb.output().expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        if tls {
            let certs = dir.path().join("tls");
            std::fs::create_dir(&certs).expect("tls dir");
            crate::tls::write_ca_and_server(&certs);
            use std::os::unix::fs::PermissionsExt;
            let key = certs.join("server.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("key mode");
            if let Some((u, g)) = uid {
                for f in ["", "ca.pem", "other-ca.pem", "server.pem", "server.key"] {
                    chown_tree(&certs.join(f), u, g);
                }
            }
            // TCP without TLS is refused; the Unix socket (psql here) stays as it was.
            let hba = data.join("pg_hba.conf");
            let rest = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            std::fs::write(&hba, format!("hostnossl all all 0.0.0.0/0 reject\n{rest}")).expect("pg_hba.conf");
            for (k, v) in [
                ("ssl", "on".to_owned()),
                ("ssl_cert_file", certs.join("server.pem").display().to_string()),
                ("ssl_key_file", key.display().to_string()),
            ] {
                settings.extend(["-c".to_owned(), format!("{k}={v}")]);
            }
        }
        // A free port can be taken by someone else before postgres binds it: try again.
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = crate::free_port();
            let log_path = dir.path().join(format!("postgres-{port}.log"));
            let log = std::fs::File::create(&log_path).expect("postgres log file");
            if let Some((u, g)) = uid {
                chown_tree(&log_path, u, g);
            }
            let mut child = Self::command(&bin, dir.path(), port, &settings, log, uid).spawn().expect("start postgres");
            let socket_dir = dir.path().to_owned();
            let probe = PgProbe { bin: &bin, socket_dir: &socket_dir, port, uid };
            let ready = wait_until(Duration::from_secs(30), || {
                matches!(child.try_wait(), Ok(None))
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && probe.psql("postgres", "SELECT 1").is_ok()
            });
            if ready {
                return PgCluster {
                    child: std::sync::Mutex::new(child),
                    settings,
                    port,
                    socket_dir,
                    _dir: dir,
                    bin,
                    uid,
                };
            }
            stop(&mut child, libc::SIGINT, Duration::from_secs(10));
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("postgres did not become ready on 127.0.0.1; its log:\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\"")).expect("create database");
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL through `psql` (as the cluster owner) and returns its output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        PgProbe { bin: &self.bin, socket_dir: &self.socket_dir, port: self.port, uid: self.uid }.psql(db, sql)
    }

    /// `pg_dump` of one database as SQL text.
    pub fn dump(&self, db: &str) -> String {
        let mut cmd = Command::new(self.bin.join("pg_dump"));
        cmd.args(["-U", "postgres", "-h"]).arg(&self.socket_dir).args(["-p", &self.port.to_string(), db]);
        if let Some((u, g)) = self.uid {
            cmd.uid(u).gid(g);
        }
        let out = cmd.output().expect("run pg_dump");
        assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's "fast shutdown".
        stop(self.child.get_mut().unwrap_or_else(|p| p.into_inner()), libc::SIGINT, Duration::from_secs(10));
    }
}

struct PgProbe<'a> {
    bin: &'a Path,
    socket_dir: &'a Path,
    port: u16,
    uid: Option<(u32, u32)>,
}

impl PgProbe<'_> {
    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
            .arg(self.socket_dir)
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]);
        if let Some((u, g)) = self.uid {
            cmd.uid(u).gid(g);
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}
