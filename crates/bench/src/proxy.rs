//! The SSH proxy against direct OpenSSH to the same sshd, in the same run: bulk throughput,
//! keystroke latency, footprint, connection setup, recording size, revocation.
//!
//! The fixture is real: a throwaway sshd and Unix user (testkit), the `portcullis` binary
//! built with this harness's profile and started as its own process (so its memory and CPU can
//! be read from /proc), configured through its HTTP API, and the real OpenSSH client (with
//! sshpass). In-process russh clients generate the load the OpenSSH client cannot (hundreds of
//! sessions).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::sshd::{Sshd, UnixUser};
use serde_json::{json, Value};

use crate::{percentile, summarize, Metric};

const TARGET_PW: &str = "Bench-Target-Pw-2024x";
const ALICE_PW: &str = "alice bench password 1";

struct Fixture {
    sshd: Sshd,
    user: UnixUser,
    server: Child,
    dir: tempfile::TempDir,
    api: String,
    ssh_port: u16,
    http: reqwest::Client,
    admin: String,
    alice: String,
    account_id: String,
    /// The account on the null target (see `null_target`).
    null_account_id: String,
    /// Alice's registered SSH key (OpenSSH private key).
    alice_key: portcullis_vault::Plaintext,
}

fn binary() -> PathBuf {
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
    let sshd = Sshd::start();
    let user = UnixUser::create(TARGET_PW);
    let dir = tempfile::tempdir().unwrap();
    let port = portcullis_testkit::free_port();
    let ssh_port = portcullis_testkit::free_port();
    let out = dir.path().join("stdout");
    let server = Command::new(binary())
        .arg("serve")
        .env("PORTCULLIS_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_SERVER_TLS", "false")
        .env("PORTCULLIS_SSH_LISTEN", format!("127.0.0.1:{ssh_port}"))
        .env("PORTCULLIS_STORAGE_DATA_DIR", dir.path().join("data"))
        .env("PORTCULLIS_LOG_LEVEL", "warn")
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
    call(&f, "POST", "/api/v1/me/ssh-keys", &f.alice, json!({ "name": "bench", "public_key": pair.public_openssh }))
        .await;
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

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Downloads `bytes` through `route`; returns (seconds, bytes received).
fn download(f: &Fixture, route: Route, bytes: u64) -> (f64, u64) {
    let t = Instant::now();
    let mut child = f
        .ssh(route, &[], &format!("head -c {bytes} /dev/zero"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    let _ = child.wait();
    (t.elapsed().as_secs_f64(), got)
}

/// Uploads `bytes` through `route` into `cat > /dev/null`; returns seconds.
fn upload(f: &Fixture, route: Route, bytes: u64) -> f64 {
    let t = Instant::now();
    let mut child = f
        .ssh(route, &[], "cat > /dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if input.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    drop(input);
    let _ = child.wait();
    t.elapsed().as_secs_f64()
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9)
}

async fn throughput(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let bytes: u64 = if quick { 8 << 20 } else { 1 << 30 };
    let runs = if quick { 1 } else { 3 };
    let label = if quick { "8 MiB" } else { "1 GiB" };
    let mut ratios = Vec::new();
    for (kind, op) in [("download", true), ("upload", false)] {
        let mut rates = [Vec::new(), Vec::new()];
        let mut cpu_per_gib = Vec::new();
        for _ in 0..runs {
            for (i, route) in [Route::Direct, Route::Proxy].into_iter().enumerate() {
                let cpu0 = f.cpu_seconds();
                let secs = if op {
                    let (s, got) = download(f, route, bytes);
                    assert_eq!(got, bytes, "{} download lost bytes", route.name());
                    s
                } else {
                    upload(f, route, bytes)
                };
                rates[i].push(mib_s(bytes, secs));
                if route == Route::Proxy {
                    cpu_per_gib.push((f.cpu_seconds() - cpu0) / (bytes as f64 / (1u64 << 30) as f64));
                }
            }
        }
        ratios.push(throughput_metrics(out, &format!("ssh {kind} {label}"), &rates));
        let (cpu, cs) = summarize(cpu_per_gib);
        out.push(Metric {
            name: format!("proxy CPU per GiB relayed ({kind})"),
            value: cpu,
            unit: "s/GiB",
            spread: cs,
            goal: String::new(),
            note: String::new(),
        });
    }
}

/// `scp` of one file both ways, direct and through the proxy.
async fn scp(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    use std::os::unix::fs::PermissionsExt;
    let bytes: u64 = if quick { 8 << 20 } else { 1 << 30 };
    let runs = if quick { 1 } else { 3 };
    // Readable by the target's user: the target and the client share this machine.
    let shared = tempfile::Builder::new().prefix("portcullis-bench-scp").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = shared.path().join("src");
    {
        let mut file = std::fs::File::create(&src).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..bytes >> 20 {
            file.write_all(&chunk).unwrap();
        }
    }
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    let src = src.display().to_string();
    let dst = f.dir.path().join("scp-download").display().to_string();
    for (kind, upload) in [("upload", true), ("download", false)] {
        let mut rates = [Vec::new(), Vec::new()];
        for _ in 0..runs {
            for (i, route) in [Route::Direct, Route::Proxy].into_iter().enumerate() {
                let _ = std::fs::remove_file(&dst);
                let mut cmd = if upload {
                    f.scp(route, &src, "{remote}/dev/null")
                } else {
                    f.scp(route, &format!("{{remote}}{src}"), &dst)
                };
                let t = Instant::now();
                let o = cmd.stdin(Stdio::null()).output().unwrap();
                let secs = t.elapsed().as_secs_f64();
                assert!(o.status.success(), "scp {kind} {}: {}", route.name(), String::from_utf8_lossy(&o.stderr));
                if !upload {
                    let got = std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
                    assert_eq!(got, bytes, "scp {} download lost bytes", route.name());
                }
                rates[i].push(mib_s(bytes, secs));
            }
        }
        let _ = std::fs::remove_file(&dst);
        throughput_metrics(out, &format!("scp {kind} {} MiB", bytes >> 20), &rates);
    }
}

/// The direct and proxied rates (MiB/s samples, direct first) as two metrics; returns the
/// ratio of the medians.
fn throughput_metrics(out: &mut Vec<Metric>, what: &str, rates: &[Vec<f64>; 2]) -> f64 {
    let (direct, ds) = summarize(rates[0].clone());
    let (proxy, ps) = summarize(rates[1].clone());
    out.push(Metric {
        name: format!("{what}, direct"),
        value: direct,
        unit: "MiB/s",
        spread: ds,
        goal: String::new(),
        note: String::new(),
    });
    out.push(Metric {
        name: format!("{what}, through the proxy (recording on)"),
        value: proxy,
        unit: "MiB/s",
        spread: ps,
        goal: "≥ 0.5 × direct".into(),
        note: format!("ratio {:.2}", proxy / direct),
    });
    proxy / direct
}

/// Starts `command` (which prints READY) on a pty through `route`; returns the client, its
/// stdin still in place, and its output read up to READY.
fn until_ready(f: &Fixture, route: Route, command: &str) -> (Child, std::process::ChildStdout) {
    let mut child = f
        .ssh(route, &["-tt"], command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut output = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 1];
    while !seen.ends_with(b"READY") {
        if output.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        seen.push(b[0]);
    }
    (child, output)
}

/// Keystroke echo round trips through a pty running `stty raw -echo; cat`.
fn echo_latency(f: &Fixture, route: Route, n: usize) -> Vec<Duration> {
    let (mut child, mut output) = until_ready(f, route, "stty raw -echo; echo READY; cat");
    let mut input = child.stdin.take().unwrap();
    let mut b = [0u8; 1];
    // Whatever follows READY (its line end) is skipped by the echo loop below.
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let byte = b'a' + (i % 26) as u8;
        let t = Instant::now();
        input.write_all(&[byte]).unwrap();
        input.flush().unwrap();
        loop {
            if output.read(&mut b).unwrap_or(0) == 0 {
                break;
            }
            if b[0] == byte {
                break;
            }
        }
        samples.push(t.elapsed());
    }
    let _ = child.kill();
    let _ = child.wait();
    samples.sort();
    samples
}

/// Opens `n` proxied interactive sessions with in-process russh clients, each running `cat`
/// on a pty; `active`: each sends a byte every 100 ms. Returns the handles (dropping them
/// closes the sessions).
async fn open_sessions(f: &Fixture, n: usize, active: bool) -> Vec<tokio::task::JoinHandle<()>> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(n.max(1));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let port = f.ssh_port;
        let user = format!("alice#{}@db1", f.user.name);
        let sem = sem.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.unwrap();
            let target = portcullis_connect::Target {
                host: "127.0.0.1".into(),
                port,
                host_key: None,
                timeout: Duration::from_secs(60),
            };
            let Ok(client) = portcullis_connect::session_with_password(&target, &user, ALICE_PW).await else { return };
            let handle = client.into_handle();
            let Ok(channel) = handle.channel_open_session().await else { return };
            let _ = channel.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await;
            let _ = channel.exec(true, "cat").await;
            drop(permit);
            let _ = ready.send(()).await;
            let (mut read, write) = channel.split();
            let reader = tokio::spawn(async move { while read.wait().await.is_some() {} });
            loop {
                if active && write.data_bytes(vec![b'.']).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            reader.abort();
            drop(handle);
        }));
    }
    drop(ready_tx);
    for _ in 0..n {
        if tokio::time::timeout(Duration::from_secs(300), ready_rx.recv()).await.ok().flatten().is_none() {
            break;
        }
    }
    tasks
}

