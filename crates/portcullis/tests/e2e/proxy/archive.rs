//! The archive (R-SES-13) against a real S3-compatible server (moto): ended sessions' recordings
//! are copied, verified by listing and downloading, removed locally, and still verify, export and
//! index from the archive; while the store is unreachable nothing is lost and copies resume.

use portcullis_testkit::s3::S3;
use sha2::{Digest, Sha256};

use super::*;

const BUCKET: &str = "pam-recordings";

async fn session_with(w: &World, word: &str) -> String {
    let before = w.server.call("GET", "/api/v1/sessions?live=false", Some(&w.admin), None).await.1;
    let n = before.as_array().map_or(0, Vec::len);
    let o = w.ssh(&[&w.dest(), &format!("echo {word}_$((3*3))")], b"");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{word}_9")), "{}", text(&o));
    for _ in 0..100 {
        let (_, v) = w.server.call("GET", "/api/v1/sessions?live=false", Some(&w.admin), None).await;
        if v.as_array().is_some_and(|a| a.len() > n) {
            return v[0]["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the session did not end");
}

/// Downloads an object as the archiver's credentials allow.
async fn download(s3: &S3, key: &str) -> Vec<u8> {
    use object_store::ObjectStore;
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.url())
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id("pam-archiver")
        .with_secret_access_key("Plant-S3-Secret-9931")
        .with_allow_http(true)
        .build()
        .unwrap();
    store.get(&object_store::path::Path::from(key)).await.unwrap().bytes().await.unwrap().to_vec()
}

/// Waits until the recording is archived and gone from the node's disk.
async fn archived(w: &World, s3: &S3, id: &str) -> bool {
    let key = format!("recordings/{id}.pcrec");
    let local = w.server.data_dir().join(format!("recordings/{id}.pcrec"));
    for _ in 0..200 {
        if s3.keys(BUCKET).contains(&key) && !local.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn archive_sqlite() {
    archive(Db::Sqlite).await;
}

#[tokio::test]
async fn archive_postgres() {
    archive(Db::postgres()).await;
}

async fn archive(db: Db) {
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let url = s3.url();
    let env = [
        ("PORTCULLIS_ARCHIVE_URL", url.as_str()),
        ("PORTCULLIS_ARCHIVE_BUCKET", BUCKET),
        ("PORTCULLIS_ARCHIVE_ACCESS_KEY_ID", "pam-archiver"),
        ("PORTCULLIS_ARCHIVE_SECRET_ACCESS_KEY", "Plant-S3-Secret-9931"),
        ("PORTCULLIS_ARCHIVE_ALLOW_HTTP", "true"),
        ("PORTCULLIS_ARCHIVE_REMOVE_LOCAL", "true"),
        ("PORTCULLIS_ARCHIVE_TIMEOUT_SECONDS", "2"),
    ];
    let mut w = world_with(db, json!({}), &env).await;
    w.request().await;

    // Copied, verified, removed locally; the copy is the recording, byte for byte.
    let first = session_with(&w, "ANCHOR").await;
    assert!(archived(&w, &s3, &first).await, "archived: {:?}\n{}", s3.keys(BUCKET), w.server.all_output());
    let object = download(&s3, &format!("recordings/{first}.pcrec")).await;
    assert!(object.starts_with(b"PCREC\x01"), "the encrypted recording");
    assert!(!object.windows(6).any(|x| x == b"ANCHOR"), "no plaintext in the archive");
    let (_, page) =
        w.server.call("GET", "/api/v1/audit/events?action=session.archive&limit=100", Some(&w.admin), None).await;
    let event = page["events"].as_array().unwrap().iter().find(|e| e["object_id"] == first.as_str()).cloned();
    let event = event.unwrap_or_else(|| panic!("session.archive audited: {page}"));
    assert_eq!(event["details"]["sha256"], hex::encode(Sha256::digest(&object)), "{event}");
    assert_eq!(event["details"]["bytes"], object.len() as u64);

    // Verified, exported and searched from the archive.
    let (s, v) =
        w.server.call("GET", &format!("/api/v1/sessions/{first}/recording/verify"), Some(&w.admin), None).await;
    assert_eq!((s, v["intact"].as_bool()), (200, Some(true)), "{v}");
    assert!(w.recording(&first, "asciicast").await.contains("ANCHOR_9"));
    w.server.stop();
    std::fs::remove_dir_all(w.server.data_dir().join("search")).unwrap();
    std::fs::remove_dir_all(w.server.data_dir().join("archive-cache")).ok();
    w.server.restart();
    let admin = w.server.login("admin", crate::harness::ADMIN_PASSWORD).await;
    let mut found = false;
    for _ in 0..100 {
        let (_, v) = w.server.call("GET", "/api/v1/recordings/search?q=ANCHOR_9", Some(&admin), None).await;
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "indexed again from the archived copy");

    // The store unreachable: the next recording stays on disk (playable), nothing is lost.
    s3.pause();
    let second = session_with(&w, "PELICAN").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let local = w.server.data_dir().join(format!("recordings/{second}.pcrec"));
    assert!(local.exists(), "kept on disk while the archive is down");
    assert!(w.recording(&second, "asciicast").await.contains("PELICAN_9"));
    assert!(w.server.all_output().contains("cannot archive a recording"), "the outage is logged");

    // Back: the copy is made and verified, the local file removed.
    s3.resume();
    assert!(archived(&w, &s3, &second).await, "copies resumed: {:?}", s3.keys(BUCKET));
    assert!(w.recording(&second, "asciicast").await.contains("PELICAN_9"), "played from the archive");
    assert!(!w.server.all_output().contains("Plant-S3-Secret-9931"), "the secret key is never logged");
}
