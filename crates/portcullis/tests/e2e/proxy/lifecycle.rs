//! Around sessions: key rotation, idle timeout, EOF and memory, the CLI, User Supplied mode.

use super::*;

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
    assert!(out.contains("no activity for 1 minute"), "{out}");
    assert!(!out.contains("1 minutes"), "{out}");
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

    // Before any session: the list says so in a sentence.
    let o = cli(&["session", "list", "--live"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "No live sessions that you may see.", "{}", text(&o));
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
