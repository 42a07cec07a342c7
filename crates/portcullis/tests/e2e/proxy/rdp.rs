//! The RDP proxy with the real FreeRDP client (`xfreerdp` under Xvfb) and a real xrdp target
//! (its session manager logging a throwaway Unix user in to an Xorg session): sign-in with
//! USER#ACCOUNT@ASSET and the Portcullis password, the connection policy, the request check,
//! injection of the vaulted password (the desktop appears as it does directly), channel
//! policy, revocation, a target refusing the credential, recording and its verification.

use std::process::Child;
use std::time::{Duration, Instant};

use portcullis_testkit::rdp::{desktop, xfreerdp, Screen, Xrdp, Xvfb};
use serde_json::{json, Value};

use super::{post, world_with, World, ALICE_PW, TARGET_PW};
use crate::harness::Db;

pub(super) const T: Duration = Duration::from_secs(30);

/// The world's user as an RDP account on asset `ws1` (the real xrdp), with its vaulted
/// password, and a policy giving alice RDP access (auto-approved). Returns the account id.
async fn rdp_account(w: &World, xrdp: &Xrdp) -> String {
    super::protocol_account(w, "ws1", "rdp", xrdp.port()).await
}

pub(super) async fn request_rdp(w: &World, account: &str) -> String {
    let body = json!({ "accounts": [{ "account_id": account, "access_type": "rdp" }] });
    let (s, out) = post(&w.server, &w.alice, "/api/v1/requests", body).await;
    assert!(s == 200 || s == 201, "{out}");
    let r = &out["outcomes"][0]["request"];
    assert_eq!(r["state"], "available", "{out}");
    r["id"].as_str().unwrap().to_owned()
}

/// Waits for the client to exit; its exit code.
pub(super) fn exits(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The client's window once the desktop's window (xmessage) shows in it: many colors, and the
/// same picture twice in a row.
pub(super) fn desktop_shown(x: &Xvfb, within: Duration) -> Option<Screen> {
    let deadline = Instant::now() + within;
    let mut last: Option<Screen> = None;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = x.screenshot();
        if now.colors(800, 600) >= 3 {
            if let Some(prev) = &last {
                if prev.same_share(&now, 800, 600) > 0.999 {
                    return Some(now);
                }
            }
            last = Some(now);
        }
    }
    None
}

pub(super) fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// A connection policy admitting RDP from 127.0.0.0/8 ("rdp-lab").
pub(super) async fn admit_rdp(w: &World) {
    let body = json!({ "name": "rdp-lab", "protocol": "rdp", "clients": ["127.0.0.0/8"] });
    let (s, p) = post(&w.server, &w.admin, "/api/v1/connection-policies", body).await;
    assert_eq!(s, 201, "{p}");
}

/// Asserts an audited `action` whose reason holds `text`.
pub(super) async fn assert_reason(w: &World, action: &str, text: &str) {
    let events = audit(w).await;
    assert!(
        events
            .iter()
            .any(|e| e["action"] == action && e["details"]["reason"].as_str().is_some_and(|r| r.contains(text))),
        "no {action} event saying '{text}': {events:?}"
    );
}

/// A one-time launch token of alice's request.
pub(super) async fn launch_token(w: &World, request: &str) -> String {
    let (st, l) = post(&w.server, &w.alice, &format!("/api/v1/requests/{request}/launch"), json!({})).await;
    assert_eq!(st, 200, "{l}");
    l["token"].as_str().unwrap().to_owned()
}

pub(super) async fn audit(w: &World) -> Vec<Value> {
    let (_, page) = w.server.call("GET", "/api/v1/audit/events?limit=1000", Some(&w.admin), None).await;
    page["events"].as_array().cloned().unwrap_or_default()
}

async fn live(w: &World) -> Vec<Value> {
    let (_, v) = w.server.call("GET", "/api/v1/sessions?live=true", Some(&w.admin), None).await;
    v.as_array().cloned().unwrap_or_default()
}

