//! The AA plugin (R-SES-4) with a real external program: it asks for a ticket (OpenSSH's
//! keyboard-interactive prompt on a pty; the Telnet proxy's prompt), then allows and maps the
//! connection to the real account, or refuses; a plugin that fails refuses the connection.

use std::process::Command;
use std::time::Duration;

use portcullis_testkit::pty::Pty;
use portcullis_testkit::telnetd::Telnetd;
use serde_json::{json, Value};

use super::telnet::{request_telnet, telnet_account, telnet_login};
use super::{post, world_with, World, ALICE_PW};
use crate::harness::Db;

const T: Duration = Duration::from_secs(20);

/// A plugin that asks for a ticket, allows INC-1234 (mapping to `account`), refuses others.
fn plugin(dir: &std::path::Path, account: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("tickets.sh");
    let script = format!(
        r#"#!/bin/sh
in=$(cat)
case "$in" in
  *'"round":1'*) echo '{{"verdict":"ask","questions":[{{"key":"ticket","prompt":"Ticket number: "}}]}}' ;;
  *'"ticket":"INC-1234"'*) echo '{{"verdict":"allow","account":"{account}","metadata":{{"ticket_state":"open"}}}}' ;;
  *'"ticket":"CRASH"'*) exit 7 ;;
  *) echo '{{"verdict":"deny","reason":"that ticket is not open"}}' ;;
esac
"#
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `ssh` on a pty through the proxy as `alice#ACCOUNT@db1`, running `command`.
fn ssh(w: &World, account: &str, command: &str) -> Pty {
    let mut c = Command::new("ssh");
    c.args(["-p", &w.server.ssh_port.to_string()]);
    c.args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]);
    c.args(["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"]);
    c.arg(format!("alice#{account}@db1@127.0.0.1")).arg(command);
    let mut t = Pty::spawn(c);
    t.expect("password: ", T);
    t.send(&format!("{ALICE_PW}\r"));
    t
}

async fn aa_events(w: &World) -> Vec<Value> {
    let (_, page) =
        w.server.call("GET", "/api/v1/audit/events?action=session.aa&limit=100", Some(&w.admin), None).await;
    page["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aa_plugin_asks_for_a_ticket_and_maps_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let script = dir.path().join("tickets.sh");
    std::fs::write(
        &config,
        format!("[aa_plugins.tickets]\ncommand = [\"{}\"]\ntimeout_seconds = 5\n", script.display()),
    )
    .unwrap();
    let w = world_with(Db::Sqlite, json!({}), &[("PORTCULLIS_CONFIG", config.to_str().unwrap())]).await;
    // Written once the world's account exists: the plugin maps to it.
    assert_eq!(plugin(dir.path(), &w.user.name), script);
    w.request().await;

    // A policy may name only a configured plugin.
    let (s, b) = w.edit_default_policy(|p| p["aa_plugin"] = json!("nope")).await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("no AA plugin named 'nope' is configured on this server (configured: tickets)"),
        "{b}"
    );
    let user = w.user.name.clone();
    let (s, b) = w
        .edit_default_policy(|p| {
            p["aa_plugin"] = json!("tickets");
            p["usermapping"] = json!([user]);
        })
        .await;
    assert_eq!(s, 200, "{b}");

    // Asked for a ticket through keyboard-interactive; allowed and mapped from the placeholder
    // account "ops" to the real one.
    let mut t = ssh(&w, "ops", "echo mapped-to-$(whoami)");
    t.expect("Ticket number: ", T);
    t.send("INC-1234\r");
    t.expect(&format!("mapped-to-{}", w.user.name), T);
    assert_eq!(t.wait(T), Some(0));
    let events = aa_events(&w).await;
    let allowed = events.iter().find(|e| e["outcome"] == "success").expect("the verdict is audited");
    assert_eq!(allowed["details"]["answers"]["ticket"], "INC-1234", "{allowed}");
    assert_eq!(allowed["details"]["mapped_account"], w.user.name.as_str(), "{allowed}");
    assert_eq!(allowed["details"]["metadata"]["ticket_state"], "open", "{allowed}");
    // The answers are in the session's recording metadata too.
    let (_, sessions) = w.server.call("GET", "/api/v1/sessions", Some(&w.admin), None).await;
    let id = sessions[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(sessions[0]["account_name"], w.user.name.as_str());
    let events = w.recording(&id, "events").await;
    assert!(events.contains("INC-1234") && events.contains("tickets"), "{events}");

    // Another ticket: refused with the plugin's reason.
    let mut t = ssh(&w, "ops", "echo should-not-run");
    t.expect("Ticket number: ", T);
    t.send("INC-9\r");
    let screen = t.expect("that ticket is not open", T);
    assert!(screen.contains("the AA plugin 'tickets' refused the connection"), "{screen}");
    assert!(!screen.contains("should-not-run"));
    assert_ne!(t.wait(T), Some(0));

    // A plugin that crashes refuses the connection (fail closed).
    let mut t = ssh(&w, "ops", "echo should-not-run");
    t.expect("Ticket number: ", T);
    t.send("CRASH\r");
    let screen = t.expect("the connection is refused", T);
    assert!(screen.contains("the AA plugin 'tickets' failed"), "{screen}");
    assert_ne!(t.wait(T), Some(0));

    // A mapping the usermapping does not allow is refused.
    let (s, b) = w.edit_default_policy(|p| p["usermapping"] = json!(["deploy*"])).await;
    assert_eq!(s, 200, "{b}");
    let mut t = ssh(&w, "ops", "echo should-not-run");
    t.expect("Ticket number: ", T);
    t.send("INC-1234\r");
    let screen = t.expect("does not allow", T);
    assert!(screen.contains("usermapping of connection policy 'ssh-default'"), "{screen}");
    let denied = aa_events(&w).await.into_iter().filter(|e| e["outcome"] == "denied").count();
    assert_eq!(denied, 3, "every refusal is audited");

    // The Telnet proxy asks the same questions at its prompt.
    let telnetd = Telnetd::start();
    let account = telnet_account(&w, &telnetd).await;
    request_telnet(&w, &account).await;
    let body = json!({ "name": "telnet-aa", "protocol": "telnet", "channels": [{ "kind": "shell" }], "aa_plugin": "tickets", "usermapping": [w.user.name] });
    let (s, p) = post(&w.server, &w.admin, "/api/v1/connection-policies", body).await;
    assert_eq!(s, 201, "{p}");
    let mut t = telnet_login(&w, "alice#ops@tn1", ALICE_PW);
    t.expect("Ticket number: ", T);
    t.send("INC-1234\r");
    t.expect("$ ", T);
    t.send("echo telnet-as-$(whoami)\r");
    t.expect(&format!("telnet-as-{}", w.user.name), T);
}
