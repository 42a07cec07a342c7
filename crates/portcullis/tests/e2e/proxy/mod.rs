//! The SSH proxy with real clients and a real target: OpenSSH `ssh`, `scp`, `sftp` through
//! Portcullis to a real sshd, with the vaulted password injected; recordings; live control.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::sshd::{Sshd, UnixUser};
use serde_json::{json, Value};

use crate::harness::{Db, Server};

mod aa;
mod access;
mod archive;
mod backup;
mod flood;
mod governance;
mod lifecycle;
mod nodes;
mod people;
mod rdp;
mod rdp_nla;
mod retention;
mod search;
mod sessions;
mod telnet;
mod waiting;

const TARGET_PW: &str = "Plant-Target-Pw-5150x";
const ALICE_PW: &str = "alice password 12345";

pub struct World {
    pub server: Server,
    pub sshd: Sshd,
    pub user: UnixUser,
    pub admin: String,
    pub alice: String,
    pub account_id: String,
    pub asset_id: String,
}

/// The world's user as an account on a new asset `asset` serving `protocol` at `port`, with
/// its vaulted password, and a policy giving alice that access type (auto-approved). Returns
/// the account id.
async fn protocol_account(w: &World, asset: &str, protocol: &str, port: u16) -> String {
    protocol_account_with(w, asset, protocol, port, json!({})).await
}

/// As [`protocol_account`], with more policy settings (e.g. the account mode).
async fn protocol_account_with(w: &World, asset: &str, protocol: &str, port: u16, more: Value) -> String {
    let body = json!({ "name": asset, "address": "127.0.0.1", "platform": "linux", "protocols": [{ "protocol": protocol, "port": port }] });
    let (s, asset) = post(&w.server, &w.admin, "/api/v1/assets", body).await;
    assert_eq!(s, 201, "{asset}");
    let (s, account) =
        post(&w.server, &w.admin, "/api/v1/accounts", json!({ "asset_id": asset["id"], "name": w.user.name })).await;
    assert_eq!(s, 201, "{account}");
    let id = account["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/accounts/{id}/password");
    let (s, _) = w.server.call("PUT", &path, Some(&w.admin), Some(json!({ "password": TARGET_PW }))).await;
    assert_eq!(s, 201);
    let (_, users) = w.server.call("GET", "/api/v1/users", Some(&w.admin), None).await;
    let alice = users.as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap()["id"].clone();
    let body = json!({ "name": format!("{protocol} access"), "priority": 2, "user_ids": [alice] });
    let (_, ent) = post(&w.server, &w.admin, "/api/v1/entitlements", body).await;
    let mut settings = json!({ "auto_approve": true, "change_password_after_checkin": false });
    for (k, v) in more.as_object().into_iter().flatten() {
        settings[k] = v.clone();
    }
    let body = json!({ "entitlement_id": ent["id"], "name": protocol, "priority": 1, "access_type": protocol, "scope": { "accounts": [id] }, "settings": settings });
    let (s, p) = post(&w.server, &w.admin, "/api/v1/policies", body).await;
    assert_eq!(s, 201, "{p}");
    id
}

async fn post(server: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    server.call("POST", path, Some(token), Some(body)).await
}

/// A target with a vaulted password, a user alice with an SSH policy (auto-approved).
pub async fn world(settings: Value) -> World {
    world_on(Db::Sqlite, settings).await
}

/// As [`world`], on the given store.
pub async fn world_on(db: Db, settings: Value) -> World {
    world_with(db, settings, &[]).await
}

