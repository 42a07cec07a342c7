//! Session governance (seed 003): connection policies decide who may connect from where, where
//! the target leg goes (address translation, source address) and which channels may open,
//! with real `ssh`, `sftp` and two real sshd targets.

use super::*;

async fn policy(w: &World, body: Value) -> Value {
    let (s, p) = post(&w.server, &w.admin, "/api/v1/connection-policies", body).await;
    assert_eq!(s, 201, "{p}");
    p
}

async fn governance(db: Db) {
    let w = world_on(db, json!({ "port_forwarding": true })).await;
    w.request().await;
    let second = Sshd::start();

    // Only the seeded default exists: SSH from anywhere, as before.
    let (_, list) = w.server.call("GET", "/api/v1/connection-policies", Some(&w.admin), None).await;
    let default_id = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["name"], "ssh-default", "{list}");
    // Requesters do not read them.
    let (s, _) = w.server.call("GET", "/api/v1/connection-policies", Some(&w.alice), None).await;
    assert_eq!(s, 403);

    // An office-only policy first, the default switched off: a client from elsewhere (here:
    // 127.0.0.1) is refused, and told what to fix.
    policy(&w, json!({ "name": "office", "position": 1, "protocol": "ssh", "clients": ["10.0.0.0/8"], "channels": [{ "kind": "shell" }] }))
        .await;
    let mut off = list[0].clone();
    off["enabled"] = json!(false);
    for k in ["id", "position", "group_names", "created_at", "updated_at"] {
        off.as_object_mut().unwrap().remove(k);
    }
    let (s, b) =
        w.server.call("PUT", &format!("/api/v1/connection-policies/{default_id}"), Some(&w.admin), Some(off)).await;
    assert_eq!(s, 200, "{b}");
    let o = w.ssh(&[&w.dest(), "echo should-not-run"], b"");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        err.contains("no connection policy admits SSH from 127.0.0.1 to db1")
            && err.contains("connection-policy explain"),
        "{}",
        text(&o)
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("should-not-run"));

    // The lab policy: this network, db1 only; the target leg goes to the second sshd (address
    // translation) from 127.0.0.2 (SNAT); shell, echo/cat commands, and forwarding to the
    // second sshd only.
    let lab = policy(
        &w,
        json!({
            "name": "lab", "position": 1, "protocol": "ssh", "clients": ["127.0.0.0/8"],
            "targets": [{ "asset": "db*" }],
            "translate": { "address": "127.0.0.1", "port": second.port() },
            "source_address": "127.0.0.2",
            "channels": [
                { "kind": "shell" },
                { "kind": "exec", "commands": ["^echo ", "^cat$"] },
                { "kind": "local_forward", "destinations": [format!("127.0.0.1:{}", second.port())] }
            ]
        }),
    )
    .await;
    assert_eq!(lab["position"], 1);

    // explain says which policy a connection gets, and why not the ones before it.
    let ask = |client: &str| json!({ "protocol": "ssh", "client": client, "asset": "db1" });
    let (s, e) = post(&w.server, &w.admin, "/api/v1/connection-policies/explain", ask("127.0.0.1")).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["policy_name"], "lab", "{e}");
    assert_eq!(e["destination"], format!("127.0.0.1:{}", second.port()), "{e}");
    assert_eq!(e["source_address"], "127.0.0.2", "{e}");
    let (_, e) = post(&w.server, &w.admin, "/api/v1/connection-policies/explain", ask("10.1.2.3")).await;
    assert_eq!(e["policy_name"], "office", "{e}");
    assert_eq!(e["verdicts"][0]["outcome"], "client", "{e}");
    assert!(e["verdicts"][0]["reason"].as_str().unwrap().contains("10.1.2.3 is not in 127.0.0.0/8"), "{e}");
    let (_, e) = post(&w.server, &w.admin, "/api/v1/connection-policies/explain", ask("192.0.2.1")).await;
    assert!(e["policy_name"].is_null(), "{e}");
    assert_eq!(e["verdicts"].as_array().unwrap().len(), 3, "{e}");

    // An allowed command runs on the second sshd, reached from 127.0.0.2.
    let o = w.ssh(&[&w.dest(), "echo through-the-lab"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "through-the-lab");
    let log = second.log();
    let accepted = format!("Accepted password for {} from 127.0.0.2", w.user.name);
    assert!(log.contains(&accepted), "the second sshd logged no login from 127.0.0.2:\n{log}");
    assert!(!w.sshd.log().contains("Accepted password"), "the asset's own address was used:\n{}", w.sshd.log());

    // A command off the list is refused on its own, with the reason on stderr.
    let o = w.ssh(&[&w.dest(), "id"], b"");
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not on the allowed list"), "{}", text(&o));
    // `cat` (exact) is on it: stdin reaches the target.
    let o = w.ssh(&[&w.dest(), "cat"], b"piped-through");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped-through", "{}", text(&o));

    // SFTP is not in the policy: refused and told so, while the shell works.
    let o = w.sftp("ls\n");
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not allow SFTP"), "{}", text(&o));
    let o = w.ssh(&["-tt", &w.dest()], b"echo shell-$((6*7))\nexit\n");
    assert!(String::from_utf8_lossy(&o.stdout).contains("shell-42"), "{}", text(&o));

    // Forwarding only to the listed destination.
    let forward = |to: u16| {
        let local = portcullis_testkit::free_port();
        let mut fwd = w.base("ssh", ALICE_PW);
        fwd.args(["-N", "-p", &w.server.ssh_port.to_string()]);
        fwd.args(["-L", &format!("127.0.0.1:{local}:127.0.0.1:{to}"), &w.dest()]);
        (local, fwd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
    };
    let (local, mut child) = forward(second.port());
    let banner = super::access::read_banner(local).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner:?}");
    let (local, mut child) = forward(w.sshd.port());
    let banner = super::access::read_banner(local).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(banner, "", "forwarding to an unlisted destination must be refused");

    // Every refusal is audited with its reason and the policy.
    let (_, page) = w
        .server
        .call("GET", "/api/v1/audit/events?action=session.channel_refused&limit=100", Some(&w.admin), None)
        .await;
    let events = page["events"].as_array().unwrap();
    let refused = |channel: &str, needle: &str| {
        events.iter().any(|e| {
            e["details"]["channel"] == channel
                && e["details"]["connection_policy"] == "lab"
                && e["outcome"] == "denied"
                && e["details"]["reason"].as_str().is_some_and(|r| r.contains(needle))
        })
    };
    assert!(refused("exec", "command: id"), "{page}");
    assert!(refused("sftp", "SFTP"), "{page}");
    assert!(refused("local_forward", &format!("127.0.0.1:{}", w.sshd.port())), "{page}");
    let (_, page) =
        w.server.call("GET", "/api/v1/audit/events?action=session.refused&limit=100", Some(&w.admin), None).await;
    assert!(page.to_string().contains("no connection policy admits SSH"), "{page}");

    // Bad input is refused with the field named, and changes nothing.
    let (s, b) = post(
        &w.server,
        &w.admin,
        "/api/v1/connection-policies",
        json!({ "name": "bad", "protocol": "ssh", "algorithms": { "kex": ["diffie-hellman-group1-sha0"] } }),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (422, Some("validation_failed")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("algorithms.kex"), "{b}");
    let (_, after) = w.server.call("GET", "/api/v1/connection-policies", Some(&w.admin), None).await;
    assert_eq!(after.as_array().unwrap().len(), 3, "{after}");
}

#[tokio::test]
async fn connection_and_channel_policies_on_sqlite() {
    governance(Db::Sqlite).await;
}

#[tokio::test]
async fn connection_and_channel_policies_on_postgres() {
    governance(Db::postgres()).await;
}

/// Content rules on a live session: typed commands (with line editing), exec commands, output
/// and file names; log, alert and terminate.
#[tokio::test]
async fn content_rules_log_alert_and_terminate() {
    let w = world(json!({})).await;
    w.request().await;
    let (s, b) = w
        .edit_default_policy(|p| {
            p["content"] = json!([
                { "on": "command", "pattern": "^whoami$", "action": "log" },
                { "on": "output", "pattern": "TOP-SECRET-[0-9]+", "action": "alert", "name": "secret shown" },
                { "on": "command", "pattern": "^shutdown", "action": "terminate", "name": "no shutdown" },
                { "on": "file", "pattern": "\\.kdbx$", "action": "alert", "name": "password database" }
            ]);
        })
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, list) = w.server.call("GET", "/api/v1/connection-policies", Some(&w.admin), None).await;
    let path = format!("/api/v1/connection-policies/{}", list[0]["id"].as_str().unwrap());

    // Logged and alerted, the session goes on.
    let o = w.ssh(&["-tt", &w.dest()], b"whoami\necho TOP-SECRET-$((40+2))\nexit\n");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("TOP-SECRET-42"), "{}", text(&o));

    // A typed shutdown (typo corrected with backspace) ends the session before the target sees it.
    let o = w.ssh(&["-tt", &w.dest()], b"shutdownx\x7f -h now\necho after-$((1+1))\n");
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(all.contains("session ended: the content policy of 'ssh-default' matched (no shutdown)"), "{all}");
    assert!(!all.contains("after-2"), "nothing after the matching line reaches the target: {all}");

    // The same rule on an exec command.
    let o = w.ssh(&[&w.dest(), "shutdown --help"], b"");
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no shutdown"), "{}", text(&o));

    // A file name rule on an upload.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("team.kdbx");
    std::fs::write(&file, b"not really a database").unwrap();
    let o = w.scp(&[file.to_str().unwrap(), &format!("{}:", w.scp_dest())]);
    assert_eq!(o.status.code(), Some(0), "an alert does not stop the transfer: {}", text(&o));

    // Every hit is audited, alerts marked; the terminations denied.
    let (_, page) =
        w.server.call("GET", "/api/v1/audit/events?action=session.content&limit=100", Some(&w.admin), None).await;
    let events = page["events"].as_array().unwrap();
    let hit = |rule: &str, action: &str, text: &str| {
        events.iter().any(|e| {
            e["details"]["rule"] == rule
                && e["details"]["action"] == action
                && e["details"]["text"].as_str().is_some_and(|t| t.contains(text))
        })
    };
    assert!(hit("^whoami$", "log", "whoami"), "{page}");
    assert!(hit("secret shown", "alert", "TOP-SECRET-42"), "{page}");
    assert!(hit("no shutdown", "terminate", "shutdown -h now"), "{page}");
    assert!(hit("no shutdown", "terminate", "shutdown --help"), "{page}");
    assert!(hit("password database", "alert", "team.kdbx"), "{page}");
    assert!(events.iter().filter(|e| e["details"]["action"] == "terminate").all(|e| e["outcome"] == "denied"));

    // The hits are in the recordings too.
    let (_, sessions) = w.server.call("GET", "/api/v1/sessions?limit=10", Some(&w.admin), None).await;
    let first = sessions.as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_owned();
    let events = w.recording(&first, "events").await;
    assert!(events.contains("\"content\"") && events.contains("secret shown"), "{events}");
    let ended = sessions.as_array().unwrap().iter().filter(|s| {
        s["end_reason"].as_str().is_some_and(|r| r.contains("content policy of 'ssh-default' matched (no shutdown)"))
    });
    assert_eq!(ended.count(), 2, "{sessions}");

    // A bad rule names its field and changes nothing.
    let (_, now) = w.server.call("GET", &path, Some(&w.admin), None).await;
    let (s, b) =
        w.edit_default_policy(|p| p["content"] = json!([{ "on": "screen", "pattern": "x", "action": "log" }])).await;
    assert_eq!(s, 422, "{b}");
    assert!(b["message"].as_str().unwrap().starts_with("content[0].on"), "{b}");
    let (_, after) = w.server.call("GET", &path, Some(&w.admin), None).await;
    assert_eq!(after["content"], now["content"]);
}

