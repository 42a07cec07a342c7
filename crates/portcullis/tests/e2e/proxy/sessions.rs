//! Live sessions: interactive recording, revocation and termination, refusals.

use super::*;

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
    // Unconfirmed, the changed identity gets no credential (issue 13, finding 1).
    let o = w.ssh(&[&w.dest(), "true"], b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stderr).contains("another Asset Administrator confirms"), "{}", text(&o));
    w.server.confirm_identity(&w.admin, &w.asset_id).await;
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
    w.server.confirm_identity(&w.admin, &w.asset_id).await;
    w.user.set_password("Changed-Behind-Our-Back-1");
    let o = w.ssh(&[&w.dest(), "true"], b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused the vaulted credential"), "{}", text(&o));
}
