//! The SSH proxy with real clients and a real target: OpenSSH `ssh`, `scp`, `sftp` through
//! Portcullis to a real sshd, with the vaulted password injected; recordings; live control.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::sshd::{Sshd, UnixUser};
use serde_json::{json, Value};

use crate::harness::{Db, Server};

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

async fn post(server: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    server.call("POST", path, Some(token), Some(body)).await
}

/// A target with a vaulted password, a user alice with an SSH policy (auto-approved).
pub async fn world(settings: Value) -> World {
    let sshd = Sshd::start();
    let user = UnixUser::create(TARGET_PW);
    let server = Server::start(Db::Sqlite);
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

    fn base(&self, program: &str, password: &str) -> Command {
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

#[tokio::test]
async fn interactive_session_is_recorded_encrypted_and_replayable() {
    let w = world(json!({})).await;
    let request = w.request().await;
    let mut s = Interactive::start(&w);
    live_sessions(&w, 1).await;
    s.send("echo MARK_$((6*7))\n");
    s.send("exit 0\n");
    let (code, out) = s.wait(Duration::from_secs(20)).expect("the session ends after exit");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("MARK_42"), "{out}");

    // The session row: ended, with bytes both ways and the reason.
    live_or_ended(&w).await;
    let (_, list) = w.server.call("GET", &format!("/api/v1/sessions?request_id={request}"), Some(&w.admin), None).await;
    let session = &list[0];
    assert_eq!(session["live"], false, "{list}");
    assert!(session["bytes_up"].as_i64().unwrap() > 10 && session["bytes_down"].as_i64().unwrap() > 10, "{session}");
    let id = session["id"].as_str().unwrap();

    // The recording verifies, exports as asciicast that the real asciinema plays, holds the
    // typed command and its output; the file on disk holds neither in plaintext.
    let (s, v) = w.server.call("GET", &format!("/api/v1/sessions/{id}/recording/verify"), Some(&w.admin), None).await;
    assert_eq!((s, v["intact"].as_bool()), (200, Some(true)), "{v}");
    let cast = w.recording(id, "asciicast").await;
    assert!(cast.lines().next().unwrap().contains("\"version\":2"), "{cast}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.cast");
    std::fs::write(&file, &cast).unwrap();
    // asciinema reads /dev/tty: give it a terminal with script(1).
    let played = Command::new("script")
        .args(["-qec", &format!("asciinema cat {}", file.display()), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("asciinema (scripts/test installs it)");
    assert!(played.status.success(), "{}", text(&played));
    let played = String::from_utf8_lossy(&played.stdout);
    assert!(played.contains("echo MARK_$((6*7))") && played.contains("MARK_42"), "{played}");
    assert!(cast.contains("\"i\""), "input events are exported");
    let raw = std::fs::read(w.server.data_dir().join(format!("recordings/{id}.pcrec"))).unwrap();
    for needle in [&b"MARK_"[..], b"echo", TARGET_PW.as_bytes()] {
        assert!(!raw.windows(needle.len()).any(|x| x == needle), "plaintext in the recording file");
    }

    // Tampering is detected by verify (and by the CLI, exit 1).
    let path = w.server.data_dir().join(format!("recordings/{id}.pcrec"));
    let mut bad = raw.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    let (_, v) = w.server.call("GET", &format!("/api/v1/sessions/{id}/recording/verify"), Some(&w.admin), None).await;
    assert_eq!(v["intact"], false, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("altered"), "{v}");

    // The requester may not replay; the audit log has start, end and the export.
    let (s, _) = w.server.call("GET", &format!("/api/v1/sessions/{id}/recording/verify"), Some(&w.alice), None).await;
    assert_eq!(s, 403);
    for action in ["session.start", "session.end", "session.recording_export"] {
        let (_, e) = w.server.call("GET", &format!("/api/v1/audit/events?action={action}"), Some(&w.admin), None).await;
        assert_eq!(e["events"].as_array().unwrap().len(), 1, "{action}: {e}");
    }
    assert!(!w.server.all_output().contains(TARGET_PW), "the target password is in the server log");
}

#[tokio::test]
async fn revocation_and_termination_end_live_sessions() {
    let w = world(json!({})).await;
    let request = w.request().await;

    // Revoked: the open interactive session ends at once, with the reason.
    let mut s = Interactive::start(&w);
    live_sessions(&w, 1).await;
    s.send("echo ready\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let (code, _) = post(&w.server, &w.admin, &format!("/api/v1/requests/{request}/revoke"), json!({})).await;
    assert_eq!(code, 200);
    let (status, out) = s.wait(Duration::from_secs(5)).expect("the revoked session ends");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "revocation took {took:?}");
    assert_ne!(status, Some(0));
    assert!(out.contains("revoked"), "{out}");
    let mut list = Value::Null;
    for _ in 0..50 {
        list = w.server.call("GET", &format!("/api/v1/sessions?request_id={request}"), Some(&w.admin), None).await.1;
        if list[0]["live"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(list[0]["end_reason"], "the request was revoked", "{list}");

    // A revoked request cannot connect again; the client is told why.
    let o = w.ssh(&[&w.dest(), "true"], b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stderr).contains("revoked"), "{}", text(&o));

    // Terminated by an administrator.
    w.request().await;
    let s = Interactive::start(&w);
    let live = live_sessions(&w, 1).await;
    let id = live[0]["id"].as_str().unwrap();
    let (code, v) =
        post(&w.server, &w.alice, &format!("/api/v1/sessions/{id}/terminate"), json!({ "reason": "nope" })).await;
    assert_eq!(code, 403, "the requester may not terminate: {v}");
    let (code, v) =
        post(&w.server, &w.admin, &format!("/api/v1/sessions/{id}/terminate"), json!({ "reason": "maintenance" }))
            .await;
    // The bootstrap administrator has every role, Security Policy Administrator included.
    assert_eq!(code, 200, "{v}");
    let (_, out) = s.wait(Duration::from_secs(5)).expect("the terminated session ends");
    assert!(out.contains("terminated by admin: maintenance"), "{out}");
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

#[tokio::test]
async fn refusals_say_why() {
    let w = world(json!({})).await;
    // No request yet.
    let o = w.ssh(&[&w.dest(), "true"], b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no SSH access request"), "{}", text(&o));
    // A refused session still has its sign-in audited, before the refusal.
    assert_eq!(ssh_audit_trail(&w).await, ["auth.login", "session.refused"]);
    // Wrong Portcullis password: refused, audited as a failed login.
    w.request().await;
    let o = w.ssh_as("wrong password 999", &[&w.dest(), "true"], b"");
    // sshpass exits 5 when the password prompt comes back.
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let (_, e) = w.server.call("GET", "/api/v1/audit/events?action=auth.login", Some(&w.admin), None).await;
    assert!(e.to_string().contains("wrong password"), "{e}");
    // A garbage connection string and an unknown account.
    let mut c = w.base("ssh", ALICE_PW);
    c.args(["-p", &w.server.ssh_port.to_string(), "garbage@127.0.0.1", "true"]);
    // Refused like a wrong password (sshpass: 5), naming nothing.
    assert_eq!(c.output().unwrap().status.code(), Some(5));
    let o = w.ssh(&["alice#nobody@db1@127.0.0.1", "true"], b"");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no account nobody@db1"), "{}", text(&o));

    // The target's host key changes: refused, alerted, and the client is told.
    let other = portcullis_vault::generate_ssh_key(portcullis_vault::KeyAlgorithm::Ed25519, "x").unwrap();
    let (s, _) = w
        .server
        .call(
            "PATCH",
            &format!("/api/v1/assets/{}", w.asset_id),
            Some(&w.admin),
            Some(json!({ "host_key": other.public_openssh })),
        )
        .await;
    assert_eq!(s, 200);
    let o = w.ssh(&[&w.dest(), "true"], b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stderr).contains("host key"), "{}", text(&o));
    let (_, e) =
        w.server.call("GET", "/api/v1/audit/events?action=asset.host_key_mismatch", Some(&w.admin), None).await;
    assert_eq!(
        e["events"].as_array().map(Vec::len),
        Some(1),
        "{e}\n{}\n{}",
        text(&o),
        w.server
            .all_output()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("host"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The vaulted password no longer works on the target (R-SES-7): a clear message.
    let (s, _) = w
        .server
        .call(
            "PATCH",
            &format!("/api/v1/assets/{}", w.asset_id),
            Some(&w.admin),
            Some(json!({ "host_key": w.sshd.host_key() })),
        )
        .await;
    assert_eq!(s, 200);
    w.user.set_password("Changed-Behind-Our-Back-1");
    let o = w.ssh(&[&w.dest(), "true"], b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused the vaulted credential"), "{}", text(&o));
}

fn proxy_fingerprint(w: &World) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(w.server.data_dir().join("keys/ssh_host_ed25519_key.pub"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn launch_tokens_plink_and_port_forwarding() {
    let w = world(json!({ "port_forwarding": true })).await;
    let request = w.request().await;

    // A launch token: one use, for the requester only, and ready-made commands.
    let (s, b) = post(&w.server, &w.admin, &format!("/api/v1/requests/{request}/launch"), json!({})).await;
    assert_eq!(s, 403, "{b}");
    let (s, launch) = post(&w.server, &w.alice, &format!("/api/v1/requests/{request}/launch"), json!({})).await;
    assert_eq!(s, 200, "{launch}");
    let token = launch["token"].as_str().unwrap();
    assert!(launch["ssh"].as_str().unwrap().contains(&format!("{token}@127.0.0.1")), "{launch}");
    let token_ssh = |cmd: &str| {
        Command::new("ssh")
            .args(["-p", &w.server.ssh_port.to_string(), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg(format!("{token}@127.0.0.1"))
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = token_ssh("echo via-token");
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).trim()), (Some(0), "via-token"), "{}", text(&o));
    let o = token_ssh("echo again");
    assert_eq!(o.status.code(), Some(255), "a launch token works once: {}", text(&o));

    // PuTTY's plink, with the proxy's host key pinned.
    let o = Command::new("plink")
        .args(["-ssh", "-batch", "-P", &w.server.ssh_port.to_string(), "-l", &w.login(), "-pw", ALICE_PW])
        .args(["-hostkey", &proxy_fingerprint(&w), "127.0.0.1", "echo from plink; exit 4"])
        .stdin(Stdio::null())
        .output()
        .expect("plink (scripts/test installs putty-tools)");
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("from plink"), "{}", text(&o));

    // ssh -L, allowed by this policy: the forwarded port reaches the target's sshd.
    let local = portcullis_testkit::free_port();
    let mut fwd = w.base("ssh", ALICE_PW);
    fwd.args(["-N", "-p", &w.server.ssh_port.to_string()]);
    fwd.args(["-L", &format!("127.0.0.1:{local}:127.0.0.1:{}", w.sshd.port()), &w.dest()]);
    let mut child = fwd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let banner = read_banner(local).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner:?}");
    let (_, e) = w.server.call("GET", &format!("/api/v1/sessions?request_id={request}"), Some(&w.admin), None).await;
    assert!(e.as_array().unwrap().len() >= 3, "{e}");
}

/// Connects to a local forwarded port and reads what arrives first (empty if refused).
async fn read_banner(port: u16) -> String {
    use tokio::io::AsyncReadExt;
    for _ in 0..100 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut buf = vec![0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap_or(Ok(0)).unwrap_or(0);
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    String::new()
}

#[tokio::test]
async fn forwarding_refused_by_default_and_the_listener_survives_abuse() {
    let w = world(json!({})).await;
    w.request().await;
    let local = portcullis_testkit::free_port();
    let mut fwd = w.base("ssh", ALICE_PW);
    fwd.args(["-N", "-p", &w.server.ssh_port.to_string()]);
    fwd.args(["-L", &format!("127.0.0.1:{local}:127.0.0.1:{}", w.sshd.port()), &w.dest()]);
    let mut child = fwd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let banner = read_banner(local).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(banner, "", "port forwarding must be refused unless the policy allows it");

    // Random bytes and half-open connections on the listener: closed, no harm.
    use tokio::io::AsyncWriteExt;
    for i in 0..20 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", w.server.ssh_port)).await.unwrap();
        let _ = s.write_all(&random(1000 + i * 500)).await;
        drop(s);
    }
    let idle: Vec<_> = futures_util::future::join_all(
        (0..50).map(|_| tokio::net::TcpStream::connect(("127.0.0.1", w.server.ssh_port))),
    )
    .await;

    // A client opening far more channels than allowed: the extra ones are refused.
    let target = portcullis_connect::Target {
        host: "127.0.0.1".into(),
        port: w.server.ssh_port,
        host_key: None,
        timeout: Duration::from_secs(10),
    };
    let client = portcullis_connect::session_with_password(&target, &w.login(), ALICE_PW).await.unwrap();
    let handle = client.into_handle();
    let mut opened = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match handle.channel_open_session().await {
            Ok(c) => opened.push(c),
            Err(_) => refused += 1,
        }
    }
    assert_eq!((opened.len(), refused), (32, 168));
    drop(opened);
    drop(handle);
    drop(idle);

    // Still serving.
    let o = w.ssh(&[&w.dest(), "echo alive"], b"");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "alive", "{}", text(&o));
}

#[tokio::test]
async fn ssh_audit_finds_no_weak_algorithms() {
    let w = world(json!({})).await;
    let tool = std::env::var("PORTCULLIS_SSH_AUDIT")
        .unwrap_or_else(|_| format!("{}/../../.venv/bin/ssh-audit", env!("CARGO_MANIFEST_DIR")));
    let o = Command::new(&tool)
        .args(["-p", &w.server.ssh_port.to_string(), "127.0.0.1"])
        .output()
        .expect("ssh-audit (scripts/test installs it into .venv)");
    let report = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "ssh-audit reported warnings or failures:\n{report}");
    assert!(report.contains("ssh-ed25519"), "{report}");
}

#[tokio::test]
async fn public_keys_and_one_time_codes() {
    let w = world(json!({})).await;
    w.request().await;
    let dir = tempfile::tempdir().unwrap();

    // A key registered with the CLI signs alice in; an unregistered one does not.
    let key = portcullis_vault::generate_ssh_key(portcullis_vault::KeyAlgorithm::Ed25519, "alice@laptop").unwrap();
    let priv_path = dir.path().join("id");
    std::fs::write(&priv_path, key.private_openssh.expose()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&priv_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.path().join("id.pub"), &key.public_openssh).unwrap();
    let cfg = dir.path().join("cli.json").display().to_string();
    let o = w.server.cli(
        &["login", "--server", &w.server.url, "--username", "alice"],
        &[("PORTCULLIS_CLI_CONFIG", &cfg), ("PORTCULLIS_PASSWORD", ALICE_PW)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let pubfile = dir.path().join("id.pub").display().to_string();
    let o =
        w.server.cli(&["ssh-key", "add", "--name", "laptop", "--file", &pubfile], &[("PORTCULLIS_CLI_CONFIG", &cfg)]);
    assert!(o.status.success(), "{}", text(&o));
    let o =
        w.server.cli(&["ssh-key", "add", "--name", "again", "--file", &pubfile], &[("PORTCULLIS_CLI_CONFIG", &cfg)]);
    assert_eq!(o.status.code(), Some(1), "a key registers once: {}", text(&o));
    let with_key = |path: &std::path::Path| {
        Command::new("ssh")
            .args(["-p", &w.server.ssh_port.to_string(), "-i"])
            .arg(path)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg(w.dest())
            .arg("echo by-key")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = with_key(&priv_path);
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).trim()), (Some(0), "by-key"), "{}", text(&o));
    let other = portcullis_vault::generate_ssh_key(portcullis_vault::KeyAlgorithm::Ed25519, "x").unwrap();
    let other_path = dir.path().join("other");
    std::fs::write(&other_path, other.private_openssh.expose()).unwrap();
    std::fs::set_permissions(&other_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(with_key(&other_path).status.code(), Some(255));

    // Enrolled in one-time codes: password alone is not enough; keyboard-interactive asks
    // for both.
    let (_, e) = w.server.call("POST", "/api/v1/me/totp", Some(&w.alice), None).await;
    let secret = portcullis_core::totp::decode_secret(e["secret"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let code = |step: i64| {
        format!("{:06}", portcullis_core::totp::code_at_step(&secret, portcullis_core::totp::step_of(now) + step))
    };
    let (s, b) =
        w.server.call("POST", "/api/v1/me/totp/confirm", Some(&w.alice), Some(json!({ "code": code(0) }))).await;
    assert_eq!(s, 204, "{b}");
    let o = w.ssh(&[&w.dest(), "true"], b"");
    assert_ne!(o.status.code(), Some(0), "password alone must not do: {}", text(&o));
    let askpass = dir.path().join("askpass");
    std::fs::write(
        &askpass,
        format!("#!/bin/sh\ncase \"$1\" in *code*) echo {};; *) echo '{ALICE_PW}';; esac\n", code(1)),
    )
    .unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new("ssh")
        .args(["-p", &w.server.ssh_port.to_string(), "-o", "PreferredAuthentications=keyboard-interactive"])
        .args(["-o", "PubkeyAuthentication=no", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR"])
        .arg(w.dest())
        .arg("echo with-code")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).trim()), (Some(0), "with-code"), "{}", text(&o));
}

#[tokio::test]
async fn key_rotation_rewraps_recording_keys() {
    let mut w = world(json!({})).await;
    w.request().await;
    let o = w.ssh(&[&w.dest(), "echo rotated-session"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let id = live_or_ended(&w).await;
    let store = w.server.store().await;
    let before = store.secret_kek_ids().await.unwrap();
    store.close().await;
    assert_eq!(before.len(), 1);

    w.server.stop();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["vault", "rotate-key"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORTCULLIS_STORAGE_DATA_DIR", w.server.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = w.server.store().await;
    let after = store.secret_kek_ids().await.unwrap();
    store.close().await;
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "credentials and recording keys are all under the new key");
    // Without the old key at all, the recording still opens.
    for e in std::fs::read_dir(w.server.data_dir().join("keys")).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("vault.kek.old.") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    w.server.restart();
    let (s, v) = w.server.call("GET", &format!("/api/v1/sessions/{id}/recording/verify"), Some(&w.admin), None).await;
    assert_eq!((s, v["intact"].as_bool()), (200, Some(true)), "{v}");
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

#[tokio::test]
async fn idle_sessions_end_after_the_policy_timeout() {
    let w = world(json!({ "idle_timeout_minutes": 1 })).await;
    w.request().await;
    let mut s = Interactive::start(&w);
    live_sessions(&w, 1).await;
    s.send("echo before-idle\n");
    let t0 = Instant::now();
    let (_, out) = s.wait(Duration::from_secs(90)).expect("the idle session ends");
    assert!(t0.elapsed() >= Duration::from_secs(55), "ended too early: {:?}", t0.elapsed());
    assert!(out.contains("no activity for 1 minutes"), "{out}");
}

#[tokio::test]
async fn downloads_end_at_eof_and_memory_is_given_back() {
    let w = world(json!({})).await;
    w.request().await;
    // Bulk downloads end promptly at EOF, every time, with every byte.
    for _ in 0..3 {
        let o = w.ssh(&[&w.dest(), "head -c 33554432 /dev/zero"], b"");
        assert_eq!((o.status.code(), o.stdout.len()), (Some(0), 32 << 20), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let warm = w.server.rss_kib();

    // A client that never reads what it asked for: the proxy's memory stays bounded (flow
    // control reaches back to the target).
    let target = portcullis_connect::Target {
        host: "127.0.0.1".into(),
        port: w.server.ssh_port,
        host_key: None,
        timeout: Duration::from_secs(10),
    };
    let client = portcullis_connect::session_with_password(&target, &w.login(), ALICE_PW).await.unwrap();
    let handle = client.into_handle();
    let channel = handle.channel_open_session().await.unwrap();
    channel.exec(true, "cat /dev/zero").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stalled = w.server.rss_kib();
    assert!(
        stalled < warm + 64 * 1024,
        "memory grew from {warm} KiB to {stalled} KiB with a client that does not read"
    );
    drop(channel);
    let _ = handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    drop(handle);
    let mut gone = false;
    for _ in 0..50 {
        let (_, live) = w.server.call("GET", "/api/v1/sessions?live=true", Some(&w.admin), None).await;
        if live.as_array().is_some_and(Vec::is_empty) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the stalled client's session did not end when it disconnected");

    // Many sessions opened and closed: memory comes back.
    for i in 0..40 {
        let o = w.ssh(&[&w.dest(), &format!("echo {i}")], b"");
        assert_eq!(o.status.code(), Some(0));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = w.server.rss_kib();
    assert!(after < warm + 32 * 1024, "memory grew from {warm} KiB to {after} KiB over 40 sessions");
    let (_, live) = w.server.call("GET", "/api/v1/sessions?live=true", Some(&w.admin), None).await;
    assert_eq!(live.as_array().map(Vec::len), Some(0), "{live}");
}

#[tokio::test]
async fn cli_sessions_and_recordings() {
    let w = world(json!({})).await;
    let request = w.request().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("admin.json").display().to_string();
    let o = w.server.cli(
        &["login", "--server", &w.server.url, "--username", "admin"],
        &[("PORTCULLIS_CLI_CONFIG", &cfg), ("PORTCULLIS_PASSWORD", crate::harness::ADMIN_PASSWORD)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let cli = |args: &[&str]| w.server.cli(args, &[("PORTCULLIS_CLI_CONFIG", &cfg)]);

    let mut s = Interactive::start(&w);
    live_sessions(&w, 1).await;
    s.send("echo CLI_MARK\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let o = cli(&["session", "list", "--live", "--request", &request, "-o", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let id = v[0]["id"].as_str().unwrap().to_owned();
    let o = cli(&["session", "terminate", &id, "--reason", "end of test"]);
    assert!(o.status.success(), "{}", text(&o));
    let (_, out) = s.wait(Duration::from_secs(5)).expect("terminated");
    assert!(out.contains("end of test"), "{out}");
    live_or_ended(&w).await;

    let o = cli(&["recording", "verify", &id]);
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o),
        w.server
            .all_output()
            .lines()
            .filter(|l| l.contains("record") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let cast = dir.path().join("s.cast");
    let o = cli(&["recording", "export", &id, "--file", &cast.display().to_string()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(&cast).unwrap().contains("CLI_MARK"));
    let o = cli(&["recording", "play", &id, "--speed", "1000"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("CLI_MARK"), "{}", text(&o));
    let o = cli(&["recording", "export", &id, "--format", "events"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"kind\":\"end\""), "{}", text(&o));

    // Truncated: verify exits 1 and says so.
    let path = w.server.data_dir().join(format!("recordings/{id}.pcrec"));
    let mut raw = std::fs::read(&path).unwrap();
    let n = raw.len();
    raw.truncate(n - 10);
    std::fs::write(&path, raw).unwrap();
    let o = cli(&["recording", "verify", &id]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not sealed"), "{}", text(&o));

    // The requester gets a launch command from the CLI.
    let cfg2 = dir.path().join("alice.json").display().to_string();
    let o = w.server.cli(
        &["login", "--server", &w.server.url, "--username", "alice"],
        &[("PORTCULLIS_CLI_CONFIG", &cfg2), ("PORTCULLIS_PASSWORD", ALICE_PW)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = w.server.cli(&["request", "launch", &request], &[("PORTCULLIS_CLI_CONFIG", &cfg2)]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ssh -p"), "{}", text(&o));
}

#[tokio::test]
async fn user_supplied_account_mode_asks_for_the_target_password() {
    let w = world(json!({ "account_mode": "user_supplied" })).await;
    w.request().await;
    let dir = tempfile::tempdir().unwrap();
    // Answers Portcullis's prompt with alice's password and the target prompt with the
    // target account's own password (which this user knows; nothing is vaulted for it).
    let askpass = dir.path().join("askpass");
    let script =
        |target: &str| format!("#!/bin/sh\ncase \"$1\" in *Target*) echo '{target}';; *) echo '{ALICE_PW}';; esac\n");
    use std::os::unix::fs::PermissionsExt;
    let run = |target: &str| {
        std::fs::write(&askpass, script(target)).unwrap();
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
        Command::new("ssh")
            .args(["-p", &w.server.ssh_port.to_string(), "-o", "PubkeyAuthentication=no"])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg(w.dest())
            .arg("echo as-myself")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run(TARGET_PW);
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).trim()), (Some(0), "as-myself"), "{}", text(&o));
    let o = run("not-the-target-password");
    assert_eq!(o.status.code(), Some(255), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused"), "{}", text(&o));
    assert!(!w.server.all_output().contains(TARGET_PW), "the typed target password reached the log");
}
