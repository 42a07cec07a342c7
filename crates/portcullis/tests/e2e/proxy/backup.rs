//! Backup and restore (R-SES-13): `portcullis backup` on a running server, then `portcullis
//! restore` into a fresh data directory (and database) given only the vault key: the audit log
//! and the recordings verify, sign-in works, the vaulted credential opens, the session is found
//! by search (the index rebuilt). The backup never holds the vault key, nor other keys in the
//! clear.

use super::*;

#[tokio::test]
async fn backup_and_restore_sqlite() {
    backup_and_restore(Db::Sqlite).await;
}

#[tokio::test]
async fn backup_and_restore_postgres() {
    backup_and_restore(Db::postgres()).await;
}

async fn backup_and_restore(db: Db) {
    let w = world_on(db, json!({})).await;
    w.request().await;
    let o = w.ssh(&[&w.dest(), "echo HERON_$((4*4))"], b"");
    assert!(String::from_utf8_lossy(&o.stdout).contains("HERON_16"), "{}", text(&o));
    let session = live_or_ended(&w).await;

    // Written while the server runs.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.tar");
    let o = w.server.local(&["backup", "--to", file.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("Backup written"), "{}", text(&o));
    assert!(text(&o).contains("Keep the vault key"), "{}", text(&o));
    let tar = std::fs::read(&file).unwrap();
    for key in ["vault.kek", "audit.key", "ssh_host_ed25519_key"] {
        let bytes = std::fs::read(w.server.data_dir().join("keys").join(key)).unwrap();
        let probe = &bytes[..bytes.len().min(32)];
        assert!(!tar.windows(probe.len()).any(|x| x == probe), "{key} in the clear in the backup");
    }
    assert!(!tar.windows(TARGET_PW.len()).any(|x| x == TARGET_PW.as_bytes()), "no vaulted password in the clear");

    // Restored without the vault key: refused, saying what to do.
    let empty = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["restore", "--from", file.to_str().unwrap()])
        .env_clear()
        .env("PORTCULLIS_STORAGE_DATA_DIR", empty.path().join("data"))
        .output()
        .unwrap();
    assert!(!o.status.success() && text(&o).contains("copy keys/vault.kek"), "{}", text(&o));

    // Restored into a fresh directory with the vault key: everything verifies.
    let (restored, o) = w.server.restored(&file);
    assert!(o.status.success() && text(&o).contains("Restored into"), "{}", text(&o));
    let admin = restored.login("admin", crate::harness::ADMIN_PASSWORD).await;
    let (_, chain) = restored.call("GET", "/api/v1/audit/verify", Some(&admin), None).await;
    assert_eq!(chain["ok"], Value::Bool(true), "the audit log verifies after the restore: {chain}");
    let (s, v) =
        restored.call("GET", &format!("/api/v1/sessions/{session}/recording/verify"), Some(&admin), None).await;
    assert_eq!((s, v["intact"].as_bool()), (200, Some(true)), "{v}");
    let mut found = json!([]);
    for _ in 0..100 {
        let (_, v) = restored.call("GET", "/api/v1/recordings/search?q=HERON_16", Some(&admin), None).await;
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            found = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found[0]["session_id"], session.as_str(), "the index is rebuilt from the restored recordings");
    // A session through the restored server logs in with the vaulted password (the vault key
    // and the restored database agree).
    let alice = restored.login("alice", ALICE_PW).await;
    let (s, out) = restored
        .call(
            "POST",
            "/api/v1/requests",
            Some(&alice),
            Some(json!({ "accounts": [{ "account_id": w.account_id, "access_type": "ssh" }] })),
        )
        .await;
    assert!(s == 200 || s == 201, "{out}");
    let o = w
        .base("ssh", ALICE_PW)
        .args(["-p", &restored.ssh_port.to_string(), &w.dest(), "echo RESTORED_$((2+2))"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("RESTORED_4"), "the vaulted password opens: {}", text(&o));

    // A second restore into the same directory is refused.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["restore", "--from", file.to_str().unwrap()])
        .env_clear()
        .env("PORTCULLIS_STORAGE_DATA_DIR", restored.data_dir())
        .output()
        .unwrap();
    assert!(!o.status.success() && text(&o).contains("already holds a Portcullis server"), "{}", text(&o));
}
