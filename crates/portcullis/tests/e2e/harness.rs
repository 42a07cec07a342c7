//! Starts the real `portcullis` binary on 127.0.0.1 at a free port with its own data
//! directory, and talks to it over HTTP. The process is stopped by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use portcullis_testkit::pg::PgCluster;
use portcullis_testkit::process::{stop, wait_until};
use serde_json::{json, Value};

pub const ADMIN_PASSWORD: &str = "admin password 0001";

#[derive(Clone)]
pub enum Db {
    Sqlite,
    Postgres(Arc<PgCluster>, String),
}

impl Db {
    /// A fresh PostgreSQL database on a new throwaway cluster.
    pub fn postgres() -> Db {
        let pg = PgCluster::start();
        let url = pg.create_database("portcullis");
        Db::Postgres(Arc::new(pg), url)
    }

    /// PostgreSQL reached over TLS only, the server verified against its CA (as nodes reach a
    /// database across the network).
    pub fn postgres_tls() -> Db {
        let pg = PgCluster::start_tls();
        let url = pg.create_database("portcullis");
        let url = format!("{url}?sslmode=verify-full&sslrootcert={}", pg.ca_pem().display());
        Db::Postgres(Arc::new(pg), url)
    }
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls: bool,
    pub db: Db,
    child: Option<Child>,
    pub url: String,
    /// The SSH proxy's port.
    pub ssh_port: u16,
    /// The Telnet proxy's port.
    pub telnet_port: u16,
    /// The RDP proxy's port.
    pub rdp_port: u16,
    pub bootstrap_secret: Option<String>,
    pub fingerprint: Option<String>,
    extra_env: Vec<(String, String)>,
    run: u32,
}

impl Server {
    pub fn start(db: Db) -> Server {
        Self::start_with(db, false, &[])
    }

    pub fn start_with(db: Db, tls: bool, env: &[(&str, &str)]) -> Server {
        let port = portcullis_testkit::free_port();
        Self::start_on(db, tls, port, env)
    }

    /// As [`Server::start_with`], with the environment made from the server's port (for
    /// settings that name the server's own URL).
    pub fn start_env_for_port(db: Db, env: impl Fn(u16) -> Vec<(String, String)>) -> Server {
        let port = portcullis_testkit::free_port();
        let env = env(port);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::start_on(db, false, port, &env)
    }

    fn start_on(db: Db, tls: bool, port: u16, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::Builder::new().prefix("portcullis-e2e-").tempdir().unwrap();
        let ssh_port = portcullis_testkit::free_port();
        let mut s = Server {
            dir,
            port,
            ssh_port,
            telnet_port: portcullis_testkit::free_port(),
            rdp_port: portcullis_testkit::free_port(),
            tls,
            db,
            child: None,
            url: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            bootstrap_secret: None,
            fingerprint: None,
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            run: 0,
        };
        s.spawn();
        s
    }

    /// Another node sharing this one's database (PostgreSQL) and keys, with its own ports and
    /// data directory.
    pub fn peer_with(&self, env: &[(&str, &str)]) -> Server {
        use std::os::unix::fs::DirBuilderExt;
        assert!(matches!(self.db, Db::Postgres(..)), "nodes share a PostgreSQL database");
        let dir = tempfile::Builder::new().prefix("portcullis-e2e-").tempdir().unwrap();
        let keys = dir.path().join("data/keys");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&keys).unwrap();
        for e in std::fs::read_dir(self.data_dir().join("keys")).unwrap().flatten() {
            std::fs::copy(e.path(), keys.join(e.file_name())).unwrap();
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut s = Server::unstarted(dir, self.db.clone(), self.tls, env);
        s.spawn();
        s
    }

    /// A node started on this one's database with a data directory of its own keys (not this
    /// one's), expected to refuse: its exit status and standard error.
    pub fn peer_with_other_keys(&self) -> (std::process::ExitStatus, String) {
        let dir = tempfile::Builder::new().prefix("portcullis-e2e-").tempdir().unwrap();
        let mut s = Server::unstarted(dir, self.db.clone(), self.tls, self.extra_env.clone());
        s.start_expecting_failure()
    }

