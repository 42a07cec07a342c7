//! The SSH proxy against direct OpenSSH to the same sshd, in the same run: bulk throughput,
//! keystroke latency, footprint, connection setup, recording size, revocation.
//!
//! The fixture is real: a throwaway sshd and Unix user (testkit), the `portcullis` binary
//! built with this harness's profile and started as its own process (so its memory and CPU can
//! be read from /proc), configured through its HTTP API, and the real OpenSSH client (with
//! sshpass). In-process russh clients generate the load the OpenSSH client cannot (hundreds of
//! sessions).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use portcullis_testkit::sshd::{Sshd, UnixUser};
use serde_json::{json, Value};

use crate::Metric;

mod interactive;
mod recorded;
mod telnet;
mod transfer;

use interactive::{footprint, latency, setup, signins};
use recorded::{recording, revocation};
use transfer::{content, scp, throughput};

const TARGET_PW: &str = "Bench-Target-Pw-2024x";
const ALICE_PW: &str = "alice bench password 1";

struct Fixture {
    sshd: Sshd,
    user: UnixUser,
    server: Child,
    dir: tempfile::TempDir,
    api: String,
    ssh_port: u16,
    telnet_port: u16,
    http: reqwest::Client,
    admin: String,
    alice: String,
    account_id: String,
    /// The account on the null target (see `null_target`).
    null_account_id: String,
    /// Alice's registered SSH key (OpenSSH private key).
    alice_key: portcullis_vault::Plaintext,
}

pub(crate) fn binary() -> PathBuf {
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-q", "-p", "portcullis"]);
    if profile == "release" {
        build.arg("--release");
    }
    let status = build.status().expect("cargo build");
    assert!(status.success(), "building portcullis failed");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    target.join(profile).join("portcullis")
}

