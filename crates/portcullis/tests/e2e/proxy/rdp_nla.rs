//! NLA towards a target: FreeRDP's shadow server (which requires NLA, against its own SAM
//! file) as the target, the real `xfreerdp` as the client. The proxy signs in to the target
//! over CredSSP with the vaulted password after the client's own NLA sign-in (a launch token);
//! a target refusing the vaulted password ends the connection with the reason audited; a
//! TLS-only sign-in is told the target requires NLA.

use std::time::Duration;

use portcullis_testkit::rdp::{xfreerdp, Shadow, Xvfb};
use serde_json::json;

use super::rdp::{admit_rdp, assert_reason, audit, desktop_shown, exits, kill, launch_token, request_rdp, T};
use super::{post, world_with, ALICE_PW, TARGET_PW};
use crate::harness::Db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdp_nla_target() {
    let w = world_with(Db::Sqlite, json!({}), &[]).await;
    let shadow = Shadow::start(&w.user.name, TARGET_PW, "portcullis nla desktop");
    let account = super::protocol_account(&w, "ws2", "rdp", shadow.port()).await;
    admit_rdp(&w).await;
    let x = Xvfb::start();
    let logs = tempfile::tempdir().unwrap();
    let log = |n: &str| logs.path().join(n);
    let read = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();
    let inband = format!("alice#{}@ws2", w.user.name);

    // Directly, with the account's password over NLA: the target's screen.
    let direct = xfreerdp(&x.display, shadow.port(), &w.user.name, TARGET_PW, &["/sec:nla"], &log("direct"));
    let shown =
        desktop_shown(&x, T).unwrap_or_else(|| panic!("no desktop directly:\n{}\n{}", read("direct"), shadow.log()));
    kill(direct);
    std::thread::sleep(Duration::from_secs(1));

    // The Portcullis password (TLS sign-in): the target's "NLA required" reaches the client.
    let request = request_rdp(&w, &account).await;
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &log("tls"));
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("tls"));
    assert!(read("tls").contains("HYBRID_REQUIRED_BY_SERVER"), "{}", read("tls"));

    // A token whose request was revoked since: NLA proves it, the authorization refuses it, and
    // the client is told (Set Error Info) before anything reaches the target.
    let token = launch_token(&w, &request).await;
    let (st, _) = post(&w.server, &w.admin, &format!("/api/v1/requests/{request}/revoke"), json!({})).await;
    assert_eq!(st, 200);
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, &token, &["/sec:nla"], &log("revoked"));
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("revoked"));
    assert!(read("revoked").contains("ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES"), "{}", read("revoked"));
    assert_reason(&w, "session.refused", "revoked").await;

    // A launch token (NLA on the client leg): the proxy signs in to the target over NLA with
    // the vaulted password; the target's screen appears as it does directly.
    let request = request_rdp(&w, &account).await;
    let token = launch_token(&w, &request).await;
    let c = xfreerdp(&x.display, w.server.rdp_port, &inband, &token, &["/sec:nla"], &log("nla"));
    let through = desktop_shown(&x, T)
        .unwrap_or_else(|| panic!("no desktop through the proxy:\n{}\n{}", read("nla"), shadow.log()));
    let same = through.same_share(&shown, 800, 600);
    assert!(same > 0.97, "the desktop through the proxy differs from the direct one ({same:.3} of pixels equal)");
    let (_, live) = w.server.call("GET", "/api/v1/sessions?live=true", Some(&w.admin), None).await;
    assert!(live.as_array().is_some_and(|s| s.iter().any(|s| s["protocol"] == "rdp")), "{live}");
    kill(c);

    // The target refuses the vaulted password over NLA: closed, the reason audited; the
    // password shows nowhere.
    let path = format!("/api/v1/accounts/{account}/password");
    let (s, _) = w.server.call("PUT", &path, Some(&w.admin), Some(json!({ "password": "Wrong-Vaulted-1" }))).await;
    assert_eq!(s, 201);
    let token = launch_token(&w, &request).await;
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, &token, &["/sec:nla"], &log("refused"));
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("refused"));
    assert!(read("refused").contains("ERRINFO_SERVER_DENIED_CONNECTION"), "{}", read("refused"));
    assert_reason(&w, "session.refused", "did not accept the vaulted credential over NLA").await;
    let out = w.server.all_output();
    for secret in [TARGET_PW, "Wrong-Vaulted-1", ALICE_PW, token.as_str()] {
        assert!(!out.contains(secret), "a secret in the server's output");
        // As NTLM and CredSSP carry it: UTF-16, as hex in a debug trace.
        let utf16: Vec<u8> = secret.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let hex: String = utf16.iter().map(|b| format!("{b:02X}")).collect();
        assert!(!out.to_uppercase().contains(&hex), "a secret (UTF-16 hex) in the server's output");
    }
}

/// `[rdp] nla_passwords` on: NLA takes the Portcullis password (checked by NTLM against the NT
/// hash kept, sealed, since the user's last sign-in with it), on both legs; a wrong one is a
/// logon failure and counts as a failed sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdp_nla_with_passwords() {
    let w = world_with(Db::Sqlite, json!({}), &[("PORTCULLIS_RDP_NLA_PASSWORDS", "true")]).await;
    let shadow = Shadow::start(&w.user.name, TARGET_PW, "portcullis nla desktop");
    let account = super::protocol_account(&w, "ws2", "rdp", shadow.port()).await;
    admit_rdp(&w).await;
    request_rdp(&w, &account).await;
    let x = Xvfb::start();
    let logs = tempfile::tempdir().unwrap();
    let log = |n: &str| logs.path().join(n);
    let read = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();
    let inband = format!("alice#{}@ws2", w.user.name);

    let mut c = xfreerdp(
        &x.display,
        w.server.rdp_port,
        &inband,
        "not alice's password",
        &["/sec:nla", "+auth-only"],
        &log("wrong"),
    );
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("wrong"));
    assert!(read("wrong").contains("LOGON_FAILURE"), "{}", read("wrong"));
    let events = audit(&w).await;
    assert!(
        events.iter().any(|e| e["action"] == "auth.login"
            && e["outcome"] == "failure"
            && e["details"]["reason"].as_str().is_some_and(|r| r.contains("RDP NLA"))),
        "{events:?}"
    );

    let c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &["/sec:nla"], &log("nla"));
    if desktop_shown(&x, T).is_none() {
        panic!("no desktop with the password over NLA:\n{}\n{}", read("nla"), shadow.log());
    }
    let (_, live) = w.server.call("GET", "/api/v1/sessions?live=true", Some(&w.admin), None).await;
    assert!(live.as_array().is_some_and(|s| s.iter().any(|s| s["protocol"] == "rdp")), "{live}");
    kill(c);
    let out = w.server.all_output().to_uppercase();
    for secret in [ALICE_PW, TARGET_PW] {
        let utf16: String = secret.encode_utf16().flat_map(u16::to_le_bytes).map(|b| format!("{b:02X}")).collect();
        assert!(!out.contains(&secret.to_uppercase()) && !out.contains(&utf16), "a password in the server's output");
    }
}
