//! The Telnet proxy with the real `telnet` client on a pseudo-terminal and a real `telnetd`
//! (GNU inetutils, started by a real inetd) logging in with the system's `login`: sign-in at
//! the proxy's prompt, the connection policy, injection of the vaulted password into the
//! target's prompts, recording, revocation, content rules, termination.

use std::process::Command;
use std::time::Duration;

use portcullis_testkit::pty::Pty;
use portcullis_testkit::telnetd::Telnetd;
use serde_json::{json, Value};

use super::{post, world_on, World, ALICE_PW, TARGET_PW};
use crate::harness::Db;

const T: Duration = Duration::from_secs(20);

/// The world's user as a Telnet account on asset `tn1` (the real telnetd), with its vaulted
/// password, and a policy giving alice Telnet access (auto-approved). Returns the account id.
pub(super) async fn telnet_account(w: &World, telnetd: &Telnetd) -> String {
    super::protocol_account(w, "tn1", "telnet", telnetd.port()).await
}

/// Alice requests Telnet access to the account; the request's id.
pub(super) async fn request_telnet(w: &World, account: &str) -> String {
    let body = json!({ "accounts": [{ "account_id": account, "access_type": "telnet" }] });
    let (s, out) = post(&w.server, &w.alice, "/api/v1/requests", body).await;
    assert!(s == 200 || s == 201, "{out}");
    let r = &out["outcomes"][0]["request"];
    assert_eq!(r["state"], "available", "{out}");
    r["id"].as_str().unwrap().to_owned()
}

/// The real `telnet` client connected to the proxy, signed in as alice for the account on tn1.
fn sign_in(w: &World) -> Pty {
    telnet_login(w, &format!("alice#{}@tn1", w.user.name), ALICE_PW)
}

/// The real `telnet` client at the proxy's prompt: `login`, then `password`.
pub(super) fn telnet_login(w: &World, login: &str, password: &str) -> Pty {
    let mut c = Command::new("telnet");
    c.args(["127.0.0.1", &w.server.telnet_port.to_string()]).env("TERM", "xterm");
    let mut t = Pty::spawn(c);
    t.expect("login: ", T);
    t.send(&format!("{login}\r"));
    t.expect("Password: ", T);
    t.send(&format!("{password}\r"));
    t
}

async fn live(w: &World) -> Vec<Value> {
    let (_, v) = w.server.call("GET", "/api/v1/sessions?live=true", Some(&w.admin), None).await;
    v.as_array().cloned().unwrap_or_default()
}

