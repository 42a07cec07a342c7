//! Gateway authentication and four-eyes (R-SES-8, R-SES-9) with a real `ssh`: the connection
//! waits, showing what for; the user confirms it from the CLI; an authorizer (never the user)
//! permits or denies it, then may terminate the session they permitted.

use super::*;

const BOB_PW: &str = "bob password 1234567";

/// `ssh` through the proxy with the client's notices shown (LogLevel INFO), in the background.
fn spawn_ssh(w: &World, command: &str) -> std::process::Child {
    Command::new("sshpass")
        .args(["-p", ALICE_PW, "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=INFO", "-o", "PubkeyAuthentication=no"])
        .args(["-o", "PreferredAuthentications=password,keyboard-interactive", "-p", &w.server.ssh_port.to_string()])
        .arg(w.dest())
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The first waiting connection of `kind` `token` sees, within 20 s.
async fn wait_for(w: &World, token: &str, kind: &str) -> Value {
    for _ in 0..200 {
        let (_, list) = w.server.call("GET", "/api/v1/session-waits", Some(token), None).await;
        if let Some(found) = list.as_array().and_then(|l| l.iter().find(|x| x["kind"] == kind)) {
            return found.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {kind} wait appeared");
}

/// A world where bob (group ops) authorizes, under a default policy with four-eyes by ops and,
/// if asked, gateway authentication; returns bob's token.
async fn four_eyes_world(gateway: bool) -> (World, String) {
    let w = world(json!({})).await;
    w.request().await;
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
    let bob_token = w.server.login("bob", BOB_PW).await;
    let (s, b) = w
        .edit_default_policy(|p| {
            p["gateway_authentication"] = json!(gateway);
            p["four_eyes_groups"] = json!([ops["id"]]);
            p["wait_seconds"] = json!(60);
        })
        .await;
    assert_eq!(s, 200, "{b}");
    (w, bob_token)
}

#[tokio::test]
async fn gateway_authentication_and_four_eyes() {
    let (w, bob_token) = four_eyes_world(true).await;
    let cli = |args: &[&str], token: &str| {
        w.server.cli(args, &[("PORTCULLIS_SERVER", w.server.url.as_str()), ("PORTCULLIS_TOKEN", token)])
    };

    // 1. Confirmed by the user from the CLI, then permitted by bob.
    let child = spawn_ssh(&w, "echo four-eyes-ok");
    let gateway = wait_for(&w, &w.alice, "gateway_authentication").await;
    let id = gateway["id"].as_str().unwrap();
    assert_eq!(gateway["target"], format!("{}@db1", w.user.name), "{gateway}");
    assert_eq!(gateway["yours_to_decide"], true, "{gateway}");
    // Nobody else confirms it.
    let (s, b) = post(&w.server, &bob_token, &format!("/api/v1/session-waits/{id}/permit"), json!({})).await;
    assert_eq!(s, 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("only the user who is connecting confirms"), "{b}");
    let o = cli(&["session", "confirm", id], &w.alice);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Permitted: alice's connection"), "{}", text(&o));
    let four = wait_for(&w, &bob_token, "four_eyes").await;
    let id = four["id"].as_str().unwrap();
    // Alice sees it but may not permit her own session.
    let (s, b) = post(&w.server, &w.alice, &format!("/api/v1/session-waits/{id}/permit"), json!({})).await;
    assert_eq!(s, 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("nobody authorizes their own session"), "{b}");
    let o = cli(&["session", "permit", id], &bob_token);
    assert!(o.status.success(), "{}", text(&o));
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "four-eyes-ok", "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("waits for you to confirm it") && err.contains("portcullis session confirm"), "{err}");
    assert!(err.contains("waits for an authorizer"), "{err}");

    // 2. Denied by bob, with a reason the user reads.
    let child = spawn_ssh(&w, "echo should-not-run");
    let gateway = wait_for(&w, &w.alice, "gateway_authentication").await;
    let (s, _) = post(
        &w.server,
        &w.alice,
        &format!("/api/v1/session-waits/{}/permit", gateway["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    let four = wait_for(&w, &bob_token, "four_eyes").await;
    let o = cli(&["session", "deny", four["id"].as_str().unwrap(), "--reason", "not during the freeze"], &bob_token);
    assert!(o.status.success(), "{}", text(&o));
    let o = child.wait_with_output().unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("should-not-run"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the authorizer denied the session (bob): not during the freeze"),
        "{}",
        text(&o)
    );

    // 3. The authorizer watches the session they permitted from the CLI, and terminates it.
    let mut child = spawn_ssh(&w, "echo watched-line; sleep 60");
    let gateway = wait_for(&w, &w.alice, "gateway_authentication").await;
    post(&w.server, &w.alice, &format!("/api/v1/session-waits/{}/permit", gateway["id"].as_str().unwrap()), json!({}))
        .await;
    let four = wait_for(&w, &bob_token, "four_eyes").await;
    post(&w.server, &bob_token, &format!("/api/v1/session-waits/{}/permit", four["id"].as_str().unwrap()), json!({}))
        .await;
    let mut live = Value::Null;
    for _ in 0..100 {
        let (_, l) = w.server.call("GET", "/api/v1/sessions?live=true", Some(&w.admin), None).await;
        if let Some(s) = l.as_array().and_then(|a| a.first()) {
            live = s.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sid = live["id"].as_str().expect("a live session").to_owned();
    let watcher = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["session", "watch", &sid])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORTCULLIS_SERVER", &w.server.url)
        .env("PORTCULLIS_TOKEN", &bob_token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The watcher has the screen (the line printed before it joined) once it is connected.
    let mut watched = false;
    for _ in 0..100 {
        let (_, page) = w
            .server
            .call(
                "GET",
                &format!("/api/v1/audit/events?action=session.watch&object_id={sid}&limit=10"),
                Some(&w.admin),
                None,
            )
            .await;
        if !page["events"].as_array().unwrap().is_empty() {
            watched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(watched, "the watch was not audited");
    let (s, b) = post(&w.server, &bob_token, &format!("/api/v1/sessions/{sid}/terminate"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(0));
    let o = watcher.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(seen.contains("watched-line"), "{}", text(&o));
    assert!(seen.contains("[Portcullis: session ended: terminated by bob]"), "{}", text(&o));

    // All of it audited.
    for action in ["session.waiting", "session.confirm", "session.permit", "session.deny", "session.terminate"] {
        let (_, page) = w
            .server
            .call("GET", &format!("/api/v1/audit/events?action={action}&limit=100"), Some(&w.admin), None)
            .await;
        assert!(!page["events"].as_array().unwrap().is_empty(), "no {action} event: {page}");
    }
}

#[tokio::test]
async fn a_waiting_session_is_permitted_in_the_browser() {
    let (w, bob_token) = four_eyes_world(false).await;
    let child = spawn_ssh(&w, "echo web-permitted");
    wait_for(&w, &bob_token, "four_eyes").await;
    crate::web::run_browser(
        "permit.py",
        "permit",
        &[("BASE_URL", &w.server.url), ("USER", "bob"), ("PASSWORD", BOB_PW), ("WAITING_USER", "alice")],
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "web-permitted", "{}", text(&o));
}