/// As [`world_on`], with the server's environment extended.
pub async fn world_with(db: Db, settings: Value, env: &[(&str, &str)]) -> World {
    let sshd = Sshd::start();
    let user = UnixUser::create(TARGET_PW);
    let server = Server::start_with(db, false, env);
    let admin = server.bootstrap().await;
    let (s, alice_user) = post(
        &server,
        &admin,
        "/api/v1/users",
        json!({ "username": "alice", "display_name": "Alice", "password": ALICE_PW }),
    )
    .await;
    assert_eq!(s, 201, "{alice_user}");
    let alice = server.login("alice", ALICE_PW).await;
    let (s, asset) = post(
        &server,
        &admin,
        "/api/v1/assets",
        json!({ "name": "db1", "address": "127.0.0.1", "platform": "linux", "protocols": [{ "protocol": "ssh", "port": sshd.port() }] }),
    )
    .await;
    assert_eq!(s, 201, "{asset}");
    let (_, account) =
        post(&server, &admin, "/api/v1/accounts", json!({ "asset_id": asset["id"], "name": user.name })).await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let (s, _) = server
        .call(
            "PUT",
            &format!("/api/v1/accounts/{account_id}/password"),
            Some(&admin),
            Some(json!({ "password": TARGET_PW })),
        )
        .await;
    assert_eq!(s, 201);
    let (_, ent) = post(
        &server,
        &admin,
        "/api/v1/entitlements",
        json!({ "name": "e", "priority": 1, "user_ids": [alice_user["id"]] }),
    )
    .await;
    let mut all = json!({ "auto_approve": true, "change_password_after_checkin": false });
    for (k, v) in settings.as_object().unwrap() {
        all[k] = v.clone();
    }
    let (s, p) = post(
        &server,
        &admin,
        "/api/v1/policies",
        json!({ "entitlement_id": ent["id"], "name": "ssh", "priority": 1, "access_type": "ssh", "scope": { "accounts": [account_id] }, "settings": all }),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    World { asset_id: asset["id"].as_str().unwrap().to_owned(), server, sshd, user, admin, alice, account_id }
}

impl World {
    /// Changes the first connection policy (`ssh-default` unless moved): `edit` gets it as
    /// the API shows it, minus what a client does not send back.
    pub async fn edit_default_policy(&self, edit: impl FnOnce(&mut Value)) -> (u16, Value) {
        let (_, list) = self.server.call("GET", "/api/v1/connection-policies", Some(&self.admin), None).await;
        let mut p = list[0].clone();
        for k in ["id", "position", "group_names", "created_at", "updated_at"] {
            p.as_object_mut().unwrap().remove(k);
        }
        edit(&mut p);
        let path = format!("/api/v1/connection-policies/{}", list[0]["id"].as_str().unwrap());
        self.server.call("PUT", &path, Some(&self.admin), Some(p)).await
    }

    /// A session's recording exported by the API (as an administrator) in `format`.
    pub async fn recording(&self, id: &str, format: &str) -> String {
        let url = format!("{}/api/v1/sessions/{id}/recording?format={format}", self.server.url);
        let resp = self.server.client().get(url).bearer_auth(&self.admin).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// Alice requests SSH access (auto-approved, available now); returns the request id.
    pub async fn request(&self) -> String {
        let (s, out) = post(
            &self.server,
            &self.alice,
            "/api/v1/requests",
            json!({ "accounts": [{ "account_id": self.account_id, "access_type": "ssh" }] }),
        )
        .await;
        assert!(s == 200 || s == 201, "{out}");
        let r = &out["outcomes"][0]["request"];
        assert_eq!(r["state"], "available", "{out}");
        r["id"].as_str().unwrap().to_owned()
    }

    pub fn login(&self) -> String {
        format!("alice#{}@db1", self.user.name)
    }

    pub fn base(&self, program: &str, password: &str) -> Command {
        let mut c = Command::new("sshpass");
        c.args(["-p", password, program]);
        c.args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]);
        c.args(["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"]);
        c.args(["-o", "ConnectTimeout=10"]);
        c
    }

    /// `ssh` through the proxy; `stdin` is written then closed.
    pub fn ssh(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.ssh_as(ALICE_PW, args, stdin)
    }

    pub fn ssh_as(&self, password: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut c = self.base("ssh", password);
        c.args(["-p", &self.server.ssh_port.to_string()]);
        c.args(args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("ssh");
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("ssh output");
        let _ = writer.join();
        out
    }

    pub fn dest(&self) -> String {
        format!("{}@127.0.0.1", self.login())
    }

    /// The form scp accepts (`+` instead of `#`).
    pub fn scp_dest(&self) -> String {
        format!("alice+{}@db1@127.0.0.1", self.user.name)
    }

    pub fn scp(&self, args: &[&str]) -> Output {
        let mut c = self.base("scp", ALICE_PW);
        c.args(["-P", &self.server.ssh_port.to_string()]);
        c.args(args);
        c.stdin(Stdio::null()).output().expect("scp")
    }

    pub fn sftp(&self, batch: &str) -> Output {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("batch");
        std::fs::write(&file, batch).unwrap();
        let mut c = self.base("sftp", ALICE_PW);
        // -b turns on batch mode, which would forbid the password prompt.
        c.args(["-o", "BatchMode=no", "-P", &self.server.ssh_port.to_string(), "-b"]).arg(&file).arg(self.dest());
        c.stdin(Stdio::null()).output().expect("sftp")
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sha(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

fn random(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

#[tokio::test]
async fn exec_upload_download_with_exit_codes() {
    let w = world(json!({})).await;
    w.request().await;
    let dest = w.dest();

    let o = w.ssh(&[&dest, "echo hello from $(whoami); exit 3"], b"");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("hello from {}", w.user.name));
    // The sign-in is audited (written with the session start), before the session's start.
    let mut trail = Vec::new();
    for _ in 0..50 {
        // The session's end is written once the connection has closed, just after the client exits.
        trail = ssh_audit_trail(&w).await;
        if trail.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(trail, ["auth.login", "session.start", "session.end"]);

    // Upload 8 MiB through stdin, check it on the target.
    let data = random(8 << 20);
    let o = w.ssh(&[&dest, "cat > upload.bin && sha256sum upload.bin"], &data);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha(&data)), "{}", text(&o));

    // Download 16 MiB: intact, and the session ends at EOF.
    let file = random(16 << 20);
    std::fs::write(w.user.home.join("down.bin"), &file).unwrap();
    let o = w.ssh(&[&dest, "cat down.bin"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sha(&o.stdout), sha(&file));

    // stderr and signals' exit codes pass through.
    let o = w.ssh(&[&dest, "echo oops >&2; kill -TERM $$"], b"");
    assert!(String::from_utf8_lossy(&o.stderr).contains("oops"), "{}", text(&o));
    assert_ne!(o.status.code(), Some(0));
}

#[tokio::test]
async fn scp_and_sftp_both_ways() {
    let w = world(json!({})).await;
    w.request().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.bin");
    let data = random(3 << 20);
    std::fs::write(&local, &data).unwrap();
    let remote = |name: &str| format!("{}:{name}", w.scp_dest());

    // scp over the SFTP protocol (OpenSSH's default) and the legacy protocol (-O).
    for (flag, name) in [(None, "scp-sftp.bin"), (Some("-O"), "scp-legacy.bin")] {
        let mut args: Vec<String> = flag.map(|f| vec![f.to_owned()]).unwrap_or_default();
        args.push(local.display().to_string());
        args.push(remote(name));
        let o = w.scp(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(sha(&std::fs::read(w.user.home.join(name)).unwrap()), sha(&data));
        let back = dir.path().join(format!("back-{name}"));
        let mut args: Vec<String> = flag.map(|f| vec![f.to_owned()]).unwrap_or_default();
        args.push(remote(name));
        args.push(back.display().to_string());
        let o = w.scp(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(sha(&std::fs::read(&back).unwrap()), sha(&data));
    }

    // sftp in batch mode: put, ls, get, rm.
    let got = dir.path().join("got.bin");
    let batch =
        format!("put {} via-sftp.bin\nls -l\nget via-sftp.bin {}\nrm scp-sftp.bin\n", local.display(), got.display());
    let o = w.sftp(&batch);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("via-sftp.bin"), "{}", text(&o));
    assert_eq!(sha(&std::fs::read(&got).unwrap()), sha(&data));
    assert!(!w.user.home.join("scp-sftp.bin").exists());

    // The recordings itemize the file operations: paths, sizes, directions.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, sessions) = w.server.call("GET", "/api/v1/sessions", Some(&w.admin), None).await;
    let mut ops = Vec::new();
    for s in sessions.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let events = w.recording(id, "events").await;
        for line in events.lines() {
            let e: Value = serde_json::from_str(line).unwrap();
            if e["kind"] == "file" {
                ops.push(e["data"].clone());
            }
        }
    }
    let size = data.len() as u64;
    let has = |pred: &dyn Fn(&Value) -> bool| ops.iter().any(pred);
    assert!(
        has(&|o| o["protocol"] == "sftp"
            && o["op"] == "close"
            && o["direction"] == "upload"
            && o["bytes"] == size
            && o["path"].as_str().is_some_and(|p| p.ends_with("via-sftp.bin"))),
        "{ops:#?}"
    );
    assert!(
        has(&|o| o["protocol"] == "sftp" && o["op"] == "close" && o["direction"] == "download" && o["bytes"] == size),
        "{ops:#?}"
    );
    assert!(has(&|o| o["protocol"] == "sftp" && o["op"] == "remove"), "{ops:#?}");
    assert!(has(&|o| o["protocol"] == "scp" && o["direction"] == "upload" && o["bytes"] == size), "{ops:#?}");
    assert!(has(&|o| o["protocol"] == "scp" && o["direction"] == "download" && o["bytes"] == size), "{ops:#?}");
}

/// Waits until `n` sessions of the world are live; returns them.
async fn live_sessions(w: &World, n: usize) -> Value {
    for _ in 0..100 {
        let (_, v) = w.server.call("GET", "/api/v1/sessions?live=true", Some(&w.admin), None).await;
        if v.as_array().is_some_and(|a| a.len() >= n) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no live session");
}

/// An interactive `ssh -tt` whose stdin stays open until dropped.
struct Interactive {
    child: std::process::Child,
    input: Option<std::process::ChildStdin>,
}

impl Interactive {
    fn start(w: &World) -> Interactive {
        let mut c = w.base("ssh", ALICE_PW);
        c.args(["-tt", "-p", &w.server.ssh_port.to_string(), &w.dest()]);
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let input = child.stdin.take();
        Interactive { child, input }
    }

    fn send(&mut self, text: &str) {
        let i = self.input.as_mut().unwrap();
        i.write_all(text.as_bytes()).unwrap();
        i.flush().unwrap();
    }

    /// Waits for the client to exit (at most `limit`); returns (exit code, stdout+stderr).
    fn wait(mut self, limit: Duration) -> Option<(Option<i32>, String)> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                drop(self.input.take());
                let out = self.child.wait_with_output().unwrap();
                return Some((
                    out.status.code(),
                    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        None
    }
}

/// The SSH sign-in and session events of the audit trail, oldest first.
async fn ssh_audit_trail(w: &World) -> Vec<String> {
    let (_, page) = w.server.call("GET", "/api/v1/audit/events?limit=1000", Some(&w.admin), None).await;
    let mut events: Vec<(i64, String)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let action = e["action"].as_str().unwrap_or("");
            (action == "auth.login" && e["details"]["via"] == "ssh") || action.starts_with("session.")
        })
        .map(|e| (e["seq"].as_i64().unwrap(), e["action"].as_str().unwrap().to_owned()))
        .collect();
    events.sort();
    events.into_iter().map(|(_, a)| a).collect()
}

fn proxy_fingerprint(w: &World) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(w.server.data_dir().join("keys/ssh_host_ed25519_key.pub"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_owned()
}

/// The id of the world's only session, once it has ended.
async fn live_or_ended(w: &World) -> String {
    for _ in 0..100 {
        let (_, v) = w.server.call("GET", "/api/v1/sessions", Some(&w.admin), None).await;
        if v[0]["live"] == false {
            return v[0]["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the session did not end");
}