async fn telnet_end_to_end(db: Db) {
    let w = world_on(db, json!({})).await;
    let telnetd = Telnetd::start();
    let account = telnet_account(&w, &telnetd).await;
    let request = request_telnet(&w, &account).await;

    // No connection policy admits Telnet on a fresh install: refused, with what to fix.
    let mut t = sign_in(&w);
    let screen = t.expect("Connection closed", T);
    assert!(
        screen.contains("no connection policy admits TELNET from 127.0.0.1 to tn1")
            && screen.contains("connection-policy explain --protocol telnet"),
        "{screen}"
    );
    assert!(t.wait(T).is_some());

    let body = json!({ "name": "telnet-lab", "protocol": "telnet", "clients": ["127.0.0.0/8"], "channels": [{ "kind": "shell" }] });
    let (s, p) = post(&w.server, &w.admin, "/api/v1/connection-policies", body).await;
    assert_eq!(s, 201, "{p}");

    // Signed in at the proxy's prompt; the proxy logs in to telnetd with the vaulted password.
    let mut t = sign_in(&w);
    t.expect("$ ", T);
    t.send("echo tn-$((6*7))\r");
    t.expect("tn-42", T);
    let sessions = live(&w).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["protocol"], "telnet", "{sessions:?}");
    let id = sessions[0]["id"].as_str().unwrap().to_owned();

    // Searchable while live: the typed command and its output.
    let mut hits = Value::Null;
    for _ in 0..100 {
        let (_, v) = w.server.call("GET", "/api/v1/recordings/search?q=tn&protocol=telnet", Some(&w.admin), None).await;
        if v.as_array().is_some_and(|a| a.len() >= 2) {
            hits = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kinds: Vec<&str> = hits.as_array().expect("telnet hits").iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"command") && kinds.contains(&"output"), "{hits}");
    assert!(hits.as_array().unwrap().iter().all(|h| h["session_id"] == id.as_str() && h["live"] == true), "{hits}");

    // Revoked: the session ends at once and the user is told why.
    let (s, _) = post(&w.server, &w.admin, &format!("/api/v1/requests/{request}/revoke"), json!({})).await;
    assert_eq!(s, 200);
    let screen = t.expect("Connection closed", T);
    assert!(screen.contains("Portcullis: session ended: the request was revoked"), "{screen}");
    assert!(!screen.contains(TARGET_PW), "the vaulted password is never shown: {screen}");

    // Recorded as any session: plays as asciicast; no password in it.
    for _ in 0..100 {
        if live(&w).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cast = w.recording(&id, "asciicast").await;
    assert!(cast.contains("tn-42"), "{cast}");
    assert!(!cast.contains(TARGET_PW) && !cast.contains(ALICE_PW), "{cast}");
    let (_, s) = w.server.call("GET", &format!("/api/v1/sessions/{id}"), Some(&w.admin), None).await;
    assert_eq!(s["end_reason"], "the request was revoked", "{s}");

    // Audited: the sign-in through the Telnet proxy and the session.
    let (_, page) = w.server.call("GET", "/api/v1/audit/events?limit=1000", Some(&w.admin), None).await;
    let events = page["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["action"] == "auth.login" && e["details"]["via"] == "telnet"), "{page}");
    assert!(events.iter().any(|e| e["action"] == "session.refused"
        && e["details"]["reason"].as_str().is_some_and(|r| r.contains("no connection policy admits TELNET"))));
    let log = w.server.all_output();
    assert!(!log.is_empty(), "the server's log is read");
    assert!(!log.contains(TARGET_PW) && !log.contains(ALICE_PW), "no secret in the server's log");
}

#[tokio::test(flavor = "multi_thread")]
async fn telnet_end_to_end_sqlite() {
    telnet_end_to_end(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn telnet_end_to_end_postgres() {
    telnet_end_to_end(Db::postgres()).await;
}

/// A wrong password is refused at the proxy's prompt; a content rule ends a session on a typed
/// command (the target never sees it); gateway authentication holds a connection until the
/// user confirms it; an administrator watches a session from the CLI and terminates it.
#[tokio::test(flavor = "multi_thread")]
async fn telnet_content_rules_waits_watch_and_termination() {
    let w = world_on(Db::Sqlite, json!({})).await;
    let telnetd = Telnetd::start();
    let account = telnet_account(&w, &telnetd).await;
    request_telnet(&w, &account).await;
    let body = json!({
        "name": "telnet-lab", "protocol": "telnet", "channels": [{ "kind": "shell" }],
        "content": [{ "on": "command", "pattern": "^rm -rf", "action": "terminate", "name": "no rm -rf" }]
    });
    let (s, p) = post(&w.server, &w.admin, "/api/v1/connection-policies", body).await;
    assert_eq!(s, 201, "{p}");

    // A bare user name: told the form, asked again.
    let mut c = Command::new("telnet");
    c.args(["127.0.0.1", &w.server.telnet_port.to_string()]);
    let mut t = Pty::spawn(c);
    t.expect("login: ", T);
    t.send("alice\r");
    let screen = t.expect("name the target as USER#ACCOUNT@ASSET (e.g. alice#root@db1)", T);
    assert!(!screen.contains("launch token"), "{screen}");
    drop(t);
    let t = telnet_login(&w, &format!("alice#{}@tn1", w.user.name), "not her password");
    t.expect("wrong username or password", T);
    t.expect("login: ", T);
    drop(t);

    let mut t = sign_in(&w);
    t.expect("$ ", T);
    t.send(&format!("touch /tmp/pct-tn-{0} && echo made-{0}\r", w.user.name));
    t.expect(&format!("made-{}", w.user.name), T);
    t.send(&format!("rm -rf /tmp/pct-tn-{}\r", w.user.name));
    let screen = t.expect("Connection closed", T);
    assert!(screen.contains("session ended: the content policy of 'telnet-lab' matched (no rm -rf)"), "{screen}");
    let marker = format!("/tmp/pct-tn-{}", w.user.name);
    assert!(std::path::Path::new(&marker).exists(), "the matching line never reached the target");
    let _ = std::fs::remove_file(&marker);

    // Gateway authentication: the connection waits, told how to confirm it; alice confirms.
    let (_, list) = w.server.call("GET", "/api/v1/connection-policies", Some(&w.admin), None).await;
    let mut lab = list.as_array().unwrap().iter().find(|p| p["name"] == "telnet-lab").unwrap().clone();
    let path = format!("/api/v1/connection-policies/{}", lab["id"].as_str().unwrap());
    for k in ["id", "position", "group_names", "created_at", "updated_at"] {
        lab.as_object_mut().unwrap().remove(k);
    }
    lab["gateway_authentication"] = json!(true);
    let (s, b) = w.server.call("PUT", &path, Some(&w.admin), Some(lab)).await;
    assert_eq!(s, 200, "{b}");
    let mut t = sign_in(&w);
    let screen = t.expect("portcullis session confirm ", T);
    let wait_id = screen.split("portcullis session confirm ").nth(1).unwrap().split_whitespace().next().unwrap();
    let (s, b) = post(&w.server, &w.alice, &format!("/api/v1/session-waits/{wait_id}/permit"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    t.expect("$ ", T);
    t.send("echo watched-$((2+3))\r");
    t.expect("watched-5", T);

    // Watched live from the CLI, then terminated by an administrator.
    let mut id = None;
    for _ in 0..100 {
        if let Some(s) = live(&w).await.first() {
            id = s["id"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = id.expect("a live session");
    let watcher = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["session", "watch", &id])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORTCULLIS_SERVER", &w.server.url)
        .env("PORTCULLIS_TOKEN", &w.admin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let audit = format!("/api/v1/audit/events?action=session.watch&object_id={id}&limit=10");
    for _ in 0..100 {
        let (_, page) = w.server.call("GET", &audit, Some(&w.admin), None).await;
        if !page["events"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _) =
        post(&w.server, &w.admin, &format!("/api/v1/sessions/{id}/terminate"), json!({ "reason": "maintenance" }))
            .await;
    assert_eq!(s, 200);
    let screen = t.expect("Connection closed", T);
    assert!(screen.contains("terminated by admin: maintenance"), "{screen}");
    let o = watcher.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && seen.contains("watched-5"), "{seen}{}", String::from_utf8_lossy(&o.stderr));
}

/// Directory Account mode over Telnet: the requested account has no credential of its own; the
/// proxy types the policy's directory account's name and vaulted password into the target's
/// prompts (the target knows the directory's accounts; the world's Unix user stands for one).
#[tokio::test(flavor = "multi_thread")]
async fn telnet_directory_account_mode() {
    let w = world_on(Db::Sqlite, json!({})).await;
    let telnetd = Telnetd::start();
    let asset = json!({ "name": "corp", "address": "127.0.0.1", "platform": "directory" });
    let (s, corp) = post(&w.server, &w.admin, "/api/v1/assets", asset).await;
    assert_eq!(s, 201, "{corp}");
    let (_, dir_account) =
        post(&w.server, &w.admin, "/api/v1/accounts", json!({ "asset_id": corp["id"], "name": w.user.name })).await;
    let path = format!("/api/v1/accounts/{}/password", dir_account["id"].as_str().unwrap());
    let (s, _) = w.server.call("PUT", &path, Some(&w.admin), Some(json!({ "password": TARGET_PW }))).await;
    assert_eq!(s, 201);
    let more = json!({ "account_mode": "directory_account", "directory_account_ids": [dir_account["id"]] });
    let body = json!({ "name": "tn2", "address": "127.0.0.1", "platform": "linux", "protocols": [{ "protocol": "telnet", "port": telnetd.port() }] });
    let (_, tn2) = post(&w.server, &w.admin, "/api/v1/assets", body).await;
    let (_, placeholder) =
        post(&w.server, &w.admin, "/api/v1/accounts", json!({ "asset_id": tn2["id"], "name": "operator" })).await;
    let (_, users) = w.server.call("GET", "/api/v1/users", Some(&w.admin), None).await;
    let alice = users.as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap()["id"].clone();
    let (_, ent) =
        post(&w.server, &w.admin, "/api/v1/entitlements", json!({ "name": "tn2", "priority": 3, "user_ids": [alice] }))
            .await;
    let mut settings = json!({ "auto_approve": true, "change_password_after_checkin": false });
    settings.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    let body = json!({ "entitlement_id": ent["id"], "name": "tn2 directory", "priority": 1, "access_type": "telnet",
        "scope": { "accounts": [placeholder["id"]] }, "settings": settings });
    let (s, p) = post(&w.server, &w.admin, "/api/v1/policies", body).await;
    assert_eq!(s, 201, "{p}");
    request_telnet(&w, placeholder["id"].as_str().unwrap()).await;
    let body = json!({ "name": "telnet-lab", "protocol": "telnet", "clients": ["127.0.0.0/8"], "channels": [{ "kind": "shell" }] });
    let (s, p) = post(&w.server, &w.admin, "/api/v1/connection-policies", body).await;
    assert_eq!(s, 201, "{p}");

    let mut t = telnet_login(&w, "alice#operator@tn2", ALICE_PW);
    t.expect("$ ", T);
    t.send("echo who=$(whoami)\r");
    let screen = t.expect(&format!("who={}", w.user.name), T);
    assert!(!screen.contains(TARGET_PW), "the vaulted password is never shown: {screen}");
}
