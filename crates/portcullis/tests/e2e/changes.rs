//! Credential checks and changes on a real host (R-VAULT-4): a real OpenSSH sshd and a real
//! throwaway Unix user, driven through the real server. "Check credential" and "change now"
//! for passwords and SSH keys, the password profile, the automatic change after check-in,
//! retries and abandonment when the target is gone, host key pinning and mismatch, and no
//! secret anywhere but in checkouts.

use std::time::Duration;

use portcullis_testkit::sshd::{ssh_with_password, Sshd, UnixUser};
use portcullis_vault::{generate_ssh_key, KeyAlgorithm};
use serde_json::{json, Value};

use crate::harness::{read_all_files, Db, Server};

const OLD: &str = "Plant-Unix-Old-4471x";

async fn post(server: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    server.call("POST", path, Some(token), Some(body)).await
}

async fn get(server: &Server, token: &str, path: &str) -> Value {
    let (s, v) = server.call("GET", path, Some(token), None).await;
    assert_eq!(s, 200, "{path}: {v}");
    v
}

struct World {
    admin: String,
    requester: String,
    approver: String,
    asset_id: String,
    account_id: String,
}

async fn world(server: &Server, sshd: &Sshd, user: &UnixUser, access_type: &str, change_after: bool) -> World {
    world_with(
        server,
        sshd,
        user,
        access_type,
        |_| json!({ "auto_approve": true, "change_password_after_checkin": change_after }),
    )
    .await
}