async fn latency(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let (n, rounds) = if quick { (20, 1) } else { (300, 5) };
    let background = if quick { 2 } else { 200 };
    for (label, load) in [("1 session", 0usize), ("with background load", background)] {
        let tasks = if load > 0 { open_sessions(f, load, true).await } else { Vec::new() };
        // Rounds alternate the routes, so a noisy moment of the shared machine falls on both.
        let (mut d, mut p) = (Vec::new(), Vec::new());
        let mut switches = Vec::new();
        for _ in 0..rounds {
            d.extend(echo_latency(f, Route::Direct, n));
            let (cs0, cpu0) = (f.context_switches(), f.cpu_seconds());
            p.extend(echo_latency(f, Route::Proxy, n));
            // Includes the session's sign-in and end: an upper bound per keystroke.
            switches.push(((f.context_switches() - cs0) as f64 / n as f64, (f.cpu_seconds() - cpu0) / n as f64));
        }
        d.sort();
        p.sort();
        for t in &tasks {
            t.abort();
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let (d50, d99, p50, p99) =
            (us(percentile(&d, 50.0)), us(percentile(&d, 99.0)), us(percentile(&p, 50.0)), us(percentile(&p, 99.0)));
        let label = if load > 0 { format!("{label} ({load} active sessions)") } else { label.to_owned() };
        out.push(Metric {
            name: format!("keystroke echo p50, {label}: direct"),
            value: d50,
            unit: "µs",
            spread: (us(d[0]), d99),
            goal: String::new(),
            note: String::new(),
        });
        out.push(Metric {
            name: format!("keystroke echo p50, {label}: proxy"),
            value: p50,
            unit: "µs",
            spread: (us(p[0]), p99),
            goal: "added ≤ 100 µs".into(),
            note: if load == 0 {
                format!(
                    "added p50 {:.0} µs, added p99 {:.0} µs (goal ≤ 300 µs); proxy per keystroke, its share of the sign-in included: {:.1} context switches, {:.0} µs CPU",
                    p50 - d50,
                    p99 - d99,
                    summarize(switches.iter().map(|s| s.0).collect()).0,
                    summarize(switches.iter().map(|s| s.1 * 1e6).collect()).0
                )
            } else {
                format!("added p50 {:.0} µs, added p99 {:.0} µs (goal ≤ 300 µs)", p50 - d50, p99 - d99)
            },
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn footprint(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let n = if quick { 5 } else { 1000 };
    let before = f.rss_settled().await;
    let tasks = open_sessions(f, n, false).await;
    let live = call(f, "GET", "/api/v1/sessions?live=true&limit=1000", &f.admin, Value::Null).await;
    let opened = live.as_array().map_or(0, Vec::len);
    let during = f.rss_settled().await;
    for t in &tasks {
        t.abort();
    }
    let per = (during.saturating_sub(before)) as f64 / opened.max(1) as f64;
    out.push(Metric {
        name: format!("proxy memory per idle interactive session ({opened} open)"),
        value: per,
        unit: "KiB",
        spread: (before as f64, during as f64),
        goal: "≤ 256 KiB".into(),
        note: format!("RSS {before} KiB before, {during} KiB with {opened} sessions"),
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
}

async fn setup(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let n = if quick { 3 } else { 40 };
    let mut rates = Vec::new();
    for route in [Route::Direct, Route::Proxy] {
        let mut times = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let o = f.ssh(route, &[], "echo x").stdin(Stdio::null()).output().unwrap();
            assert!(o.status.success(), "{} connect failed: {}", route.name(), String::from_utf8_lossy(&o.stderr));
            times.push(t.elapsed());
        }
        times.sort();
        let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
        rates.push((n as f64 / total, percentile(&times, 50.0)));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    out.push(Metric {
        name: "OpenSSH sessions per second (sequential), direct".into(),
        value: rates[0].0,
        unit: "/s",
        spread: (0.0, 0.0),
        goal: String::new(),
        note: format!("time to first byte p50 {:.1} ms", ms(rates[0].1)),
    });
    out.push(Metric {
        name: "OpenSSH sessions per second (sequential), proxy".into(),
        value: rates[1].0,
        unit: "/s",
        spread: (0.0, 0.0),
        goal: "≥ 0.8 × direct; added TTFB ≤ 15 ms".into(),
        note: format!(
            "ratio {:.2}; time to first byte p50 {:.1} ms (added {:.1} ms)",
            rates[1].0 / rates[0].0,
            ms(rates[1].1),
            ms(rates[1].1) - ms(rates[0].1)
        ),
    });
}

/// How a load client signs in to the proxy.
#[derive(Clone, Copy)]
enum SignIn {
    Password,
    Key,
}

/// The proxy's sign-in capacity: `total` complete sign-ins (client handshake, user
/// authentication, request lookup, session start, the proxy's login to the target, session
/// end) from 16 concurrent in-process clients.
async fn sign_ins(f: &Fixture, how: SignIn, asset: &str, account: &str, total: usize) -> (usize, f64) {
    let t = Instant::now();
    let mut handles = Vec::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let key = std::sync::Arc::new(portcullis_vault::Plaintext::new(f.alice_key.expose().to_vec()));
    for _ in 0..total {
        let port = f.ssh_port;
        let user = format!("alice#{account}@{asset}");
        let sem = sem.clone();
        let key = key.clone();
        handles.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            let target = portcullis_connect::Target {
                host: "127.0.0.1".into(),
                port,
                host_key: None,
                timeout: Duration::from_secs(60),
            };
            let client = match how {
                SignIn::Password => portcullis_connect::session_with_password(&target, &user, ALICE_PW).await,
                SignIn::Key => match portcullis_connect::connect_session(&target).await {
                    Ok(mut c) => {
                        let login = portcullis_connect::Login {
                            username: &user,
                            credential: portcullis_connect::Credential::PrivateKey(&key),
                        };
                        c.authenticate(login).await.map(|()| c)
                    }
                    Err(e) => Err(e),
                },
            };
            match client {
                // Signed in means the proxy accepted the target login too; opening a channel
                // proves the session is usable.
                Ok(client) => {
                    let ok = client.handle().channel_open_session().await.is_ok();
                    client.close().await;
                    ok
                }
                Err(_) => false,
            }
        }));
    }
    let mut ok = 0;
    for h in handles {
        if h.await.unwrap_or(false) {
            ok += 1;
        }
    }
    (ok, ok as f64 / t.elapsed().as_secs_f64())
}

async fn signins(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let cases = [
        ("password, real sshd target", SignIn::Password, "db1", f.user.name.clone()),
        ("public key, real sshd target", SignIn::Key, "db1", f.user.name.clone()),
        ("password, null target", SignIn::Password, "null1", "bench".to_owned()),
        ("public key, null target (the proxy's own capacity)", SignIn::Key, "null1", "bench".to_owned()),
    ];
    for (label, how, asset, account) in cases {
        // The null target is fast: more sign-ins for a stable rate.
        let total = match (quick, asset) {
            (true, _) => 6,
            (false, "null1") => 1000,
            (false, _) => 300,
        };
        let cpu0 = f.cpu_seconds();
        let (ok, rate) = sign_ins(f, how, asset, &account, total).await;
        let cpu_ms = (f.cpu_seconds() - cpu0) * 1000.0 / ok.max(1) as f64;
        out.push(Metric {
            name: format!("proxy sign-ins per second, {label}, {ok}/{total} ok"),
            value: rate,
            unit: "/s",
            spread: (0.0, 0.0),
            goal: "≥ 300/s".into(),
            note: format!("16 concurrent in-process russh clients; proxy CPU {cpu_ms:.1} ms per sign-in"),
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn recording(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    // A busy shell: top refreshing twice a second.
    let secs = if quick { 3 } else { 30 };
    let before = f.recordings_bytes();
    let _ = f
        .ssh(Route::Proxy, &["-tt"], &format!("timeout --foreground {secs} top -b -d 0.5"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_min = (f.recordings_bytes() - before) as f64 * 60.0 / secs as f64 / 1024.0;
    out.push(Metric {
        name: "recording of a busy shell (top -b -d 0.5)".into(),
        value: per_min,
        unit: "KiB/min",
        spread: (0.0, 0.0),
        goal: "well under 50–250 KB/min".into(),
        note: String::new(),
    });

    // Bulk: incompressible data.
    let bytes: u64 = if quick { 8 << 20 } else { 1 << 30 };
    let before = f.recordings_bytes();
    let o = f
        .ssh(Route::Proxy, &[], &format!("head -c {bytes} /dev/urandom"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(o.is_ok());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = f.recordings_bytes() - before;
    out.push(Metric {
        name: format!("recording size per byte of bulk random data ({} MiB)", bytes >> 20),
        value: stored as f64 / bytes as f64,
        unit: "×",
        spread: (0.0, 0.0),
        goal: "≤ 1.05 ×".into(),
        note: format!("{stored} bytes stored"),
    });
    let sessions = call(f, "GET", "/api/v1/sessions?limit=1", &f.admin, Value::Null).await;
    let id = sessions[0]["id"].as_str().unwrap().to_owned();
    let t = Instant::now();
    let v = call(f, "GET", &format!("/api/v1/sessions/{id}/recording/verify"), &f.admin, Value::Null).await;
    let verify_s = t.elapsed().as_secs_f64();
    assert_eq!(v["intact"], true, "{v}");
    let t = Instant::now();
    let mut resp = f
        .http
        .get(format!("{}/api/v1/sessions/{id}/recording?format=events", f.api))
        .bearer_auth(&f.admin)
        .send()
        .await
        .unwrap();
    let mut exported = 0u64;
    while let Ok(Some(c)) = resp.chunk().await {
        exported += c.len() as u64;
    }
    let export_s = t.elapsed().as_secs_f64();
    out.push(Metric {
        name: format!("recording verify, {} MiB session", bytes >> 20),
        value: verify_s,
        unit: "s",
        spread: (0.0, 0.0),
        goal: String::new(),
        note: String::new(),
    });
    out.push(Metric {
        name: format!("recording export (events), {} MiB session", bytes >> 20),
        value: export_s,
        unit: "s",
        spread: (0.0, 0.0),
        goal: String::new(),
        note: format!("{exported} bytes exported"),
    });
}

async fn revocation(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let runs = if quick { 2 } else { 100 };
    let mut times = Vec::new();
    for _ in 0..runs {
        let id = request(f).await;
        let (mut child, mut output) = until_ready(f, Route::Proxy, "echo READY; cat");
        let t = Instant::now();
        call(f, "POST", &format!("/api/v1/requests/{id}/revoke"), &f.admin, json!({})).await;
        let mut sink = Vec::new();
        let _ = output.read_to_end(&mut sink);
        let _ = child.wait();
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    out.push(Metric {
        name: format!("revocation to the client's end of session ({runs} runs)"),
        value: ms(percentile(&times, 50.0)),
        unit: "ms",
        spread: (ms(times[0]), ms(percentile(&times, 99.0))),
        goal: "< 1 s".into(),
        note: format!("p99 {:.1} ms", ms(percentile(&times, 99.0))),
    });
    request(f).await;
}

/// The parts of the proxy group, in the order they run.
pub const PARTS: &[&str] =
    &["throughput", "scp", "latency", "setup", "signins", "recording", "revocation", "footprint"];

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
            "scp" => scp(&f, quick, &mut out).await,
            "latency" => latency(&f, quick, &mut out).await,
            "setup" => setup(&f, quick, &mut out).await,
            "signins" => signins(&f, quick, &mut out).await,
            "recording" => recording(&f, quick, &mut out).await,
            "revocation" => revocation(&f, quick, &mut out).await,
            _ => footprint(&f, quick, &mut out).await,
        }
    }
    out
}