    /// A server on `dir`'s data, not started yet (new ports).
    fn unstarted(dir: tempfile::TempDir, db: Db, tls: bool, extra_env: Vec<(String, String)>) -> Server {
        let port = portcullis_testkit::free_port();
        Server {
            dir,
            port,
            ssh_port: portcullis_testkit::free_port(),
            telnet_port: portcullis_testkit::free_port(),
            rdp_port: portcullis_testkit::free_port(),
            tls,
            db,
            child: None,
            url: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            bootstrap_secret: None,
            fingerprint: None,
            extra_env,
            run: 0,
        }
    }

    /// A new server restored from `backup` by `portcullis restore`: its own data directory,
    /// given this server's vault key (as an operator would, apart from the backup); on
    /// PostgreSQL a new, empty database in the same cluster. Also returns the restore's output.
    pub fn restored(&self, backup: &std::path::Path) -> (Server, std::process::Output) {
        use std::os::unix::fs::DirBuilderExt;
        let dir = tempfile::Builder::new().prefix("portcullis-e2e-").tempdir().unwrap();
        let keys = dir.path().join("data/keys");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&keys).unwrap();
        std::fs::copy(self.data_dir().join("keys/vault.kek"), keys.join("vault.kek")).unwrap();
        let db = match &self.db {
            Db::Sqlite => Db::Sqlite,
            Db::Postgres(pg, _) => {
                let url = pg.create_database(&format!("restored{}", portcullis_testkit::random_suffix()));
                Db::Postgres(pg.clone(), url)
            }
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg("restore")
            .arg("--from")
            .arg(backup)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORTCULLIS_STORAGE_DATA_DIR", dir.path().join("data"))
            .stdin(Stdio::null());
        if let Db::Postgres(_, url) = &db {
            cmd.env("PORTCULLIS_STORAGE_DATABASE_URL", url);
        }
        let out = cmd.output().unwrap();
        let mut s = Server::unstarted(dir, db, self.tls, self.extra_env.clone());
        if out.status.success() {
            s.spawn();
        }
        (s, out)
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.dir.path().join(format!("stdout.{}", self.run))
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join(format!("stderr.{}", self.run))
    }

    /// Everything the server wrote, over all its runs.
    pub fn all_output(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.run {
            for name in [format!("stdout.{i}"), format!("stderr.{i}")] {
                out += &std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            }
        }
        out
    }