#[tokio::test]
async fn a_policy_body_with_an_unknown_field_is_refused_by_name() {
    let server = crate::harness::Server::start(Db::Sqlite);
    let admin = server.bootstrap().await;
    let (s, b) = post(
        &server,
        &admin,
        "/api/v1/connection-policies",
        json!({ "name": "x", "protocol": "ssh", "colour": "red" }),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert!(b["message"].as_str().unwrap().contains("unknown field"), "{b}");
    assert_eq!(b["field"], "colour", "{b}");
    let (s, b) = post(
        &server,
        &admin,
        "/api/v1/connection-policies",
        json!({ "name": "x", "protocol": "ssh", "listen_ports": ["secret-value-123"] }),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (422, Some("invalid_body")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("listen_ports[0]"), "{b}");
    assert!(!b.to_string().contains("secret-value-123"), "a value sent is never echoed: {b}");
    let (_, list) = server.call("GET", "/api/v1/connection-policies", Some(&admin), None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing was created: {list}");
}

/// The web UI's connection-policy pages, in a real browser.
#[tokio::test(flavor = "multi_thread")]
async fn connection_policies_in_the_browser() {
    let server = crate::harness::Server::start(Db::Sqlite);
    let admin = server.bootstrap().await;
    let asset = json!({ "name": "switch1", "address": "10.20.5.5", "platform": "network_device", "protocols": [{ "protocol": "telnet", "port": 23 }] });
    let (s, b) = post(&server, &admin, "/api/v1/assets", asset).await;
    assert_eq!(s, 201, "{b}");
    crate::web::run_browser(
        "connection_policies.py",
        "connection-policies",
        &[("BASE_URL", &server.url), ("ADMIN_PW", crate::harness::ADMIN_PASSWORD)],
    );
    let admin = server.login("admin", crate::harness::ADMIN_PASSWORD).await;
    let (_, list) = server.call("GET", "/api/v1/connection-policies", Some(&admin), None).await;
    assert_eq!(list[0]["name"], "telnet-lab", "{list}");
    assert_eq!(list[0]["gateway_authentication"], true, "{list}");
    assert_eq!(list[0]["channels"].as_array().unwrap().len(), 1, "the refused edit changed nothing: {list}");
}

/// A policy with terminal recording off: the session runs, its recording keeps the command and
/// the metadata, not what crossed the terminal.
#[tokio::test(flavor = "multi_thread")]
async fn terminal_recording_off() {
    let w = world(json!({})).await;
    w.request().await;
    let (s, b) = w.edit_default_policy(|p| p["recording"] = json!(false)).await;
    assert_eq!(s, 200, "{b}");
    let o = w.ssh(&[&w.dest(), "echo unrecorded-$((3*3))"], b"");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "unrecorded-9", "{}", text(&o));
    let id = live_or_ended(&w).await;
    let events = w.recording(&id, "events").await;
    assert!(events.contains("echo unrecorded-$((3*3))"), "the command is kept: {events}");
    assert!(events.contains("metadata only"), "{events}");
    assert!(!events.contains("unrecorded-9"), "the output is not: {events}");
}