/// `settings` gets the id of a user "approver" (whose token is in `World::approver`).
async fn world_with(
    server: &Server,
    sshd: &Sshd,
    user: &UnixUser,
    access_type: &str,
    settings: impl FnOnce(&str) -> Value,
) -> World {
    let admin = server.bootstrap().await;
    let (requester_id, requester) = server.user_with_roles(&admin, "requester", &[]).await;
    let (approver_id, approver) = server.user_with_roles(&admin, "approver", &[]).await;
    let settings = settings(&approver_id);
    let (s, asset) = post(
        server,
        &admin,
        "/api/v1/assets",
        json!({ "name": "host1", "address": "127.0.0.1", "platform": "linux", "protocols": [{ "protocol": "ssh", "port": sshd.port() }] }),
    )
    .await;
    assert_eq!(s, 201, "{asset}");
    let (_, account) =
        post(server, &admin, "/api/v1/accounts", json!({ "asset_id": asset["id"], "name": user.name })).await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let (_, ent) =
        post(server, &admin, "/api/v1/entitlements", json!({ "name": "e", "priority": 1, "user_ids": [requester_id] }))
            .await;
    let (s, p) = post(
        server,
        &admin,
        "/api/v1/policies",
        json!({ "entitlement_id": ent["id"], "name": "p", "priority": 1, "access_type": access_type, "scope": { "accounts": [account_id] },
                "settings": settings }),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    World { admin, requester, approver, asset_id: asset["id"].as_str().unwrap().to_owned(), account_id }
}

/// Requests access, checks the credential out and returns (request id, secret).
async fn checkout(server: &Server, w: &World, access_type: &str) -> (String, String) {
    let (s, out) = post(
        server,
        &w.requester,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": w.account_id, "access_type": access_type }] }),
    )
    .await;
    assert!(s == 200 || s == 201, "{out}");
    let id = out["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    let (s, c) =
        post(server, &w.requester, &format!("/api/v1/requests/{id}/checkout"), json!({ "action": "show" })).await;
    assert_eq!(s, 200, "{c}");
    let secret = c["password"].as_str().or(c["private_key"].as_str()).unwrap().to_owned();
    (id, secret)
}

async fn show(server: &Server, w: &World, request_id: &str) -> String {
    let (s, c) =
        post(server, &w.requester, &format!("/api/v1/requests/{request_id}/checkout"), json!({ "action": "show" }))
            .await;
    assert_eq!(s, 200, "{c}");
    c["password"].as_str().unwrap().to_owned()
}

async fn wait_for_change(server: &Server, w: &World, state: &str, count: usize) -> Value {
    for _ in 0..200 {
        let changes = get(server, &w.admin, &format!("/api/v1/accounts/{}/credential-changes", w.account_id)).await;
        let n = changes.as_array().unwrap().iter().filter(|c| c["state"] == state).count();
        if n >= count {
            return changes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no {count} change(s) reached {state}");
}

fn logs_in(port: u16, user: &str, password: &str) -> bool {
    ssh_with_password(port, user, password, "true").0 == Some(0)
}

async fn password_changes(db: Db) {
    let mut sshd = Some(Sshd::start());
    let port = sshd.as_ref().unwrap().port();
    let host_key = sshd.as_ref().unwrap().host_key();
    let user = UnixUser::create(OLD);
    let server = Server::start_with(
        db,
        false,
        &[("PORTCULLIS_VAULT_CHANGE_RETRY_SECONDS", "1"), ("PORTCULLIS_VAULT_CHANGE_ATTEMPTS", "2")],
    );
    let w = world(&server, sshd.as_ref().unwrap(), &user, "password", true).await;
    let mut responses: Vec<String> = Vec::new();
    let acct = format!("/api/v1/accounts/{}", w.account_id);

    let (s, v) =
        server.call("PUT", &format!("{acct}/password"), Some(&w.admin), Some(json!({ "password": OLD }))).await;
    assert_eq!(s, 201, "{v}");

    // Check credential: it logs in; the host key seen first is pinned on the asset.
    let (s, c) = post(&server, &w.admin, &format!("{acct}/credentials/check"), json!({})).await;
    assert_eq!((s, c["ok"].as_bool(), c["kind"].as_str()), (200, Some(true), Some("password")), "{c}");
    responses.push(c.to_string());
    let asset = get(&server, &w.admin, &format!("/api/v1/assets/{}", w.asset_id)).await;
    assert_eq!(
        asset["host_key"].as_str().and_then(|k| k.split_whitespace().nth(1)),
        host_key.split_whitespace().nth(1),
        "{asset}"
    );

    // A profile for the asset: 20 characters, no symbols.
    let (s, p) = server
        .call(
            "PUT",
            &format!("/api/v1/password-profiles/asset:{}", w.asset_id),
            Some(&w.admin),
            Some(json!({ "length": 20, "lowercase": true, "uppercase": true, "digits": true, "symbols": false })),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let (s, b) = server
        .call(
            "PUT",
            "/api/v1/password-profiles/platform:beos",
            Some(&w.admin),
            Some(json!({ "length": 20, "lowercase": true, "uppercase": true, "digits": true, "symbols": false })),
        )
        .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("scope")), "{b}");

    // Change now: a new password on the host, verified, current; the response has no secret.
    let (s, v) = post(&server, &w.admin, &format!("{acct}/credentials/change"), json!({ "kind": "password" })).await;
    assert_eq!(
        (s, v["version"].as_i64(), v["status"].as_str(), v["reason"].as_str()),
        (200, Some(2), Some("active"), Some("rotation")),
        "{v}"
    );
    responses.push(v.to_string());
    let (req1, p2) = checkout(&server, &w, "password").await;
    assert_eq!(p2.len(), 20);
    assert!(p2.chars().all(|c| c.is_ascii_alphanumeric()), "the asset's profile was not used");
    assert!(logs_in(port, &user.name, &p2), "the new password does not log in with the real ssh client");
    assert!(!logs_in(port, &user.name, OLD), "the old password still logs in");

    // Check-in with "change password after check-in": changed automatically.
    let (s, _) = post(&server, &w.requester, &format!("/api/v1/requests/{req1}/checkin"), json!({})).await;
    assert_eq!(s, 200);
    let changes = wait_for_change(&server, &w, "succeeded", 1).await;
    assert_eq!(changes[0]["reason"], "check-in", "{changes}");
    assert_eq!(changes[0]["request_id"].as_str(), Some(req1.as_str()));
    assert_eq!(changes[0]["version"].as_i64(), Some(3));
    responses.push(changes.to_string());
    let (req2, p3) = checkout(&server, &w, "password").await;
    assert_ne!(p3, p2);
    assert!(logs_in(port, &user.name, &p3));
    assert!(!logs_in(port, &user.name, &p2), "the checked-out password still works after check-in");

    // The target goes away: the automatic change after the next check-in is retried, then
    // abandoned and notified; the password that works stays current.
    drop(sshd.take());
    let (s, _) = post(&server, &w.requester, &format!("/api/v1/requests/{req2}/checkin"), json!({})).await;
    assert_eq!(s, 200);
    let changes = wait_for_change(&server, &w, "failed", 1).await;
    let failed = changes.as_array().unwrap().iter().find(|c| c["state"] == "failed").unwrap();
    assert_eq!(failed["attempts"].as_i64(), Some(2), "{changes}");
    assert!(failed["last_error"].as_str().unwrap().starts_with("target_unreachable"), "{changes}");
    let (s, v) = post(&server, &w.admin, &format!("{acct}/credentials/change"), json!({})).await;
    assert_eq!((s, v["code"].as_str()), (502, Some("target_unreachable")), "{v}");
    responses.push(v.to_string());
    let versions = get(&server, &w.admin, &format!("{acct}/credentials")).await;
    responses.push(versions.to_string());
    let statuses: Vec<(i64, &str)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [(6, "failed"), (5, "failed"), (4, "failed"), (3, "active"), (2, "active"), (1, "active")]);
    let (req3, current) = checkout(&server, &w, "password").await;
    assert_eq!(current, p3, "a failed change replaced the working password");
    let store = server.store().await;
    let outbox = store.outbox(100).await.unwrap();
    assert_eq!(outbox.iter().filter(|o| o.event == "credential_change_failed").count(), 2, "{outbox:?}");
    let audit = get(&server, &w.admin, "/api/v1/audit/events?action=credential.change_abandoned").await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{audit}");

    // Back up, with a different host key than the pinned one: refused and alerted.
    let sshd2 = Sshd::start();
    let (s, a) = server
        .call(
            "PATCH",
            &format!("/api/v1/assets/{}", w.asset_id),
            Some(&w.admin),
            Some(json!({ "protocols": [{ "protocol": "ssh", "port": sshd2.port() }] })),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    server.confirm_identity(&w.admin, &w.asset_id).await;
    let (s, c) = post(&server, &w.admin, &format!("{acct}/credentials/check"), json!({ "kind": "password" })).await;
    assert_eq!((s, c["ok"].as_bool(), c["code"].as_str()), (200, Some(false), Some("host_key_mismatch")), "{c}");
    responses.push(c.to_string());
    let alerts = get(&server, &w.admin, "/api/v1/audit/events?action=asset.host_key_mismatch").await;
    assert_eq!(alerts["events"][0]["outcome"], "failure", "{alerts}");
    assert_eq!(alerts["events"][0]["details"]["alert"], true);

    // Re-pinned to the new host (same users): the password works again. A stored password
    // that is wrong is reported by the check, and a change with it changes nothing.
    let (s, _) = server
        .call(
            "PATCH",
            &format!("/api/v1/assets/{}", w.asset_id),
            Some(&w.admin),
            Some(json!({ "host_key": sshd2.host_key() })),
        )
        .await;
    assert_eq!(s, 200);
    server.confirm_identity(&w.admin, &w.asset_id).await;
    let (s, c) = post(&server, &w.admin, &format!("{acct}/credentials/check"), json!({})).await;
    assert_eq!((s, c["ok"].as_bool()), (200, Some(true)), "{c}");
    const WRONG: &str = "Plant-Wrong-Stored-913";
    let (s, _) =
        server.call("PUT", &format!("{acct}/password"), Some(&w.admin), Some(json!({ "password": WRONG }))).await;
    assert_eq!(s, 201);
    let (s, c) = post(&server, &w.admin, &format!("{acct}/credentials/check"), json!({})).await;
    assert_eq!(
        (s, c["ok"].as_bool(), c["code"].as_str()),
        (200, Some(false), Some("target_authentication_failed")),
        "{c}"
    );
    responses.push(c.to_string());
    let (s, v) = post(&server, &w.admin, &format!("{acct}/credentials/change"), json!({})).await;
    assert_eq!((s, v["code"].as_str()), (502, Some("target_authentication_failed")), "{v}");
    responses.push(v.to_string());
    assert_eq!(show(&server, &w, &req3).await, WRONG, "the failed change replaced the current version");
    assert!(logs_in(sshd2.port(), &user.name, &p3), "the host's password was changed by a failed attempt");

    // Nothing leaks: no password in any response but checkouts, the logs, or the database.
    let logs = server.all_output();
    let db: Vec<u8> = match server.pg_dump() {
        Some(d) => d.into_bytes(),
        None => read_all_files(&server.data_dir())
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().contains("portcullis.db"))
            .flat_map(|(_, b)| b)
            .collect(),
    };
    let db = String::from_utf8_lossy(&db);
    for secret in [OLD, &p2, &p3, WRONG] {
        for r in &responses {
            assert!(!r.contains(secret), "a password leaked into a response: {r}");
        }
        assert!(!logs.contains(secret), "a password leaked into the server output");
        assert!(!db.contains(secret), "a password is in the database in plaintext");
    }
}

#[tokio::test]
async fn password_changes_on_a_real_host_sqlite() {
    password_changes(Db::Sqlite).await;
}

#[tokio::test]
async fn password_changes_on_a_real_host_postgres() {
    password_changes(Db::postgres()).await;
}

fn ssh_with_key(port: u16, user: &str, key: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id");
    std::fs::write(&path, key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::process::Command::new("ssh")
        .args(["-p", &port.to_string(), "-i"])
        .arg(&path)
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "PasswordAuthentication=no", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"])
        .arg(format!("{user}@127.0.0.1"))
        .arg("true")
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test]
async fn ssh_key_changes_on_a_real_host() {
    let sshd = Sshd::start();
    let user = UnixUser::create("Unused-Pass-0000-abc");
    let server = Server::start(Db::Sqlite);
    let w = world(&server, &sshd, &user, "ssh_key", true).await;
    let acct = format!("/api/v1/accounts/{}", w.account_id);

    let old = generate_ssh_key(KeyAlgorithm::Ed25519, "old").unwrap();
    let old_private = String::from_utf8(old.private_openssh.expose().to_vec()).unwrap();
    std::fs::create_dir_all(user.home.join(".ssh")).unwrap();
    std::fs::write(user.home.join(".ssh/authorized_keys"), format!("{}\n", old.public_openssh)).unwrap();
    assert!(std::process::Command::new("chown")
        .arg("-R")
        .arg(&user.name)
        .arg(user.home.join(".ssh"))
        .status()
        .unwrap()
        .success());
    let (s, v) = server
        .call("PUT", &format!("{acct}/ssh-key"), Some(&w.admin), Some(json!({ "private_key": old_private })))
        .await;
    assert_eq!(s, 201, "{v}");

    let (s, c) = post(&server, &w.admin, &format!("{acct}/credentials/check"), json!({})).await;
    assert_eq!((s, c["ok"].as_bool(), c["kind"].as_str()), (200, Some(true), Some("ssh_key")), "{c}");
    let (s, v) = post(&server, &w.admin, &format!("{acct}/credentials/change"), json!({ "kind": "ssh_key" })).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(2)), "{v}");
    assert_ne!(v["public_key"], json!(old.public_openssh));
    assert!(!v.to_string().contains("PRIVATE KEY"));

    let (req, new_private) = checkout(&server, &w, "ssh_key").await;
    assert!(ssh_with_key(sshd.port(), &user.name, &new_private), "the new key does not log in");
    assert!(!ssh_with_key(sshd.port(), &user.name, &old_private), "the old key still logs in");

    // Checked in: replaced again automatically; the checked-out key stops working.
    let (s, _) = post(&server, &w.requester, &format!("/api/v1/requests/{req}/checkin"), json!({})).await;
    assert_eq!(s, 200);
    wait_for_change(&server, &w, "succeeded", 1).await;
    let (_, newest) = checkout(&server, &w, "ssh_key").await;
    assert_ne!(newest, new_private);
    assert!(ssh_with_key(sshd.port(), &user.name, &newest));
    assert!(!ssh_with_key(sshd.port(), &user.name, &new_private), "the checked-out key still works after check-in");
    let keys = std::fs::read_to_string(user.home.join(".ssh/authorized_keys")).unwrap();
    assert_eq!(keys.lines().count(), 1, "{keys}");

    let logs = server.all_output();
    let db: Vec<u8> = read_all_files(&server.data_dir())
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains("portcullis.db"))
        .flat_map(|(_, b)| b)
        .collect();
    let db = String::from_utf8_lossy(&db);
    for secret in [&old_private, &new_private, &newest] {
        let body = secret.lines().nth(1).unwrap();
        assert!(!logs.contains(body), "a private key leaked into the server output");
        assert!(!db.contains(body), "a private key is in the database in plaintext");
    }
}