async fn rdp_end_to_end(db: Db, browser: bool) {
    let w = world_with(db, json!({}), &[("PORTCULLIS_RDP_LOGON_TIMEOUT_SECONDS", "8")]).await;
    let xrdp = Xrdp::start();
    desktop(&w.user, "portcullis rdp desktop");
    let account = rdp_account(&w, &xrdp).await;
    let x = Xvfb::start();
    let logs = tempfile::tempdir().unwrap();
    let log = |n: &str| logs.path().join(n);
    let read = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();
    let inband = format!("alice#{}@ws1", w.user.name);

    // Directly, with the account's password: the desktop as the target shows it.
    let direct = xfreerdp(&x.display, xrdp.port(), &w.user.name, TARGET_PW, &[], &log("direct"));
    let shown =
        desktop_shown(&x, T).unwrap_or_else(|| panic!("no desktop directly:\n{}\n{}", read("direct"), xrdp.log()));
    kill(direct);
    std::thread::sleep(Duration::from_secs(1));

    // No connection policy admits RDP on a fresh install: closed before any target contact.
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &log("nopolicy"));
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("nopolicy"));
    admit_rdp(&w).await;

    // A wrong Portcullis password: refused, nothing logged in on the target.
    let sessions_before = xrdp.log().matches("created session").count();
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, "not alice's password", &[], &log("wrong"));
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("wrong"));
    assert!(read("wrong").contains("ERRINFO_SERVER_DENIED_CONNECTION"), "{}", read("wrong"));
    assert_eq!(xrdp.log().matches("created session").count(), sessions_before, "the target saw no login");

    // No request yet: refused, and the reason audited.
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &log("norequest"));
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("norequest"));
    assert!(read("norequest").contains("ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES"), "{}", read("norequest"));
    assert_reason(&w, "session.refused", "you have no RDP access request").await;

    // With an available request: the proxy logs in with the vaulted password; the desktop is
    // the one seen directly.
    let request = request_rdp(&w, &account).await;
    let proxied = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &log("proxied"));
    let through = desktop_shown(&x, T).unwrap_or_else(|| panic!("no desktop through the proxy:\n{}", read("proxied")));
    let same = through.same_share(&shown, 800, 600);
    assert!(same > 0.97, "the desktop through the proxy differs from the direct one ({same:.3} of pixels equal)");
    let sessions = live(&w).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["protocol"], "rdp", "{sessions:?}");
    let logged_on = || w.server.all_output().contains("rdp: the target reports the logon");
    assert!(
        portcullis_testkit::process::wait_until(T, logged_on),
        "the target's logon notification was seen: {}",
        w.server.all_output().lines().filter(|l| l.contains("rdp:")).take(80).collect::<Vec<_>>().join("\n")
    );
    let id = sessions[0]["id"].as_str().unwrap().to_owned();
    let (_, asset) = w.server.call("GET", "/api/v1/assets?limit=100", Some(&w.admin), None).await;
    let ws1 = asset.as_array().unwrap().iter().find(|a| a["name"] == "ws1").unwrap().clone();
    assert!(ws1["tls_fingerprint"].as_str().is_some_and(|f| f.starts_with("sha256:")), "pinned on first use: {ws1}");

    // The clipboard is refused by the connection policy (it lists no channels): audited.
    let events = audit(&w).await;
    assert!(
        events.iter().any(|e| e["action"] == "session.channel_refused" && e["details"]["channel"] == "cliprdr"),
        "{events:?}"
    );

    // Watched live (four-eyes authorizers, administrators): the first look has the target
    // redraw, and the screen a moment later is the desktop.
    let live_url = format!("{}/api/v1/sessions/{id}/live-screen", w.server.url);
    let first = w.server.client().get(&live_url).bearer_auth(&w.admin).send().await.unwrap();
    assert!(first.status() == 200 || first.status() == 202, "{}", first.status());
    let mut watched = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = w.server.client().get(&live_url).bearer_auth(&w.admin).send().await.unwrap();
        if r.status() == 200 {
            let screen = decode_png(&r.bytes().await.unwrap());
            if screen.same_share(&shown, 800, 600) > 0.95 {
                watched = Some(screen);
                break;
            }
        }
    }
    assert!(watched.is_some(), "the live screen shows the desktop");
    if browser {
        let env = [
            ("BASE_URL", w.server.url.as_str()),
            ("USER", "admin"),
            ("PASSWORD", crate::harness::ADMIN_PASSWORD),
            ("SESSION", id.as_str()),
        ];
        crate::web::run_browser("rdp_watch.py", "rdp-watch", &env);
    }

    // Revoked: the client is disconnected within a second or so, told it was ended.
    let mut proxied = proxied;
    let t0 = Instant::now();
    let (s, _) = post(&w.server, &w.admin, &format!("/api/v1/requests/{request}/revoke"), json!({})).await;
    assert_eq!(s, 200);
    assert!(exits(&mut proxied, Duration::from_secs(10)).is_some(), "{}", read("proxied"));
    assert!(t0.elapsed() < Duration::from_secs(3), "ended after {:?}", t0.elapsed());
    assert!(read("proxied").contains("ERRINFO_RPC_INITIATED_DISCONNECT"), "{}", read("proxied"));
    for _ in 0..100 {
        if live(&w).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, s) = w.server.call("GET", &format!("/api/v1/sessions/{id}"), Some(&w.admin), None).await;
    assert_eq!(s["end_reason"], "the request was revoked", "{s}");

    // The reviewer's pictures: the frames decoded from the recorded PDUs show the desktop as it
    // was seen directly; a still at a moment is that frame.
    let (st, frames) = w.server.call("GET", &format!("/api/v1/sessions/{id}/frames"), Some(&w.admin), None).await;
    assert_eq!(st, 200, "{frames}");
    let list = frames["frames"].as_array().unwrap().clone();
    assert!(!list.is_empty(), "{frames}");
    let last = list.last().unwrap();
    let get = |path: String| {
        let (client, url, admin) = (w.server.client(), format!("{}{path}", w.server.url), w.admin.clone());
        async move {
            let r = client.get(url).bearer_auth(admin).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().to_vec()
        }
    };
    let frame = decode_png(&get(format!("/api/v1/sessions/{id}/frames/{}", last["index"])).await);
    let same = frame.same_share(&shown, 800, 600);
    assert!(same > 0.95, "the replayed screen differs from the desktop ({same:.3} of pixels equal)");
    let at = last["at_ms"].as_u64().unwrap() as f64 / 1000.0 + 0.2;
    let still = decode_png(&get(format!("/api/v1/sessions/{id}/screen?at={at}")).await);
    assert!(still.same_share(&frame, 800, 600) > 0.999);
    let (st, e) = w.server.call("GET", &format!("/api/v1/sessions/{id}/screen?at=-1"), Some(&w.admin), None).await;
    assert_eq!((st, e["code"].as_str()), (422, Some("validation_failed")), "{e}");
    let (st, e) = w.server.call("GET", &format!("/api/v1/sessions/{id}/recording"), Some(&w.admin), None).await;
    assert!(st == 422 && e["message"].as_str().unwrap().contains("export it as frames"), "{e}");

    // The reviewer plays it in the web UI.
    if browser {
        let env = [
            ("BASE_URL", w.server.url.as_str()),
            ("USER", "admin"),
            ("PASSWORD", crate::harness::ADMIN_PASSWORD),
            ("REQUEST", request.as_str()),
        ];
        crate::web::run_browser("rdp_player.py", "rdp-player", &env);
    }

    // Exported with the CLI: PNG frames and an ffmpeg concat list.
    let cfg = w.server.dir.path().join("admin.json").display().to_string();
    let o = w.server.cli(
        &["login", "--server", &w.server.url, "--username", "admin"],
        &[("PORTCULLIS_CLI_CONFIG", &cfg), ("PORTCULLIS_PASSWORD", crate::harness::ADMIN_PASSWORD)],
    );
    assert!(o.status.success(), "{o:?}");
    let tar = logs.path().join("frames.tar");
    let o = w.server.cli(
        &["recording", "export", &id, "--format", "frames", "-f", tar.to_str().unwrap()],
        &[("PORTCULLIS_CLI_CONFIG", &cfg)],
    );
    assert!(o.status.success(), "{o:?}");
    let listing = std::process::Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let names = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(names.contains("000000.png") && names.contains("frames.ffconcat"), "{names}");
    assert_eq!(names.lines().filter(|n| n.ends_with(".png")).count(), list.len(), "{names}");

    // The recording: PDUs both ways, verified; neither password in it or in the logs.
    let events = w.recording(&id, "events").await;
    assert!(events.lines().filter(|l| l.contains("\"output\"")).count() > 10, "{}", &events[..events.len().min(2000)]);
    assert!(!events.contains(TARGET_PW) && !events.contains(ALICE_PW));
    for pw in [TARGET_PW, ALICE_PW] {
        // As the Client Info PDU carries it (UTF-16), in the JSON export (NUL escaped).
        let utf16: String = pw.chars().map(|c| format!("{c}\\u0000")).collect();
        assert!(events.contains("\\u0000"), "the export shows binary data as escapes");
        assert!(!events.contains(&utf16), "a password (UTF-16, as the Client Info PDU carries it) is in the recording");
    }
    for name in ["direct", "proxied"] {
        assert!(!read(name).contains(TARGET_PW) || name == "direct");
    }
    let out = w.server.all_output();
    assert!(!out.contains(TARGET_PW) && !out.contains(ALICE_PW), "no password in the server's output");

    // A one-time launch token (the request's "start session"): the NLA password (CredSSP
    // proves it; it is never sent in the clear, nor before TLS); the desktop appears; once.
    let request = request_rdp(&w, &account).await;
    let (st, l) = post(&w.server, &w.alice, &format!("/api/v1/requests/{request}/launch"), json!({})).await;
    assert_eq!(st, 200, "{l}");
    let token = l["token"].as_str().unwrap().to_owned();
    assert!(l["freerdp"].as_str().unwrap().contains(&format!("/u:{inband} /p:{token}")), "{l}");
    let file = l["rdp_file"].as_str().unwrap();
    assert!(file.contains(&format!("username:s:{inband}")) && file.contains("enablecredsspsupport:i:1"), "{l}");
    assert!(!file.contains(&token), "the .rdp file holds no token: {l}");
    assert!(l.get("ssh").is_none(), "{l}");
    // FreeRDP's NLA-only check (+auth-only) with the Portcullis password: a logon failure
    // (NLA signs in with launch tokens), audited; the token stays usable.
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &["/sec:nla", "+auth-only"], &log("nla-pw"));
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("nla-pw"));
    assert!(read("nla-pw").contains("LOGON_FAILURE"), "{}", read("nla-pw"));
    let events = audit(&w).await;
    assert!(
        events.iter().any(|e| e["action"] == "session.launch_token"
            && e["details"]["reason"].as_str().is_some_and(|r| r.contains("NLA sign-in as"))),
        "{events:?}"
    );
    let launched = xfreerdp(&x.display, w.server.rdp_port, &inband, &token, &["/sec:nla"], &log("launched"));
    let seen = desktop_shown(&x, T).unwrap_or_else(|| panic!("no desktop with a launch token:\n{}", read("launched")));
    assert!(seen.same_share(&shown, 800, 600) > 0.97);
    assert_eq!(live(&w).await.len(), 1);
    kill(launched);
    let mut again = xfreerdp(&x.display, w.server.rdp_port, &inband, &token, &["/sec:nla"], &log("again"));
    // Used: no NLA for this user any more (TLS is offered, for the Portcullis password), which an
    // NLA-only client refuses.
    assert!(exits(&mut again, T).is_some_and(|code| code != 0), "a used token is refused: {}", read("again"));
    assert!(read("again").contains("NEGO"), "{}", read("again"));
    // A token in the load-balancing info (TLS) still works, for clients without NLA.
    let (st, l) = post(&w.server, &w.alice, &format!("/api/v1/requests/{request}/launch"), json!({})).await;
    assert_eq!(st, 200, "{l}");
    let balance = format!("/load-balance-info:{}", l["token"].as_str().unwrap());
    let launched = xfreerdp(&x.display, w.server.rdp_port, "alice", "token", &[&balance], &log("balanced"));
    desktop_shown(&x, T).unwrap_or_else(|| panic!("no desktop with a routing token:\n{}", read("balanced")));
    kill(launched);
    let out = w.server.all_output();
    assert!(!out.contains(&token), "no launch token in the server's output");
    let (st, _) = post(&w.server, &w.admin, &format!("/api/v1/requests/{request}/revoke"), json!({})).await;
    assert_eq!(st, 200);

    // A target that refuses the vaulted password: the session ends with that reason.
    let (s, _) = w
        .server
        .call(
            "PUT",
            &format!("/api/v1/accounts/{account}/password"),
            Some(&w.admin),
            Some(json!({ "password": "Wrong-Vaulted-1" })),
        )
        .await;
    assert_eq!(s, 201);
    request_rdp(&w, &account).await;
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &log("refused"));
    assert!(exits(&mut c, Duration::from_secs(40)).is_some(), "{}", read("refused"));
    assert!(read("refused").contains("ERRINFO_SERVER_DENIED_CONNECTION"), "{}", read("refused"));
    let (_, all) = w.server.call("GET", "/api/v1/sessions?limit=10", Some(&w.admin), None).await;
    let last = all.as_array().unwrap().iter().find(|s| s["id"] != id.as_str()).cloned().unwrap_or_default();
    assert!(last["end_reason"].as_str().is_some_and(|r| r.contains("did not accept the vaulted credential")), "{all}");
}