    fn spawn(&mut self) {
        for attempt in 0.. {
            self.run += 1;
            let stdout = std::fs::File::create(self.stdout_path()).unwrap();
            let stderr = std::fs::File::create(self.stderr_path()).unwrap();
            let mut cmd = self.serve_command();
            cmd.stdout(stdout).stderr(stderr);
            let mut child = cmd.spawn().expect("spawn portcullis serve");
            let out_path = self.stdout_path();
            let ready = wait_until(Duration::from_secs(60), || {
                matches!(child.try_wait(), Ok(Some(_)))
                    || (std::fs::read_to_string(&out_path).is_ok_and(|s| s.contains("Ready: "))
                        && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok())
            }) && matches!(child.try_wait(), Ok(None));
            self.child = Some(child);
            if ready {
                break;
            }
            // A free port picked earlier can be taken by another process meanwhile: on a first
            // start, pick new ones and try again.
            let taken =
                std::fs::read_to_string(self.stderr_path()).unwrap_or_default().contains("Address already in use");
            assert!(taken && attempt < 3 && self.run == attempt + 1, "server did not start:\n{}", self.all_output());
            self.port = portcullis_testkit::free_port();
            self.ssh_port = portcullis_testkit::free_port();
            self.telnet_port = portcullis_testkit::free_port();
            self.rdp_port = portcullis_testkit::free_port();
            self.url = format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.port);
        }
        let out_path = self.stdout_path();
        let out = std::fs::read_to_string(&out_path).unwrap();
        self.fingerprint =
            out.lines().find_map(|l| l.strip_prefix("TLS certificate SHA-256 fingerprint: ")).map(str::to_owned);
        if let Some(secret) = out.lines().map(str::trim).find(|l| l.starts_with("pcb_")) {
            self.bootstrap_secret = Some(secret.to_owned());
        }
    }

    /// This server's node name: from its data directory's, so it survives restarts.
    pub fn node_name(&self) -> String {
        let dir = self.dir.path().file_name().unwrap_or_default().to_string_lossy().to_ascii_lowercase();
        dir.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect()
    }

    fn serve_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORTCULLIS_SERVER_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("PORTCULLIS_SSH_LISTEN", format!("127.0.0.1:{}", self.ssh_port))
            .env("PORTCULLIS_TELNET_LISTEN", format!("127.0.0.1:{}", self.telnet_port))
            .env("PORTCULLIS_RDP_LISTEN", format!("127.0.0.1:{}", self.rdp_port))
            .env("PORTCULLIS_SERVER_TLS", if self.tls { "true" } else { "false" })
            .env("PORTCULLIS_STORAGE_DATA_DIR", self.data_dir())
            .env("PORTCULLIS_LOG_FORMAT", "json")
            .env("PORTCULLIS_LOG_LEVEL", "debug,sqlx=info,hyper=info,h2=info,rustls=info")
            // Each server its own node name (several share a PostgreSQL database in some tests).
            .env("PORTCULLIS_NODE_NAME", self.node_name())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        if let Db::Postgres(_, url) = &self.db {
            cmd.env("PORTCULLIS_STORAGE_DATABASE_URL", url);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Stops the server and starts it once more, expecting it to refuse to start; returns its
    /// exit status and standard error.
    pub fn start_expecting_failure(&mut self) -> (std::process::ExitStatus, String) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, libc::SIGTERM, Duration::from_secs(10));
        }
        let mut child = self.serve_command().stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let exited = wait_until(Duration::from_secs(30), || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = child.kill();
            panic!("the server started although it should have refused");
        }
        let out = child.wait_with_output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, libc::SIGTERM, Duration::from_secs(10));
        }
    }

    /// Stops the server, waits, and starts it again.
    pub fn restart_after(&mut self, pause: Duration) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, libc::SIGTERM, Duration::from_secs(10));
        }
        std::thread::sleep(pause);
        self.spawn();
    }

    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, libc::SIGTERM, Duration::from_secs(10));
        }
        self.spawn();
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder().danger_accept_invalid_certs(true).timeout(Duration::from_secs(60)).build().unwrap()
    }

    /// Calls the API; returns the status and the JSON body (Null when empty).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client().request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    /// Bootstraps `admin` (all roles) and returns a session token.
    pub async fn bootstrap(&self) -> String {
        let secret = self.bootstrap_secret.clone().expect("bootstrap secret printed");
        let (s, b) = self
            .call(
                "POST",
                "/api/v1/bootstrap",
                None,
                Some(json!({ "secret": secret, "username": "admin", "password": ADMIN_PASSWORD })),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        self.login("admin", ADMIN_PASSWORD).await
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let (s, b) = self
            .call("POST", "/api/v1/auth/login", None, Some(json!({ "username": username, "password": password })))
            .await;
        assert_eq!(s, 200, "login {username}: {b}");
        b["token"].as_str().unwrap().to_owned()
    }

    /// Confirms an asset's changed address, ports or host key as a second Asset Administrator
    /// (`asset-admin-2`, created on first use), as the vault requires before it sends the
    /// asset's credentials again.
    pub async fn confirm_identity(&self, admin: &str, asset_id: &str) {
        const NAME: &str = "asset-admin-2";
        let login = json!({ "username": NAME, "password": format!("{NAME} password 1234") });
        let token = match self.call("POST", "/api/v1/auth/login", None, Some(login)).await {
            (200, b) => b["token"].as_str().unwrap().to_owned(),
            _ => self.user_with_roles(admin, NAME, &["asset_admin"]).await.1,
        };
        let path = format!("/api/v1/assets/{asset_id}/confirm-identity");
        let (s, v) = self.call("POST", &path, Some(&token), None).await;
        assert_eq!(s, 200, "confirming the asset's identity: {v}");
    }

    /// Confirms entitlements and policies (`("entitlement" | "policy", id)`) as a second
    /// Security Policy Administrator (`policy-admin-2`, created on first use), as a change by
    /// the requester needs before it grants them anything.
    pub async fn confirm_rules(&self, admin: &str, rules: &[(&str, &str)]) {
        const NAME: &str = "policy-admin-2";
        let login = json!({ "username": NAME, "password": format!("{NAME} password 1234") });
        let token = match self.call("POST", "/api/v1/auth/login", None, Some(login)).await {
            (200, b) => b["token"].as_str().unwrap().to_owned(),
            _ => self.user_with_roles(admin, NAME, &["security_policy_admin"]).await.1,
        };
        for (kind, id) in rules {
            let collection = if *kind == "policy" { "policies" } else { "entitlements" };
            let path = format!("/api/v1/{collection}/{id}/confirm");
            let (s, v) = self.call("POST", &path, Some(&token), None).await;
            assert_eq!(s, 200, "confirming {kind} {id}: {v}");
        }
    }

    /// Creates a user with the given roles and returns (id, session token).
    pub async fn user_with_roles(&self, admin: &str, username: &str, roles: &[&str]) -> (String, String) {
        let password = format!("{username} password 1234");
        let (s, b) = self
            .call(
                "POST",
                "/api/v1/users",
                Some(admin),
                Some(json!({ "username": username, "password": password, "roles": roles })),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let token = self.login(username, &password).await;
        (b["id"].as_str().unwrap().to_owned(), token)
    }

    /// Opens the server's own database through the store, for assertions.
    pub async fn store(&self) -> portcullis_store::Store {
        let key = std::fs::read(self.data_dir().join("keys/audit.key")).unwrap();
        let url = match &self.db {
            Db::Sqlite => format!("sqlite://{}", self.data_dir().join("portcullis.db").display()),
            Db::Postgres(_, url) => url.clone(),
        };
        portcullis_store::Store::open(
            &portcullis_store::StoreOptions { url, sqlite_synchronous: "full".into(), max_connections: 2 },
            &key,
        )
        .await
        .unwrap()
    }

    /// Runs SQL on the server's database directly (an attacker with database access).
    pub fn sql(&self, sql: &str) {
        match &self.db {
            Db::Postgres(pg, _) => {
                pg.psql("portcullis", sql).unwrap();
            }
            Db::Sqlite => {
                let ok = Command::new("sqlite3").arg(self.data_dir().join("portcullis.db")).arg(sql).status().unwrap();
                assert!(ok.success(), "sqlite3: {sql}");
            }
        }
    }

    /// Runs a server-side command (`reset-link`, …) on this server's data and database.
    pub fn local(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORTCULLIS_STORAGE_DATA_DIR", self.data_dir())
            .env("PORTCULLIS_NOTIFICATIONS_WEB_URL", &self.url)
            .stdin(Stdio::null());
        if let Db::Postgres(_, url) = &self.db {
            cmd.env("PORTCULLIS_STORAGE_DATABASE_URL", url);
        }
        cmd.output().unwrap()
    }

    /// Runs the CLI with its own saved-session file in the server's directory.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORTCULLIS_CLI_CONFIG", self.dir.path().join("cli.json"))
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    pub fn pg_dump(&self) -> Option<String> {
        match &self.db {
            Db::Postgres(pg, _) => Some(pg.dump("portcullis")),
            Db::Sqlite => None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, libc::SIGTERM, Duration::from_secs(10));
        }
    }
}

pub fn read_all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}