/// Stages `password` as the next version the way a change does, as if the server died
/// before it could settle it.
async fn stage(server: &Server, account_id: &str, password: &str) -> i64 {
    let ring = crate::vault::ring_from(&server.data_dir());
    let store = server.store().await;
    let account = account_id.to_owned();
    let secret = password.as_bytes().to_vec();
    let v = store
        .stage_secret_version(
            &portcullis_store::Actor::system(),
            0,
            account_id,
            "password",
            "rotation",
            None,
            move |version| {
                let s = portcullis_vault::seal(
                    &ring,
                    &portcullis_vault::SecretContext { account_id: account, kind: "password".into(), version },
                    &secret,
                );
                portcullis_store::SealedRow {
                    ciphertext: s.ciphertext,
                    nonce: s.nonce.to_vec(),
                    wrapped_dek: s.wrapped_dek,
                    dek_nonce: s.dek_nonce.to_vec(),
                    kek_id: s.kek_id,
                }
            },
        )
        .await
        .unwrap();
    store.close().await;
    v.version
}

#[tokio::test]
async fn an_interrupted_change_never_loses_the_working_password() {
    let sshd = Sshd::start();
    let user = UnixUser::create(OLD);
    let server = Server::start(Db::Sqlite);
    let w = world(&server, &sshd, &user, "password", false).await;
    let acct = format!("/api/v1/accounts/{}", w.account_id);
    let (s, _) =
        server.call("PUT", &format!("{acct}/password"), Some(&w.admin), Some(json!({ "password": OLD }))).await;
    assert_eq!(s, 201);

    // The server died after the host took the new password and before the commit; an
    // administrator stored a (wrong) password by hand meanwhile.
    const TAKEN: &str = "Plant-Taken-By-Host-5521";
    assert_eq!(stage(&server, &w.account_id, TAKEN).await, 2);
    user.set_password(TAKEN);
    let (s, b) =
        server.call("PUT", &format!("{acct}/password"), Some(&w.admin), Some(json!({ "password": OLD }))).await;
    assert_eq!(s, 201, "a manual set is not blocked by a staged change: {b}");
    // The next change tests the staged password first: it logs in, so it becomes current
    // again (stored anew as the newest version), and nothing else is changed.
    let (s, v) = post(&server, &w.admin, &format!("{acct}/credentials/change"), json!({})).await;
    assert_eq!((s, v["version"].as_i64(), v["reason"].as_str()), (200, Some(4), Some("recovered")), "{v}");
    let recovered = get(&server, &w.admin, "/api/v1/audit/events?action=credential.change").await;
    assert_eq!(recovered["events"][0]["details"]["recovered"], true, "{recovered}");
    let (req, current) = checkout(&server, &w, "password").await;
    assert_eq!(current, TAKEN);

    // The server died before the host took the new password: that staged one is marked
    // failed, and a fresh change is made with the password that works.
    assert_eq!(stage(&server, &w.account_id, "Plant-Never-Taken-0001").await, 5);
    let (s, v) = post(&server, &w.admin, &format!("{acct}/credentials/change"), json!({})).await;
    assert_eq!((s, v["version"].as_i64(), v["reason"].as_str()), (200, Some(6), Some("rotation")), "{v}");
    let newest = show(&server, &w, &req).await;
    assert!(logs_in(sshd.port(), &user.name, &newest));
    assert!(!logs_in(sshd.port(), &user.name, TAKEN));
    let versions = get(&server, &w.admin, &format!("{acct}/credentials")).await;
    let statuses: Vec<(i64, &str)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [(6, "active"), (5, "failed"), (4, "active"), (3, "active"), (2, "active"), (1, "active")]);
    assert_eq!(versions[1]["error"], "an interrupted change that never took effect");
}