async fn call(f: &Fixture, method: &str, path: &str, token: &str, body: Value) -> Value {
    let req = f.http.request(method.parse().unwrap(), format!("{}{path}", f.api)).bearer_auth(token);
    let req = if body.is_null() { req } else { req.json(&body) };
    let resp = req.send().await.expect("api");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

async fn fixture() -> Fixture {
    fixture_with(&[]).await
}

/// A fixture whose server has `env` added to its environment.
async fn fixture_with(env: &[(&str, &str)]) -> Fixture {
    let sshd = Sshd::start();
    let user = UnixUser::create(TARGET_PW);
    let dir = tempfile::tempdir().unwrap();
    let port = portcullis_testkit::free_port();
    let ssh_port = portcullis_testkit::free_port();
    let telnet_port = portcullis_testkit::free_port();
    let out = dir.path().join("stdout");
    let server = Command::new(binary())
        .arg("serve")
        .env("PORTCULLIS_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_SERVER_TLS", "false")
        .env("PORTCULLIS_SSH_LISTEN", format!("127.0.0.1:{ssh_port}"))
        .env("PORTCULLIS_TELNET_LISTEN", format!("127.0.0.1:{telnet_port}"))
        .env("PORTCULLIS_RDP_LISTEN", "")
        .env("PORTCULLIS_STORAGE_DATA_DIR", dir.path().join("data"))
        .env("PORTCULLIS_LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .expect("start portcullis");
    let ready = portcullis_testkit::process::wait_until(Duration::from_secs(120), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("Ready: "))
    });
    assert!(ready, "portcullis did not start");
    let text = std::fs::read_to_string(&out).unwrap();
    let secret = text.lines().map(str::trim).find(|l| l.starts_with("pcb_")).expect("bootstrap secret").to_owned();
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    {
        use std::os::unix::fs::PermissionsExt;
        let askpass = dir.path().join("askpass");
        std::fs::write(&askpass, "#!/bin/sh\nprintf '%s\\n' \"$BENCH_PW\"\n").unwrap();
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut f = Fixture {
        sshd,
        user,
        server,
        dir,
        api,
        ssh_port,
        telnet_port,
        http,
        admin: String::new(),
        alice: String::new(),
        account_id: String::new(),
        null_account_id: String::new(),
        alice_key: portcullis_vault::Plaintext::new(Vec::new()),
    };
    let admin_pw = "bench admin password 1";
    let _ = f
        .http
        .post(format!("{}/api/v1/bootstrap", f.api))
        .json(&json!({ "secret": secret, "username": "admin", "password": admin_pw }))
        .send()
        .await
        .unwrap();
    let login = |u: &'static str, p: &'static str| {
        let http = f.http.clone();
        let api = f.api.clone();
        async move {
            let v: Value = http
                .post(format!("{api}/api/v1/auth/login"))
                .json(&json!({ "username": u, "password": p }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["token"].as_str().expect("token").to_owned()
        }
    };
    f.admin = login("admin", admin_pw).await;
    let alice = call(
        &f,
        "POST",
        "/api/v1/users",
        &f.admin,
        json!({ "username": "alice", "display_name": "Alice", "password": ALICE_PW }),
    )
    .await;
    f.alice = login("alice", ALICE_PW).await;
    let asset = call(
        &f,
        "POST",
        "/api/v1/assets",
        &f.admin,
        json!({ "name": "db1", "address": "127.0.0.1", "platform": "linux", "protocols": [{ "protocol": "ssh", "port": f.sshd.port() }] }),
    )
    .await;
    let account =
        call(&f, "POST", "/api/v1/accounts", &f.admin, json!({ "asset_id": asset["id"], "name": f.user.name })).await;
    f.account_id = account["id"].as_str().unwrap().to_owned();
    call(&f, "PUT", &format!("/api/v1/accounts/{}/password", f.account_id), &f.admin, json!({ "password": TARGET_PW }))
        .await;
    let null_port = crate::null_target::start().await;
    let null_asset = call(
        &f,
        "POST",
        "/api/v1/assets",
        &f.admin,
        json!({ "name": "null1", "address": "127.0.0.1", "platform": "linux", "protocols": [{ "protocol": "ssh", "port": null_port }] }),
    )
    .await;
    let null_account =
        call(&f, "POST", "/api/v1/accounts", &f.admin, json!({ "asset_id": null_asset["id"], "name": "bench" })).await;
    f.null_account_id = null_account["id"].as_str().unwrap().to_owned();
    call(
        &f,
        "PUT",
        &format!("/api/v1/accounts/{}/password", f.null_account_id),
        &f.admin,
        json!({ "password": TARGET_PW }),
    )
    .await;
    let pair = portcullis_vault::generate_ssh_key(portcullis_vault::KeyAlgorithm::Ed25519, "bench").expect("key");
    let challenge = call(&f, "GET", "/api/v1/me/ssh-keys/challenge", &f.alice, serde_json::Value::Null).await;
    let signature = portcullis_vault::sign_possession(
        pair.private_openssh.expose(),
        challenge["challenge"].as_str().expect("a challenge").as_bytes(),
    )
    .expect("sign");
    let key = json!({ "name": "bench", "public_key": pair.public_openssh, "signature": signature });
    call(&f, "POST", "/api/v1/me/ssh-keys", &f.alice, key).await;
    f.alice_key = pair.private_openssh;
    let ent = call(
        &f,
        "POST",
        "/api/v1/entitlements",
        &f.admin,
        json!({ "name": "e", "priority": 1, "user_ids": [alice["id"]] }),
    )
    .await;
    call(
        &f,
        "POST",
        "/api/v1/policies",
        &f.admin,
        json!({ "entitlement_id": ent["id"], "name": "ssh", "priority": 1, "access_type": "ssh", "scope": { "accounts": [f.account_id, f.null_account_id] },
                "settings": { "auto_approve": true, "change_password_after_checkin": false, "idle_timeout_minutes": 120, "max_duration_minutes": 480, "simultaneous_access": true } }),
    )
    .await;
    request(&f).await;
    request_for(&f, &f.null_account_id).await;
    f
}

/// Alice requests SSH access (auto-approved); returns the request id.
async fn request(f: &Fixture) -> String {
    request_for(f, &f.account_id).await
}

async fn request_for(f: &Fixture, account_id: &str) -> String {
    let out = call(
        f,
        "POST",
        "/api/v1/requests",
        &f.alice,
        json!({ "accounts": [{ "account_id": account_id, "access_type": "ssh" }] }),
    )
    .await;
    out["outcomes"][0]["request"]["id"].as_str().expect("request").to_owned()
}

impl Drop for Fixture {
    fn drop(&mut self) {
        portcullis_testkit::process::stop(&mut self.server, libc::SIGTERM, Duration::from_secs(10));
        // For profiling: `BENCH_KEEP_LOG=path` keeps the server's log (set RUST_LOG to choose
        // what it holds, e.g. `warn,sqlx::query=debug` for every statement).
        if let Ok(keep) = std::env::var("BENCH_KEEP_LOG") {
            let _ = std::fs::copy(self.dir.path().join("stderr"), keep);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Proxy,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Proxy => "proxy",
        }
    }
}

impl Fixture {
    /// An OpenSSH client program (`ssh` or `scp`) with the password from the askpass
    /// program and the same algorithms on both routes; returns it and the user to name.
    fn client(&self, program: &str, route: Route, user_separator: char) -> (Command, String) {
        let (pw, port, user) = match route {
            Route::Direct => (TARGET_PW, self.sshd.port(), self.user.name.clone()),
            Route::Proxy => (ALICE_PW, self.ssh_port, format!("alice{user_separator}{}@db1", self.user.name)),
        };
        // The password comes from an askpass program, not sshpass: sshpass puts ssh on a pty of
        // its own, whose line discipline would hold single keystrokes back.
        let mut c = Command::new(program);
        c.env("SSH_ASKPASS", self.dir.path().join("askpass")).env("SSH_ASKPASS_REQUIRE", "force").env("BENCH_PW", pw);
        c.args([if program == "scp" { "-P" } else { "-p" }, &port.to_string()]);
        c.args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]);
        c.args(["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"]);
        c.args(["-o", "KexAlgorithms=curve25519-sha256", "-o", "Ciphers=chacha20-poly1305@openssh.com"]);
        (c, user)
    }

    fn ssh(&self, route: Route, extra: &[&str], command: &str) -> Command {
        let (mut c, user) = self.client("ssh", route, '#');
        c.args(extra);
        c.arg(format!("{user}@127.0.0.1")).arg(command);
        c
    }

    /// `scp` (SFTP protocol, OpenSSH's default) from `from` to `to`, where `{remote}` in
    /// either stands for the route's `user@host:`.
    fn scp(&self, route: Route, from: &str, to: &str) -> Command {
        // OpenSSH's scp refuses '#' in user names; the proxy also accepts '+'.
        let (mut c, user) = self.client("scp", route, '+');
        let remote = format!("{user}@127.0.0.1:");
        c.arg("-q").arg(from.replace("{remote}", &remote)).arg(to.replace("{remote}", &remote));
        c
    }

    fn pid(&self) -> u32 {
        self.server.id()
    }

    fn rss_kib(&self) -> u64 {
        proc_status(self.pid(), "VmRSS:")
    }

    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of /proc/pid/stat (12 and 13 after the name).
        let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / hz.max(1.0)
    }

    /// Context switches of all the proxy's threads so far (voluntary + involuntary).
    fn context_switches(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else { return 0 };
        tasks
            .flatten()
            .map(|t| {
                let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    }

    fn recordings_bytes(&self) -> u64 {
        std::fs::read_dir(self.dir.path().join("data/recordings"))
            .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    async fn rss_settled(&self) -> u64 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.rss_kib()
    }
}

/// The parts of the proxy group, in the order they run.
pub const PARTS: &[&str] = &[
    "throughput",
    "content",
    "indexing",
    "archive",
    "scp",
    "latency",
    "telnet",
    "setup",
    "signins",
    "recording",
    "revocation",
    "footprint",
];

/// Runs the proxy group; `only`: the parts to run (empty: all).
pub async fn run(quick: bool, only: &[String]) -> Vec<Metric> {
    eprintln!("proxy: starting sshd and portcullis");
    let f = fixture().await;
    let mut out = Vec::new();
    for part in PARTS {
        if !only.is_empty() && !only.iter().any(|o| o == part) {
            continue;
        }
        eprintln!("proxy: {part}");
        match *part {
            "throughput" => throughput(&f, quick, &mut out).await,
            "content" => content(&f, quick, &mut out).await,
            "archive" => archive(quick, &mut out).await,
            "indexing" => {
                transfer::indexing(
                    &f,
                    fixture_with(&[("PORTCULLIS_STORAGE_SEARCH_INDEX", "false")]).await,
                    quick,
                    &mut out,
                )
                .await
            }
            "scp" => scp(&f, quick, &mut out).await,
            "latency" => latency(&f, quick, &mut out).await,
            "telnet" => telnet::latency(&f, quick, &mut out).await,
            "setup" => setup(&f, quick, &mut out).await,
            "signins" => signins(&f, quick, &mut out).await,
            "recording" => recording(&f, quick, &mut out).await,
            "revocation" => revocation(&f, quick, &mut out).await,
            _ => footprint(&f, quick, &mut out).await,
        }
    }
    out
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Archive upload throughput: a session whose recording is large (base64 text through the
/// proxy), then the time from its end until its copy is in the S3-compatible store (moto, a
/// Python server on this machine, so this is a floor) and verified (read back, compared).
async fn archive(quick: bool, out: &mut Vec<Metric>) {
    let s3 = portcullis_testkit::s3::S3::start();
    s3.create_bucket("bench-recordings");
    let url = s3.url();
    let f = fixture_with(&[
        ("PORTCULLIS_ARCHIVE_URL", url.as_str()),
        ("PORTCULLIS_ARCHIVE_BUCKET", "bench-recordings"),
        ("PORTCULLIS_ARCHIVE_ACCESS_KEY_ID", "bench"),
        ("PORTCULLIS_ARCHIVE_SECRET_ACCESS_KEY", "bench-secret"),
        ("PORTCULLIS_ARCHIVE_ALLOW_HTTP", "true"),
        ("PORTCULLIS_ARCHIVE_REMOVE_LOCAL", "true"),
    ])
    .await;
    let mib: u64 = if quick { 4 } else { 64 };
    let command = format!("head -c {} /dev/urandom | base64 -w 120", mib << 20);
    let status = f.ssh(Route::Proxy, &[], &command).stdout(std::process::Stdio::null()).status().unwrap();
    assert!(status.success(), "the session ran");
    let ended = Instant::now();
    // The local file is removed once its copy is verified and recorded.
    let mut bytes = 0;
    let done = portcullis_testkit::process::wait_until(Duration::from_secs(600), || {
        let now = f.recordings_bytes();
        bytes = bytes.max(now);
        now == 0 && !s3.keys("bench-recordings").is_empty()
    });
    assert!(done, "the recording was archived");
    let secs = ended.elapsed().as_secs_f64();
    out.push(Metric {
        name: format!("archive: a {} MiB recording copied and verified", bytes >> 20),
        value: (bytes as f64 / (1 << 20) as f64) / secs,
        unit: "MiB/s",
        spread: (0.0, 0.0),
        goal: String::new(),
        note:
            "from the session's end (includes the up-to-3 s wait for the next pass) to the verified copy, against moto"
                .into(),
    });
}
