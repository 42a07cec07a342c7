//! A requester who knows only names goes from "what may I request" to a proxied shell; the
//! end of access keeps its cause through review; a crash cuts a recording without losing it.

use std::time::Duration;

use serde_json::{json, Value};

use super::{live_sessions, proxy_fingerprint, world, world_on, Interactive, World, ALICE_PW};
use crate::harness::Db;

fn cli(w: &World, cfg: &str, args: &[&str]) -> (bool, Option<i32>, String) {
    let o = w.server.cli(args, &[("PORTCULLIS_CLI_CONFIG", cfg)]);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), o.status.code(), text)
}

fn login(w: &World, user: &str, password: &str) -> String {
    let cfg = w.server.dir.path().join(format!("{user}-cli.json")).display().to_string();
    let o = w.server.cli(
        &["login", "--server", &w.server.url, "--username", user],
        &[("PORTCULLIS_CLI_CONFIG", &cfg), ("PORTCULLIS_PASSWORD", password)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    cfg
}

async fn session_of(w: &World, request: &str) -> Value {
    let mut list = Value::Null;
    for _ in 0..100 {
        list = w.server.call("GET", &format!("/api/v1/sessions?request_id={request}"), Some(&w.admin), None).await.1;
        if list[0]["live"] == false {
            return list[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the session did not end: {list}");
}

#[tokio::test]
async fn names_only_to_a_shell_and_revocation_keeps_its_cause_through_review() {
    let w = world(json!({})).await;
    let admin = login(&w, "admin", crate::harness::ADMIN_PASSWORD);
    // The policy now asks for review (by the administrator), set by names.
    let (_, policy) = w.server.call("GET", "/api/v1/policies", Some(&w.admin), None).await;
    let mut p = policy[0].clone();
    for k in ["id", "created_at", "updated_at", "entitlement_name", "names"] {
        p.as_object_mut().unwrap().remove(k);
    }
    p["settings"]["review_required"] = json!(true);
    p["settings"]["reviewer_user_ids"] = json!(["admin"]);
    let file = w.server.dir.path().join("policy.json");
    std::fs::write(&file, p.to_string()).unwrap();
    let (ok, _, out) = cli(&w, &admin, &["policy", "replace", "ssh", "--file", &file.display().to_string()]);
    assert!(ok, "{out}");

    let alice = login(&w, "alice", ALICE_PW);
    let target = format!("{}@db1", w.user.name);
    let (ok, _, out) = cli(&w, &alice, &["request", "options"]);
    assert!(ok && out.contains(&format!("{target}:ssh")) && out.contains("automatic"), "{out}");
    let (ok, _, out) = cli(&w, &alice, &["request", "create", "--account", &format!("{target}:ssh"), "-o", "json"]);
    assert!(ok, "{out}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let request = created["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    // The proxy's host key, as `ssh` will show it, from the CLI.
    let (ok, _, out) = cli(&w, &alice, &["ssh-proxy"]);
    assert!(ok && out.contains(&proxy_fingerprint(&w)) && out.contains("known_hosts"), "{out}");

    let mut s = Interactive::start(&w);
    live_sessions(&w, 1).await;
    s.send("echo NAMES_ONLY\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, _) =
        w.server.call("POST", &format!("/api/v1/requests/{request}/revoke"), Some(&w.admin), Some(json!({}))).await;
    assert_eq!(code, 200);
    let (_, out) = s.wait(Duration::from_secs(5)).expect("the revoked session ends");
    assert!(out.contains("NAMES_ONLY") && out.contains("revoked") && !out.contains("checked in"), "{out}");
    let session = session_of(&w, &request).await;
    assert_eq!(session["end_reason"], "the request was revoked", "{session}");
    assert_eq!(session["account_name"], w.user.name.as_str(), "{session}");
    let o = w.ssh(&[&w.dest(), "true"], b"");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("was revoked") && !err.contains("checked in"), "{err}");
    let (ok, _, out) = cli(&w, &alice, &["request", "show", &request]);
    assert!(ok && out.contains("pending review (revoked)"), "{out}");
}

#[tokio::test]
async fn a_crash_cuts_the_recording_without_losing_it() {
    let mut w = world(json!({})).await;
    let request = w.request().await;
    let mut s = Interactive::start(&w);
    live_sessions(&w, 1).await;
    for i in 0..3 {
        s.send(&format!("echo CRASH_MARK_{i}\n"));
        // The recorder writes a chunk at least every second.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    w.server.kill9();
    let _ = s.wait(Duration::from_secs(5));
    w.server.restart();

    let session = session_of(&w, &request).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let reason = session["end_reason"].as_str().unwrap();
    assert!(reason.contains("server stopped") && reason.contains("cut after chunk"), "{session}");
    assert!(session["bytes_down"].as_i64().unwrap() > 0, "byte counts kept: {session}");
    assert!(session["bytes_up"].as_i64().unwrap() > 0, "byte counts kept: {session}");
    let started: jiff::Timestamp = session["started_at"].as_str().unwrap().parse().unwrap();
    let ended: jiff::Timestamp = session["ended_at"].as_str().unwrap().parse().unwrap();
    assert!(ended > started && ended.duration_since(started).as_secs() < 30, "ends at its last activity: {session}");

    let (_, v) = w.server.call("GET", &format!("/api/v1/sessions/{id}/recording/verify"), Some(&w.admin), None).await;
    assert_eq!((v["status"].as_str(), v["intact"].as_bool()), (Some("cut"), Some(false)), "{v}");
    assert!(v["chunks"].as_u64().unwrap() >= 1 && v["problem"].as_str().unwrap().contains("cut after chunk"), "{v}");
    let admin = login(&w, "admin", crate::harness::ADMIN_PASSWORD);
    let (ok, code, out) = cli(&w, &admin, &["recording", "verify", &id]);
    assert!(!ok && code == Some(1) && out.contains("CUT (not altered)"), "{out}");
    let cast = w.recording(&id, "asciicast").await;
    assert!(cast.contains("CRASH_MARK_0") && cast.contains("CRASH_MARK_1"), "played up to the cut: {cast}");
    let (ok, _, out) = cli(&w, &admin, &["recording", "play", &id, "--speed", "1000"]);
    assert!(ok && out.contains("CRASH_MARK_0") && out.contains("no final seal"), "{out}");

    // An altered recording is not exported at all: a clear error, audited as a failure.
    let path = w.server.data_dir().join(format!("recordings/{id}.pcrec"));
    let mut raw = std::fs::read(&path).unwrap();
    let n = raw.len();
    raw[n / 2] ^= 0x40;
    std::fs::write(&path, raw).unwrap();
    let (ok, _, out) = cli(&w, &admin, &["recording", "export", &id]);
    assert!(!ok && out.contains("cannot be exported") && out.contains("altered"), "{out}");
    let (_, v) = w.server.call("GET", &format!("/api/v1/sessions/{id}/recording/verify"), Some(&w.admin), None).await;
    assert_eq!(v["status"], "damaged", "{v}");
    let (_, e) =
        w.server.call("GET", "/api/v1/audit/events?action=session.recording_export", Some(&w.admin), None).await;
    let outcomes: Vec<&str> = e["events"].as_array().unwrap().iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert!(outcomes.contains(&"failure") && outcomes.contains(&"success"), "{e}");
}

#[tokio::test]
async fn a_session_recording_plays_in_the_browser() {
    let w = world(json!({})).await;
    let request = w.request().await;
    let o = w.ssh(&[&w.dest(), "echo PLAYBACK_$((6*7))"], b"");
    assert!(String::from_utf8_lossy(&o.stdout).contains("PLAYBACK_42"), "{}", super::text(&o));
    session_of(&w, &request).await;
    crate::web::run_browser(
        "player.py",
        "player",
        &[
            ("BASE_URL", &w.server.url),
            ("USER", "admin"),
            ("PASSWORD", crate::harness::ADMIN_PASSWORD),
            ("REQUEST", &request),
            ("EXPECT", "PLAYBACK_42"),
        ],
    );
}

#[tokio::test]
async fn a_session_started_from_the_browser_opens_with_its_one_time_command() {
    let w = world(json!({})).await;
    let request = w.request().await;
    let out = crate::web::run_browser(
        "launch.py",
        "launch",
        &[("BASE_URL", &w.server.url), ("USER", "alice"), ("PASSWORD", ALICE_PW), ("REQUEST", &request)],
    );
    let command = out.lines().find_map(|l| l.strip_prefix("SSH_COMMAND=")).expect("the page shows an ssh command");
    // `ssh -p PORT TOKEN@HOST`: the token is the user name; no password is asked.
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[..2], ["ssh", "-p"], "{command}");
    let o = std::process::Command::new("ssh")
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-p", words[2], words[3], "echo LAUNCHED_$((2*21))"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("LAUNCHED_42"), "{}", super::text(&o));
    // Used once: the same command is refused afterwards.
    let again = std::process::Command::new("ssh")
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-p", words[2], words[3], "true"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!again.status.success(), "a launch token works once");
}

#[tokio::test]
async fn a_live_session_is_terminated_from_the_browser() {
    let w = world(json!({})).await;
    w.request().await;
    let s = Interactive::start(&w);
    live_sessions(&w, 1).await;
    crate::web::run_browser(
        "terminate.py",
        "terminate",
        &[
            ("BASE_URL", &w.server.url),
            ("USER", "admin"),
            ("PASSWORD", crate::harness::ADMIN_PASSWORD),
            ("REASON", "maintenance window over"),
        ],
    );
    let (_, out) = s.wait(Duration::from_secs(5)).expect("the terminated session ends");
    assert!(out.contains("maintenance window over"), "the user sees the reason: {out}");
}

#[tokio::test]
async fn a_live_session_is_watched_in_the_browser_as_it_happens() {
    watched_live(Db::Sqlite, "watch").await;
}

#[tokio::test]
async fn a_live_session_is_watched_in_the_browser_on_postgres() {
    watched_live(Db::postgres(), "watch-postgres").await;
}

async fn watched_live(db: Db, name: &str) {
    let w = world_on(db, json!({})).await;
    w.request().await;
    let mut s = Interactive::start(&w);
    live_sessions(&w, 1).await;
    let ready = std::env::temp_dir().join(format!("portcullis-watch-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    // Types the command only once the page is watching, so the page can only have it live.
    let mut input = s.input.take().unwrap();
    let typist = {
        let ready = ready.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for _ in 0..600 {
                if ready.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            for _ in 0..10 {
                let _ = input.write_all(b"echo LIVE_$((6*7))_MARK\n").and_then(|_| input.flush());
                std::thread::sleep(Duration::from_millis(1500));
            }
            input
        })
    };
    crate::web::run_browser(
        "watch.py",
        name,
        &[
            ("BASE_URL", &w.server.url),
            ("USER", "admin"),
            ("PASSWORD", crate::harness::ADMIN_PASSWORD),
            ("EXPECT", "LIVE_42_MARK"),
            ("READY_FILE", ready.to_str().unwrap()),
            ("OWNER", "alice"),
            ("OWNER_PASSWORD", ALICE_PW),
        ],
    );
    let _ = std::fs::remove_file(&ready);
    s.input = Some(typist.join().unwrap());
    s.send("exit\n");
    s.wait(Duration::from_secs(10)).expect("the session ends");
    let (_, e) = w.server.call("GET", "/api/v1/audit/events?action=session.watch", Some(&w.admin), None).await;
    let events = e["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["actor_name"] == "admin" && e["outcome"] == "success"), "{e}");
}
