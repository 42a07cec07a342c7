//! Retention and legal hold (R-SES-13): a policy's sessions are deleted (recording, search
//! entries, row) that many days after they end, with an audit event saying what was deleted;
//! a legal hold keeps one until released.

use super::*;

async fn gone(w: &World, token: &str, id: &str) -> bool {
    for _ in 0..100 {
        let (s, _) = w.server.call("GET", &format!("/api/v1/sessions/{id}"), Some(token), None).await;
        if s == 404 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn retention_deletes_expired_sessions_but_not_held_ones_sqlite() {
    retention(Db::Sqlite).await;
}

#[tokio::test]
async fn retention_deletes_expired_sessions_but_not_held_ones_postgres() {
    retention(Db::postgres()).await;
}

async fn retention(db: Db) {
    let mut w = world_on(db, json!({ "recording_retention_days": 30 })).await;
    w.request().await;
    let mut ids = Vec::new();
    for word in ["KEEPME", "DROPME"] {
        let o = w.ssh(&[&w.dest(), &format!("echo {word}_$((1+1))")], b"");
        assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{word}_2")), "{}", text(&o));
        for _ in 0..100 {
            let (_, v) = w.server.call("GET", "/api/v1/sessions?live=false", Some(&w.admin), None).await;
            if v.as_array().unwrap().len() > ids.len() {
                ids.push(v[0]["id"].as_str().unwrap().to_owned());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (keep, drop) = (ids[0].clone(), ids[1].clone());

    // A legal hold: Security Policy Administrators and Auditors only; a reason is required.
    let path = format!("/api/v1/sessions/{keep}/legal-hold");
    let (s, _) = w.server.call("PUT", &path, Some(&w.alice), Some(json!({ "reason": "case 17" }))).await;
    assert!(s == 403 || s == 404, "{s}");
    let (s, v) = w.server.call("PUT", &path, Some(&w.admin), Some(json!({ "reason": " " }))).await;
    assert_eq!(s, 422, "{v}");
    let pw = [("PORTCULLIS_PASSWORD", crate::harness::ADMIN_PASSWORD)];
    let o = w.server.cli(&["login", "--server", &w.server.url, "--username", "admin"], &pw);
    assert!(o.status.success(), "{}", text(&o));
    let o = w.server.cli(&["session", "hold", &keep, "--reason", "case 17: the nginx outage"], &[]);
    assert!(o.status.success() && text(&o).contains("under legal hold"), "{}", text(&o));
    let (_, v) = w.server.call("GET", &format!("/api/v1/sessions/{keep}"), Some(&w.admin), None).await;
    assert_eq!(v["legal_hold"], "case 17: the nginx outage", "{v}");

    // Both sessions ended 31 days ago; the server's retention runs at start.
    let day = 86_400_000_000i64;
    w.server.sql(&format!("UPDATE sessions SET started_at = started_at - {0}, ended_at = ended_at - {0}", 31 * day));
    w.server.restart();
    let admin = w.server.login("admin", crate::harness::ADMIN_PASSWORD).await;
    assert!(gone(&w, &admin, &drop).await, "the expired session is deleted");
    let recordings = w.server.data_dir().join("recordings");
    assert!(!recordings.join(format!("{drop}.pcrec")).exists(), "its recording file is deleted");
    let (_, hits) = w.server.call("GET", "/api/v1/recordings/search?q=DROPME_2", Some(&admin), None).await;
    assert_eq!(hits, json!([]), "its search entries are gone");
    let (s, v) = w.server.call("GET", &format!("/api/v1/sessions/{keep}/recording/verify"), Some(&admin), None).await;
    assert_eq!((s, v["intact"].as_bool()), (200, Some(true)), "the held session is kept whole: {v}");

    // The audit keeps that it existed and was deleted, and the hold.
    let (_, page) = w.server.call("GET", "/api/v1/audit/events?limit=1000", Some(&admin), None).await;
    let events = page["events"].as_array().unwrap();
    let expunged = events.iter().find(|e| e["action"] == "session.expunge" && e["object_id"] == drop.as_str());
    let expunged = expunged.unwrap_or_else(|| panic!("session.expunge audited: {page}"));
    assert_eq!(
        (expunged["details"]["user"].as_str(), expunged["details"]["asset"].as_str()),
        (Some("alice"), Some("db1"))
    );
    assert_eq!(expunged["details"]["retention_days"], 30, "{expunged}");
    assert!(expunged["details"]["recording_bytes"].as_u64().unwrap() > 0, "{expunged}");
    assert!(events.iter().any(|e| e["action"] == "session.legal_hold" && e["object_id"] == keep.as_str()));
    let (_, chain) = w.server.call("GET", "/api/v1/audit/verify", Some(&admin), None).await;
    assert_eq!(chain["ok"], Value::Bool(true), "the audit chain still verifies: {chain}");

    // Released: retention applies at its next run.
    let o = w.server.cli(&["session", "release", &keep], &[]);
    assert!(o.status.success() && text(&o).contains("released"), "{}", text(&o));
    w.server.restart();
    let admin = w.server.login("admin", crate::harness::ADMIN_PASSWORD).await;
    assert!(gone(&w, &admin, &keep).await, "released, the expired session is deleted");
    let (_, page) = w.server.call("GET", "/api/v1/audit/events?limit=1000", Some(&admin), None).await;
    assert!(page["events"].as_array().unwrap().iter().any(|e| e["action"] == "session.legal_hold_release"));
}