#[tokio::test]
async fn cli_check_change_and_profiles() {
    let sshd = Sshd::start();
    let user = UnixUser::create(OLD);
    let server = Server::start(Db::Sqlite);
    let w = world(&server, &sshd, &user, "password", false).await;
    let cfg = server.dir.path().join("admin.json").display().to_string();
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let o = server.cli(
        &["login", "--server", &server.url, "--username", "admin"],
        &[("PORTCULLIS_CLI_CONFIG", &cfg), ("PORTCULLIS_PASSWORD", crate::harness::ADMIN_PASSWORD)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let mut e = vec![("PORTCULLIS_CLI_CONFIG", cfg.as_str())];
        e.extend_from_slice(env);
        server.cli(args, &e)
    };
    let id = w.account_id.as_str();
    let mut outputs = String::new();
    // By name, as a user types it (the other commands by id: both work).
    let named = format!("{}@host1", user.name);
    let o = cli(&["credential", "set-password", &named], &[("PORTCULLIS_NEW_PASSWORD", OLD)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&["credential", "check", id], &[]);
    assert!(o.status.success(), "{}", text(&o));
    outputs += &text(&o);
    let o = cli(&["credential", "check", id, "--kind", "ssh_key"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no_credential"), "{}", text(&o));

    let scope = format!("asset:{}", w.asset_id);
    let o = cli(&["credential", "set-profile", &scope, "--length", "16", "--no-symbols"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&["credential", "profiles", "-o", "json"], &[]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!((v[0]["scope"].as_str(), v[0]["profile"]["length"].as_i64()), (Some(scope.as_str()), Some(16)));
    let o = cli(&["credential", "set-profile", &scope, "--length", "4"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let o = cli(&["credential", "change", id, "-o", "json"], &[]);
    outputs += &text(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!((v["version"].as_i64(), v["status"].as_str()), (Some(2), Some("active")));
    assert!(!logs_in(sshd.port(), &user.name, OLD));
    let (_, new) = checkout(&server, &w, "password").await;
    assert_eq!(new.len(), 16);
    assert!(logs_in(sshd.port(), &user.name, &new));

    let o = cli(&["credential", "delete-profile", &scope], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&["credential", "changes", id], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&["credential", "list", id], &[]);
    outputs += &text(&o);
    assert!(!outputs.contains(OLD) && !outputs.contains(&new), "a password in CLI output: {outputs}");
}

/// A sudoers entry for a throwaway user, removed on drop.
struct Sudoer(std::path::PathBuf);

impl Sudoer {
    fn grant(user: &UnixUser) -> Sudoer {
        assert!(
            std::path::Path::new("/usr/bin/sudo").exists(),
            "sudo is not installed; run the suite with scripts/test"
        );
        let path = std::path::PathBuf::from(format!("/etc/sudoers.d/portcullis-test-{}", user.name));
        std::fs::write(&path, format!("{} ALL=(ALL) NOPASSWD: ALL\n", user.name)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        Sudoer(path)
    }
}

impl Drop for Sudoer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn changes_through_the_assets_service_account() {
    let sshd = Sshd::start();
    let user = UnixUser::create(OLD);
    const SVC: &str = "Plant-Service-Pw-3390";
    let svc = UnixUser::create(SVC);
    let _sudo = Sudoer::grant(&svc);
    let server = Server::start(Db::Sqlite);
    let w = world(&server, &sshd, &user, "password", false).await;
    let acct = format!("/api/v1/accounts/{}", w.account_id);
    let asset_path = format!("/api/v1/assets/{}", w.asset_id);

    // The target account's stored password is unknown (wrong); the service account's works.
    let (s, _) =
        server.call("PUT", &format!("{acct}/password"), Some(&w.admin), Some(json!({ "password": "not-known" }))).await;
    assert_eq!(s, 201);
    let (_, svc_account) =
        post(&server, &w.admin, "/api/v1/accounts", json!({ "asset_id": w.asset_id, "name": svc.name })).await;
    let svc_id = svc_account["id"].as_str().unwrap();
    let (s, _) = server
        .call("PUT", &format!("/api/v1/accounts/{svc_id}/password"), Some(&w.admin), Some(json!({ "password": SVC })))
        .await;
    assert_eq!(s, 201);

    // Only an account of the same asset can be its service account.
    let (_, other) = post(
        &server,
        &w.admin,
        "/api/v1/assets",
        json!({ "name": "other", "address": "10.1.1.1", "platform": "linux" }),
    )
    .await;
    let (_, foreign) =
        post(&server, &w.admin, "/api/v1/accounts", json!({ "asset_id": other["id"], "name": "x" })).await;
    let (s, b) =
        server.call("PATCH", &asset_path, Some(&w.admin), Some(json!({ "service_account_id": foreign["id"] }))).await;
    assert_eq!((s, b["field"].as_str()), (422, Some("service_account_id")), "{b}");
    let (s, a) = server.call("PATCH", &asset_path, Some(&w.admin), Some(json!({ "service_account_id": svc_id }))).await;
    assert_eq!((s, a["service_account_id"].as_str()), (200, Some(svc_id)), "{a}");

    let (s, v) = post(&server, &w.admin, &format!("{acct}/credentials/change"), json!({ "kind": "password" })).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(2)), "{v}");
    let (_, new) = checkout(&server, &w, "password").await;
    assert!(logs_in(sshd.port(), &user.name, &new), "the password set through the service account does not log in");
    assert!(!logs_in(sshd.port(), &user.name, OLD));

    // A first SSH key for the account, installed through the service account.
    let (s, v) = post(&server, &w.admin, &format!("{acct}/credentials/change"), json!({ "kind": "ssh_key" })).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(1)), "{v}");
    let keys = std::fs::read_to_string(user.home.join(".ssh/authorized_keys")).unwrap();
    let blob = v["public_key"].as_str().unwrap().split_whitespace().nth(1).unwrap();
    assert!(keys.contains(blob), "{keys}");
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(user.home.join(".ssh/authorized_keys")).unwrap().uid();
    let uid =
        String::from_utf8(std::process::Command::new("id").args(["-u", &user.name]).output().unwrap().stdout).unwrap();
    assert_eq!(owner.to_string(), uid.trim(), "authorized_keys must belong to the account");

    let logs = server.all_output();
    assert!(!logs.contains(SVC) && !logs.contains(&new), "a password leaked into the server output");
}

#[tokio::test]
async fn the_password_is_changed_after_expiry() {
    let sshd = Sshd::start();
    let user = UnixUser::create(OLD);
    let server = Server::start(Db::Sqlite);
    let w = world_with(&server, &sshd, &user, "password", |approver_id| {
        json!({ "approval_levels": [{ "required": 1, "user_ids": [approver_id] }], "change_password_after_checkin": true })
    })
    .await;
    let (s, _) = server
        .call(
            "PUT",
            &format!("/api/v1/accounts/{}/password", w.account_id),
            Some(&w.admin),
            Some(json!({ "password": OLD })),
        )
        .await;
    assert_eq!(s, 201);
    let (_, out) = post(
        &server,
        &w.requester,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": w.account_id, "access_type": "password" }] }),
    )
    .await;
    let id = out["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    let end = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    let (s, b) =
        post(&server, &w.approver, &format!("/api/v1/requests/{id}/approve"), json!({ "end_at": end.to_string() }))
            .await;
    assert_eq!((s, b["state"].as_str()), (200, Some("available")), "{b}");
    assert_eq!(show(&server, &w, &id).await, OLD);

    let changes = wait_for_change(&server, &w, "succeeded", 1).await;
    assert_eq!(changes[0]["reason"], "expiry", "{changes}");
    assert!(!logs_in(sshd.port(), &user.name, OLD), "the password checked out before expiry still works");
}

/// The account page's Check and Change now, against a real sshd: the old password stops
/// working, the new one is what the vault holds.
#[tokio::test]
async fn a_password_is_checked_and_changed_from_the_browser() {
    let sshd = Sshd::start();
    let user = UnixUser::create(OLD);
    let server = Server::start(Db::Sqlite);
    let w = world(&server, &sshd, &user, "password", false).await;
    let acct = format!("/api/v1/accounts/{}", w.account_id);
    let (s, v) =
        server.call("PUT", &format!("{acct}/password"), Some(&w.admin), Some(json!({ "password": OLD }))).await;
    assert_eq!(s, 201, "{v}");
    crate::web::run_browser(
        "credentials.py",
        "credentials",
        &[
            ("BASE_URL", &server.url),
            ("ADMIN_PW", crate::harness::ADMIN_PASSWORD),
            ("ACCOUNT", &w.account_id),
            ("SECRET", OLD),
        ],
    );
    let versions = get(&server, &w.admin, &format!("{acct}/credentials")).await;
    assert_eq!(versions[0]["version"], 2, "{versions}");
    assert_ne!(ssh_with_password(sshd.port(), &user.name, OLD, "true").0, Some(0), "the old password still works");
    assert!(!server.all_output().contains(OLD), "the password reached the server log");
}
