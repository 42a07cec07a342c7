//! SIGKILL during a write loop: after a restart every acknowledged write is there, the
//! database is intact and the audit chain verifies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{Db, Server};

async fn run(db: Db, sqlite: bool) {
    let mut server = Server::start(db);
    let admin = server.bootstrap().await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (url, token, acked, client) = (server.url.clone(), admin.clone(), acked.clone(), server.client());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let name = format!("w{w}-{n}");
                let body = json!({ "name": name, "address": "10.9.9.9", "platform": "linux" });
                match client.post(format!("{url}/api/v1/assets")).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status() == 201 => acked.lock().unwrap().push(name),
                    Ok(r) => panic!("unexpected status {} while writing", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 10, "too few writes before the kill: {}", acked.len());

    server.restart();
    let mut names: Vec<String> = Vec::new();
    loop {
        let (s, page) =
            server.call("GET", &format!("/api/v1/assets?limit=1000&offset={}", names.len()), Some(&admin), None).await;
        assert_eq!(s, 200, "{page}");
        let page = page.as_array().unwrap();
        names.extend(page.iter().map(|a| a["name"].as_str().unwrap().to_owned()));
        if page.len() < 1000 {
            break;
        }
    }
    let stored: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    for name in &acked {
        assert!(stored.contains(name.as_str()), "acknowledged write {name} was lost");
    }
    assert!(names.len() <= acked.len() + 4, "more writes than requests in flight");
    let (_, report) = server.call("GET", "/api/v1/audit/verify", Some(&admin), None).await;
    assert_eq!(report["ok"], Value::Bool(true), "{report}");
    assert_eq!(report["checked"].as_u64().unwrap() as usize, 2 + names.len(), "one event per write, no more, no less");
    if sqlite {
        let out = std::process::Command::new("sqlite3")
            .arg(server.data_dir().join("portcullis.db"))
            .arg("PRAGMA integrity_check")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_write_sqlite() {
    run(Db::Sqlite, true).await;
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_write_postgres() {
    run(Db::postgres(), false).await;
}