/// A PNG picture as a screen.
fn decode_png(bytes: &[u8]) -> Screen {
    let decoder = png::Decoder::new(bytes);
    let mut reader = decoder.read_info().expect("a PNG picture");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    Screen { width: info.width as usize, height: info.height as usize, pixels: buf }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdp_sqlite() {
    rdp_end_to_end(Db::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdp_postgres() {
    rdp_end_to_end(Db::postgres(), false).await;
}

/// Four-eyes over RDP: the connection waits (the RDP client cannot be told; the wait shows to
/// authorizers) until a member of the policy's group permits it; a denial refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdp_four_eyes() {
    const BOB_PW: &str = "bob password 7654321";
    let w = world_with(Db::Sqlite, json!({}), &[]).await;
    let xrdp = Xrdp::start();
    desktop(&w.user, "portcullis rdp desktop");
    let account = rdp_account(&w, &xrdp).await;
    let (_, bob) = post(
        &w.server,
        &w.admin,
        "/api/v1/users",
        json!({ "username": "bob", "display_name": "Bob", "password": BOB_PW }),
    )
    .await;
    let (_, ops) = post(&w.server, &w.admin, "/api/v1/user-groups", json!({ "name": "ops" })).await;
    let member = format!("/api/v1/user-groups/{}/members/{}", ops["id"].as_str().unwrap(), bob["id"].as_str().unwrap());
    let (s, _) = w.server.call("PUT", &member, Some(&w.admin), None).await;
    assert_eq!(s, 200);
    let bob = w.server.login("bob", BOB_PW).await;
    let body = json!({ "name": "rdp-4e", "protocol": "rdp", "clients": ["127.0.0.0/8"], "four_eyes_groups": [ops["id"]], "wait_seconds": 60 });
    let (s, p) = post(&w.server, &w.admin, "/api/v1/connection-policies", body).await;
    assert_eq!(s, 201, "{p}");
    request_rdp(&w, &account).await;
    let x = Xvfb::start();
    let logs = tempfile::tempdir().unwrap();
    let read = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();
    let inband = format!("alice#{}@ws1", w.user.name);
    let waiting = || async {
        for _ in 0..200 {
            let (_, list) = w.server.call("GET", "/api/v1/session-waits", Some(&bob), None).await;
            if let Some(found) = list.as_array().and_then(|l| l.iter().find(|x| x["kind"] == "four_eyes")) {
                return found["id"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no four-eyes wait appeared");
    };

    // Denied: refused, with the authorizer's reason audited.
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &logs.path().join("denied"));
    let id = waiting().await;
    let (s, b) = post(
        &w.server,
        &bob,
        &format!("/api/v1/session-waits/{id}/deny"),
        json!({ "reason": "not during the freeze" }),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("denied"));
    assert!(read("denied").contains("ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES"), "{}", read("denied"));
    let events = audit(&w).await;
    assert!(
        events.iter().any(|e| e["action"] == "session.refused"
            && e["details"]["reason"].as_str().is_some_and(|r| r.contains("not during the freeze"))),
        "{events:?}"
    );

    // Permitted: the desktop appears; the session names its authorizer.
    let c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &logs.path().join("permitted"));
    let id = waiting().await;
    let (s, b) = post(&w.server, &bob, &format!("/api/v1/session-waits/{id}/permit"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert!(desktop_shown(&x, T).is_some(), "no desktop after the permit:\n{}", read("permitted"));
    assert_eq!(live(&w).await.len(), 1);
    kill(c);
}

/// User Supplied account mode over RDP: with a launch token, the password the user gives the
/// client is the one the proxy logs in with; signing in with the Portcullis password in-band
/// is refused (the client cannot be asked for a second one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdp_user_supplied() {
    let w = world_with(Db::Sqlite, json!({}), &[("PORTCULLIS_RDP_LOGON_TIMEOUT_SECONDS", "8")]).await;
    let xrdp = Xrdp::start();
    desktop(&w.user, "portcullis rdp desktop");
    let more = json!({ "account_mode": "user_supplied" });
    let account = super::protocol_account_with(&w, "ws1", "rdp", xrdp.port(), more).await;
    admit_rdp(&w).await;
    let request = request_rdp(&w, &account).await;
    let x = Xvfb::start();
    let logs = tempfile::tempdir().unwrap();
    let read = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();

    // In-band: refused with what to do instead.
    let inband = format!("alice#{}@ws1", w.user.name);
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &logs.path().join("inband"));
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("inband"));
    let events = audit(&w).await;
    assert!(
        events.iter().any(|e| e["action"] == "session.refused"
            && e["details"]["reason"].as_str().is_some_and(|r| r.contains("start the session with a launch token"))),
        "{events:?}"
    );

    // With a launch token and the target's password as the client's password: the desktop.
    let (st, l) = post(&w.server, &w.alice, &format!("/api/v1/requests/{request}/launch"), json!({})).await;
    assert_eq!(st, 200, "{l}");
    let balance = format!("/load-balance-info:{}", l["token"].as_str().unwrap());
    let c = xfreerdp(&x.display, w.server.rdp_port, "alice", TARGET_PW, &[&balance], &logs.path().join("typed"));
    assert!(desktop_shown(&x, T).is_some(), "no desktop with the typed password:\n{}", read("typed"));
    kill(c);
    let out = w.server.all_output();
    assert!(!out.contains(TARGET_PW), "the typed target password is not in the server's output");
}

/// The target's certificate is pinned on first use; a different one (here: a pin an
/// administrator changed, confirmed by a second one) refuses the connection before any
/// credential is sent, and alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdp_certificate_pin() {
    let w = world_with(Db::Sqlite, json!({}), &[]).await;
    let xrdp = Xrdp::start();
    desktop(&w.user, "portcullis rdp desktop");
    let account = rdp_account(&w, &xrdp).await;
    admit_rdp(&w).await;
    request_rdp(&w, &account).await;
    let x = Xvfb::start();
    let logs = tempfile::tempdir().unwrap();
    let read = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();
    let inband = format!("alice#{}@ws1", w.user.name);
    let c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &logs.path().join("first"));
    assert!(desktop_shown(&x, T).is_some(), "{}", read("first"));
    kill(c);
    let (_, assets) = w.server.call("GET", "/api/v1/assets?limit=100", Some(&w.admin), None).await;
    let ws1 = assets.as_array().unwrap().iter().find(|a| a["name"] == "ws1").unwrap().clone();
    let pinned = ws1["tls_fingerprint"].as_str().unwrap().to_owned();
    let id = ws1["id"].as_str().unwrap();
    let events = audit(&w).await;
    assert!(events.iter().any(|e| e["action"] == "asset.tls_fingerprint_pinned"), "{events:?}");

    // Not a fingerprint: refused, nothing changed.
    let path = format!("/api/v1/assets/{id}");
    let (s, e) = w.server.call("PATCH", &path, Some(&w.admin), Some(json!({ "tls_fingerprint": "sha256:xyz" }))).await;
    assert_eq!(s, 422, "{e}");
    let other = format!("sha256:{}", "ab".repeat(32));
    let (s, e) = w.server.call("PATCH", &path, Some(&w.admin), Some(json!({ "tls_fingerprint": other }))).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["identity_confirmed"], false, "a changed pin waits for a second administrator: {e}");
    w.server.confirm_identity(&w.admin, id).await;

    std::thread::sleep(Duration::from_secs(1));
    let mut c = xfreerdp(&x.display, w.server.rdp_port, &inband, ALICE_PW, &[], &logs.path().join("mismatch"));
    assert!(exits(&mut c, T).is_some_and(|code| code != 0), "{}", read("mismatch"));
    let events = audit(&w).await;
    assert!(events.iter().any(|e| e["action"] == "asset.tls_fingerprint_mismatch"), "{events:?}");
    assert!(
        events.iter().any(|e| e["action"] == "session.refused"
            && e["details"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("not the pinned one") && r.contains(&pinned))),
        "{events:?}"
    );
}
