//! The web UI in a real browser: Debian's chromium driven by Playwright (`tests/browser/`),
//! against the real server on SQLite and PostgreSQL. The data is set up through the API; the
//! walk itself happens in the browser alone.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Db, Server};

const VAULTED: &str = "Vaulted-Web-Pw-8841";

pub fn playwright_python() -> String {
    std::env::var("PORTCULLIS_PLAYWRIGHT_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
        assert!(
            std::path::Path::new(venv).exists(),
            "the browser tests need Playwright: run scripts/test (it installs chromium and Playwright)"
        );
        venv.to_owned()
    })
}

/// Runs one of the browser scripts; panics with its output when it fails; returns its output.
pub fn run_browser(script: &str, name: &str, env: &[(&str, &str)]) -> String {
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser").join(name);
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let out = Command::new(playwright_python())
        .arg(format!("{browser_dir}/{script}"))
        .env("ARTIFACTS", &artifacts)
        .env("AXE", format!("{browser_dir}/vendor/axe-core/axe.min.js"))
        .envs(env.iter().copied())
        .output()
        .expect("run the browser script");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed (screenshots in {}):\n{text}", artifacts.display());
    text
}

async fn walk(db: Db, name: &str) {
    let server = Server::start(db);
    let admin = server.bootstrap().await;
    // Everything the walk needs is set up in the browser, by names.
    let env = [
        ("BASE_URL", server.url.as_str()),
        ("ALICE_PW", "alice password 1234"),
        ("BOB_PW", "bob password 1234"),
        ("CAROL_PW", "carol password 1234"),
        ("VAULTED", VAULTED),
        ("ADMIN_PW", crate::harness::ADMIN_PASSWORD),
    ];
    run_browser("setup.py", &format!("{name}-setup"), &env);
    let (_, users) = server.call("GET", "/api/v1/users", Some(&admin), None).await;
    let names: Vec<&str> = users.as_array().unwrap().iter().filter_map(|u| u["username"].as_str()).collect();
    assert!(names.contains(&"carol") && !names.contains(&"mallory") && !names.contains(&"dave"), "{users}");
    let (_, policies) = server.call("GET", "/api/v1/policies", Some(&admin), None).await;
    let p = &policies[0];
    assert_eq!(p["settings"]["ticket_required"], true, "{p}");
    assert_eq!(p["settings"]["approval_levels"][0]["group_ids"].as_array().map(Vec::len), Some(1), "{p}");

    run_browser("walk.py", name, &env);
    let (_, e) = server.call("GET", "/api/v1/audit/events?action=request.checkout", Some(&admin), None).await;
    let how: Vec<&str> =
        e["events"].as_array().unwrap().iter().filter_map(|e| e["details"]["action"].as_str()).collect();
    assert!(how.contains(&"show") && how.contains(&"copy"), "both checkouts audited: {e}");
    assert!(!server.all_output().contains(VAULTED), "the vaulted password reached the server log");

    // What the browser did is what the server stored.
    let (_, list) = server.call("GET", "/api/v1/requests?queue=all", Some(&admin), None).await;
    let states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["state"].as_str().unwrap(), r["ticket"].as_str().unwrap_or("")))
        .collect();
    // The walked request, reviewed; then the same again from the favorite, pending.
    assert_eq!(states, vec![("pending_approval", "CHG-7"), ("reviewed", "CHG-7")], "{list}");
    let (_, me) = server.call("GET", "/api/v1/audit/events?action=user.update", Some(&admin), None).await;
    let changes: Vec<_> = me["events"].as_array().unwrap().iter().filter(|e| e["outcome"] == "success").collect();
    assert_eq!(changes.len(), 1, "one profile change (the forged ones did nothing): {me}");
    assert!(!server.all_output().contains("alice password 1234"), "a password reached the server log");
}

#[tokio::test]
async fn browser_walk_sqlite() {
    walk(Db::Sqlite, "sqlite").await;
}

#[tokio::test]
async fn browser_walk_postgres() {
    walk(Db::postgres(), "postgres").await;
}

#[tokio::test]
async fn browser_profile_password_one_time_codes_and_session_end() {
    let (smtp, server) = crate::mail::server_with_mail(Db::Sqlite);
    let admin = server.bootstrap().await;
    let (s, v) = server
        .call(
            "POST",
            "/api/v1/users",
            Some(&admin),
            Some(serde_json::json!({ "username": "tina", "display_name": "Tina", "password": "tina password 1234",
                "email": "tina@example.test" })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    run_browser(
        "account.py",
        "account",
        &[
            ("BASE_URL", &server.url),
            ("USER", "tina"),
            ("PASSWORD", "tina password 1234"),
            ("NEW_PASSWORD", "tina's new password 5678"),
            ("ADMIN_PW", crate::harness::ADMIN_PASSWORD),
            ("MAIL_DIR", &smtp.dir().display().to_string()),
            ("RESET_PASSWORD", "tina chose this 9012"),
        ],
    );
    let (_, u) = server.call("GET", "/api/v1/users", Some(&admin), None).await;
    let tina = u.as_array().unwrap().iter().find(|u| u["username"] == "tina").unwrap();
    assert_eq!(tina["totp_enabled"], true, "{tina}");
    let log = server.all_output();
    assert!(!log.contains("tina's new password") && !log.contains("tina chose this"), "a password reached the log");
}
