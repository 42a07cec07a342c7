//! The real CLI against the real server over HTTPS: certificate pinning, saved session,
//! table and JSON output, exit codes with the server's message, audit verification, and the
//! configuration commands.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::harness::{Db, Server, ADMIN_PASSWORD};

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

#[tokio::test]
async fn cli_end_to_end_over_pinned_tls() {
    let mut server = Server::start_with(Db::Sqlite, true, &[]);
    let fp = server.fingerprint.clone().expect("fingerprint printed");
    let secret = server.bootstrap_secret.clone().unwrap();
    let pw = [("PORTCULLIS_PASSWORD", ADMIN_PASSWORD)];

    // The self-signed certificate is refused unless pinned (or --insecure).
    let o = server.cli(
        &["bootstrap", "--server", &server.url, "--username", "admin"],
        &[("PORTCULLIS_BOOTSTRAP_SECRET", &secret), pw[0]],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot reach"), "{}", text(&o));
    let wrong = "00".repeat(32);
    let o = server.cli(
        &["bootstrap", "--server", &server.url, "--fingerprint", &wrong, "--username", "admin"],
        &[("PORTCULLIS_BOOTSTRAP_SECRET", &secret), pw[0]],
    );
    assert!(!o.status.success(), "a wrong pin must fail");
    let o = server.cli(
        &["bootstrap", "--server", &server.url, "--fingerprint", &fp, "--username", "admin"],
        &[("PORTCULLIS_BOOTSTRAP_SECRET", &secret), pw[0]],
    );
    assert!(o.status.success(), "{}", text(&o));
    let saved = server.dir.path().join("cli.json");
    assert_eq!(std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777, 0o600);

    // Signed-in commands use the saved session and pin.
    let me = json(&server.cli(&["whoami", "-o", "json"], &[]));
    assert_eq!(me["username"], "admin");
    let o = server.cli(&["logout"], &[]);
    assert!(o.status.success());
    assert!(!saved.exists());
    let o = server.cli(&["whoami"], &[]);
    assert!(!o.status.success() && text(&o).contains("not signed in"), "{}", text(&o));
    let o = server.cli(&["login", "--server", &server.url, "--insecure", "--username", "admin"], &pw);
    assert!(o.status.success(), "{}", text(&o));

    let asset = json(&server.cli(
        &[
            "asset",
            "create",
            "db1",
            "--address",
            "10.0.0.1",
            "--platform",
            "linux",
            "--protocol",
            "ssh:2222",
            "-o",
            "json",
        ],
        &[],
    ));
    assert_eq!(asset["protocols"][0]["port"], 2222);
    let id = asset["id"].as_str().unwrap();
    let account = json(&server.cli(&["account", "create", "root", "--asset", id, "-o", "json"], &[]));
    assert_eq!(account["kind"], "local");
    let list = server.cli(&["asset", "list"], &[]);
    assert!(
        list.status.success() && text(&list).contains("db1") && text(&list).contains("ssh:2222"),
        "{}",
        text(&list)
    );
    let group = json(&server.cli(&["asset-group", "create", "databases", "-o", "json"], &[]));
    let g = json(&server.cli(&["asset-group", "add-member", group["id"].as_str().unwrap(), id, "-o", "json"], &[]));
    assert_eq!(g["members"][0], id);
    let bob = json(&server.cli(
        &["user", "create", "bob", "--time-zone", "Europe/Berlin", "-o", "json"],
        &[("PORTCULLIS_NEW_PASSWORD", "bob password 1234")],
    ));
    assert_eq!(bob["time_zone"], "Europe/Berlin");
    let token = json(&server.cli(&["token", "create", "ci", "-o", "json"], &[]));
    assert!(token["secret"].as_str().unwrap().starts_with("pct_"));

    // Errors: non-zero exit with the server's message and code.
    let o = server.cli(&["asset", "show", "no-such-name"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no asset is named 'no-such-name'; give its exact name or its id"), "{}", text(&o));
    let o = server.cli(&["asset", "show", "00000000-0000-4000-8000-000000000000"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("asset not found (not_found, HTTP 404)"), "{}", text(&o));
    let o = server.cli(&["asset", "create", "db1", "--address", "10.0.0.1", "--platform", "linux", "-o", "json"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(err["error"]["code"], "conflict");

    // Audit: paging through everything, verification, and detection of tampering.
    let events = json(&server.cli(&["audit", "list", "--all", "--limit", "2", "-o", "json"], &[]));
    let seqs: Vec<i64> = events.as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.len() >= 8);
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "pages join without gaps");
    let logins = json(&server.cli(&["audit", "list", "--action", "auth.login", "-o", "json"], &[]));
    assert!(logins.as_array().unwrap().iter().all(|e| e["action"] == "auth.login"));
    let o = server.cli(&["audit", "verify"], &[]);
    assert!(o.status.success() && text(&o).contains("intact"), "{}", text(&o));
    let db = server.data_dir().join("portcullis.db");
    let sql = "UPDATE audit_events SET object_id = 'forged' WHERE seq = 3";
    assert!(std::process::Command::new("sqlite3").arg(&db).arg(sql).status().unwrap().success());
    let o = server.cli(&["audit", "verify"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("BROKEN at event 3"), "{}", text(&o));

    // The key file must be private: the server refuses to start otherwise.
    let key = server.data_dir().join("keys/audit.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, stderr) = server.start_expecting_failure();
    assert!(!status.success());
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

#[test]
fn help_and_configuration_commands() {
    let server_bin = env!("CARGO_BIN_EXE_portcullis");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(server_bin);
        c.args(args).env_clear();
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    for args in [
        &["--help"][..],
        &["asset", "--help"],
        &["audit", "verify", "--help"],
        &["user", "create", "--help"],
        &["serve", "--help"],
    ] {
        let o = run(args, &[]);
        assert!(o.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage:"), "{args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let example = run(&["config", "example"], &[]);
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, &example.stdout).unwrap();
    let o = run(&["config", "check", "--config", path.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o =
        run(&["config", "check", "--config", path.to_str().unwrap()], &[("PORTCULLIS_AUTH_LOCKOUT_THRESHOLD", "0")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("auth.lockout_threshold"), "{}", text(&o));
    let o = run(&["openapi"], &[]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["paths"]["/api/v1/assets"].is_object());
}
