//! Directory users against a real OpenLDAP `slapd` (LDAPS with a test CA): a directory user
//! signs in with the directory's password, requests through an entitlement of a directory
//! group, is approved by a member of a nested directory group, connects through the SSH proxy;
//! disabled in the directory, they lose their live session and their sign-in. A directory that
//! is down fails directory sign-ins closed while local administrators still sign in. On SQLite
//! and PostgreSQL, through the real CLI.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::slapd::{self, group_dn, user_dn, Slapd};
use portcullis_testkit::sshd::{Sshd, UnixUser};
use serde_json::{json, Value};

use crate::harness::{Db, Server, ADMIN_PASSWORD};
use crate::people::{audited, Person};

const DORA_PW: &str = "dora directory pw 4411";
const AARON_PW: &str = "aaron directory pw 8822";
const TARGET_PW: &str = "Target-Pw-for-Dora-31";
const SVC_PW: &str = "svc-app first pw 6633";
const DIR_PW: &str = "Directory-Admin-Pw-77";

/// A `[directories.corp]` configuration for `ldap`, written next to the server's files.
pub fn directory_config(ldap: &Slapd, dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("portcullis-directory.toml");
    std::fs::write(
        &path,
        format!(
            "[directories.corp]\nurl = \"{}\"\nca_file = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\n\
             user_base = \"{}\"\naccount_base = \"{}\"\ngroup_base = \"{}\"\ndisabled_filter = \"(employeeType=disabled)\"\n\
             timeout_seconds = 3\n{extra}",
            ldap.ldaps_url(),
            ldap.ca().display(),
            slapd::SERVICE_DN,
            slapd::SERVICE_PASSWORD,
            slapd::PEOPLE,
            slapd::SERVICES,
            slapd::GROUPS,
        ),
    )
    .unwrap();
    path
}

fn seed(ldap: &Slapd) {
    ldap.add_user("dora", "Dora Directory", "dora@example.test", DORA_PW);
    ldap.add_user("aaron", "Aaron Approver", "aaron@example.test", AARON_PW);
    ldap.add_group("dbas", &[user_dn("dora")]);
    ldap.add_group("leads", &[user_dn("aaron")]);
    // Nested: aaron approves through leads ⊂ approvers.
    ldap.add_group("approvers", &[group_dn("leads")]);
    ldap.add_account("svc-app", SVC_PW);
}

async fn walk(db: Db) {
    let ldap = Slapd::start();
    seed(&ldap);
    let tmp = tempfile::tempdir().unwrap();
    let config = directory_config(&ldap, tmp.path(), "sync_interval_seconds = 0\n");
    let server = Server::start_with(db, false, &[("PORTCULLIS_CONFIG", config.to_str().unwrap())]);
    let admin_token = server.bootstrap().await;
    let admin = Person::login(&server, "admin", ADMIN_PASSWORD);

    // A directory user signs in with the directory's password; Portcullis keeps none.
    let dora = Person::login(&server, "dora", DORA_PW);
    let me = dora.ok(&["whoami", "-o", "json"]).json();
    assert_eq!((me["display_name"].as_str(), me["directory"].as_str()), (Some("Dora Directory"), Some("corp")), "{me}");
    let r = admin.ok(&["group", "show", "dbas", "-o", "json"]).json();
    assert_eq!(r["member_names"], json!(["dora"]), "{r}");
    // A wrong password, a filter wildcard and an injection are all just wrong.
    for (name, pw) in [("dora", "wrong"), ("d*", DORA_PW), ("*", DORA_PW), ("dora)(uid=*", DORA_PW)] {
        let (s, v) =
            server.call("POST", "/api/v1/auth/login", None, Some(json!({ "username": name, "password": pw }))).await;
        assert_eq!((s, v["code"].as_str()), (401, Some("invalid_credentials")), "{name}: {v}");
    }

    // The administrator synchronises: everyone and every group, nested groups resolved.
    let r = admin.ok(&["directory", "sync", "corp"]);
    assert!(r.out.contains("Users created: aaron") && r.out.contains("approvers"), "{}", r.text);
    let g = admin.ok(&["group", "show", "approvers", "-o", "json"]).json();
    assert_eq!(g["member_names"], json!(["aaron"]), "nested group: {g}");
    let r = admin.ok(&["directory", "list"]);
    assert!(r.out.contains("corp") && r.out.contains(&ldap.ldaps_url()), "{}", r.text);
    let env = [
        ("BASE_URL", server.url.as_str()),
        ("USER", "admin"),
        ("PASSWORD", ADMIN_PASSWORD),
        ("DIRECTORY", "corp"),
        ("DIRECTORY_USER", "dora"),
    ];
    crate::web::run_browser("directories.py", &format!("directories-{}", server.port), &env);
    // Directory groups' members and directory users' passwords are the directory's.
    let r = admin.run(&["group", "add-member", "dbas", "admin"]);
    assert!(!r.ok && r.text.contains("members come from the directory corp"), "{}", r.text);
    let (s, users) = server.call("GET", "/api/v1/users", Some(&admin_token), None).await;
    assert_eq!(s, 200);
    let dora_id = users.as_array().unwrap().iter().find(|u| u["username"] == "dora").unwrap()["id"].clone();
    let (s, v) = server
        .call(
            "POST",
            &format!("/api/v1/users/{}/password", dora_id.as_str().unwrap()),
            Some(&admin_token),
            Some(json!({})),
        )
        .await;
    assert!(s == 403 && v["message"].as_str().unwrap().contains("signs in through corp"), "{s} {v}");

    // Access: an entitlement of the directory group dbas, approvers from the nested group.
    let sshd = Sshd::start();
    let unix = UnixUser::create(TARGET_PW);
    admin.ok(&[
        "asset",
        "create",
        "db1",
        "--address",
        "127.0.0.1",
        "--platform",
        "linux",
        "--protocol",
        &format!("ssh:{}", sshd.port()),
    ]);
    admin.ok(&["account", "create", &unix.name, "--asset", "db1"]);
    let account = format!("{}@db1", unix.name);
    let o = server.cli(
        &["credential", "set-password", &account],
        &[("PORTCULLIS_CLI_CONFIG", &admin.cfg), ("PORTCULLIS_NEW_PASSWORD", TARGET_PW)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    admin.ok(&["entitlement", "create", "db-ops", "--priority", "1", "--group", "dbas"]);
    let file = tmp.path().join("policy.json");
    let policy = json!({
        "entitlement_id": "db-ops", "name": "db ssh", "priority": 1, "access_type": "ssh",
        "scope": { "accounts": [account] },
        "settings": { "approval_levels": [{ "required": 1, "group_ids": ["approvers"] }], "change_password_after_checkin": false }
    });
    std::fs::write(&file, policy.to_string()).unwrap();
    admin.ok(&["policy", "create", "--file", &file.display().to_string()]);

    let r = dora.ok(&["request", "create", "--account", &format!("{account}:ssh"), "-o", "json"]);
    let id = r.json()["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    let aaron = Person::login(&server, "aaron", AARON_PW);
    let r = aaron.ok(&["request", "list", "--queue", "approvals"]);
    assert!(r.out.contains(&id) && r.out.contains("dora"), "{}", r.text);
    aaron.ok(&["request", "approve", &id]);

    // A directory account: vaulted on the asset named like the directory, checked out, and
    // changed through the directory after check-in (verified by a bind).
    admin.ok(&["asset", "create", "corp", "--address", "127.0.0.1", "--platform", "directory"]);
    admin.ok(&["account", "create", "svc-app", "--asset", "corp"]);
    let o = server.cli(
        &["credential", "set-password", "svc-app@corp"],
        &[("PORTCULLIS_CLI_CONFIG", &admin.cfg), ("PORTCULLIS_NEW_PASSWORD", SVC_PW)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = admin.ok(&["credential", "check", "svc-app@corp", "-o", "json"]).json();
    assert_eq!(r["ok"], true, "{r}");
    let policy = json!({
        "entitlement_id": "db-ops", "name": "svc password", "priority": 2, "access_type": "password",
        "scope": { "accounts": ["svc-app@corp"] },
        "settings": { "approval_levels": [{ "required": 1, "group_ids": ["approvers"] }], "change_password_after_checkin": true }
    });
    std::fs::write(&file, policy.to_string()).unwrap();
    admin.ok(&["policy", "create", "--file", &file.display().to_string()]);
    let r = dora.ok(&["request", "create", "--account", "svc-app@corp:password", "-o", "json"]);
    let pw_request = r.json()["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    aaron.ok(&["request", "approve", &pw_request]);
    let r = dora.ok(&["request", "checkout", &pw_request]);
    assert!(r.out.contains(SVC_PW), "{}", r.text);
    dora.ok(&["request", "checkin", &pw_request]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = admin.ok(&["credential", "list", "svc-app@corp", "-o", "json"]).json();
        let versions = v.as_array().cloned().unwrap_or_default();
        if versions.iter().any(|x| x["version"] == 2 && x["status"] == "active") {
            break;
        }
        assert!(Instant::now() < deadline, "the directory account's password was not changed: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!ldap.binds(&format!("uid=svc-app,{}", slapd::SERVICES), SVC_PW), "the old password still binds");
    let r = admin.ok(&["credential", "check", "svc-app@corp", "-o", "json"]).json();
    assert_eq!((r["ok"].clone(), r["version"].clone()), (json!(true), json!(2)), "the new password binds: {r}");

    // Directory Account and Linked Account modes: the target is logged in to with a directory
    // account's name and vaulted password (the target knows the directory's accounts; here a
    // Unix user of the same name and password stands for that).
    let dir_unix = UnixUser::create(DIR_PW);
    ldap.add_account(&dir_unix.name, DIR_PW);
    let dir_account = format!("{}@corp", dir_unix.name);
    admin.ok(&["account", "create", &dir_unix.name, "--asset", "corp"]);
    let o = server.cli(
        &["credential", "set-password", &dir_account],
        &[("PORTCULLIS_CLI_CONFIG", &admin.cfg), ("PORTCULLIS_NEW_PASSWORD", DIR_PW)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (asset, mode) in [("db2", "directory_account"), ("db3", "linked_account")] {
        admin.ok(&[
            "asset",
            "create",
            asset,
            "--address",
            "127.0.0.1",
            "--platform",
            "linux",
            "--protocol",
            &format!("ssh:{}", sshd.port()),
        ]);
        // The requested account has no vaulted credential of its own.
        admin.ok(&["account", "create", &unix.name, "--asset", asset]);
        let mut settings =
            json!({ "auto_approve": true, "change_password_after_checkin": false, "account_mode": mode });
        if mode == "directory_account" {
            settings["directory_account_ids"] = json!([dir_account]);
        }
        let policy = json!({
            "entitlement_id": "db-ops", "name": format!("{asset} {mode}"), "priority": 3, "access_type": "ssh",
            "scope": { "accounts": [format!("{}@{asset}", unix.name)] }, "settings": settings,
        });
        std::fs::write(&file, policy.to_string()).unwrap();
        admin.ok(&["policy", "create", "--file", &file.display().to_string()]);
        dora.ok(&["request", "create", "--account", &format!("{}@{asset}:ssh", unix.name)]);
    }
    let whoami = |asset: &str| {
        let o = Command::new("sshpass")
            .args(["-p", DORA_PW, "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "LogLevel=ERROR", "-o", "PubkeyAuthentication=no", "-p", &server.ssh_port.to_string()])
            .arg(format!("dora#{}@{asset}@127.0.0.1", unix.name))
            .arg("whoami")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    assert_eq!(whoami("db2").trim(), dir_unix.name, "Directory Account mode logs in as the directory account");
    let said = whoami("db3");
    assert!(said.contains("you have none") && said.contains("link-account"), "{said}");
    admin.ok(&["user", "link-account", "dora", &dir_account]);
    let r = admin.ok(&["user", "linked-accounts", "dora"]);
    assert!(r.out.contains(&dir_account), "{}", r.text);
    assert_eq!(whoami("db3").trim(), dir_unix.name, "Linked Account mode logs in as dora's linked account");
    let r = admin.run(&["user", "link-account", "dora", &account]);
    assert!(!r.ok && r.text.contains("not a directory account"), "{}", r.text);

    // Dora's session through the proxy, signed in with her directory password.
    let ssh = Command::new("sshpass")
        .args(["-p", DORA_PW, "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR", "-o", "PubkeyAuthentication=no", "-p", &server.ssh_port.to_string()])
        .arg(format!("dora#{account}@127.0.0.1"))
        .arg("echo session-open; sleep 120")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let live = |v: &Value| v.as_array().is_some_and(|a| a.iter().any(|s| s["request_id"] == id.as_str()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = server.call("GET", "/api/v1/sessions?live=true", Some(&admin_token), None).await;
        if live(&v) {
            break;
        }
        assert!(Instant::now() < deadline, "dora's session did not start: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Disabled in the directory: the next synchronisation disables her and ends her session.
    ldap.replace(&user_dn("dora"), "employeeType", "disabled");
    let r = admin.ok(&["directory", "sync", "corp"]);
    assert!(r.out.contains("Users disabled (their sessions end): dora"), "{}", r.text);
    let out = tokio::task::spawn_blocking(move || ssh.wait_with_output().unwrap()).await.unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("session-open") && said.contains("disabled"), "{said}");
    let (s, v) =
        server.call("POST", "/api/v1/auth/login", None, Some(json!({ "username": "dora", "password": DORA_PW }))).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("invalid_credentials")), "{v}");
    let disabled = audited(&server, &admin_token, "user.update", "success").await;
    assert!(
        disabled.iter().any(|e| e["details"]["disabled"] == true && e["details"]["directory"] == "corp"),
        "{disabled:?}"
    );
    let r = dora.run(&["whoami"]);
    assert!(!r.ok, "her CLI session ended with the disable: {}", r.text);

    // Enabled again in the directory: back at the next sign-in.
    ldap.replace(&user_dn("dora"), "employeeType", "staff");
    Person::login(&server, "dora", DORA_PW);

    // The directory is down: directory users cannot sign in (clearly), local ones can.
    let mut ldap = ldap;
    ldap.pause();
    let (s, v) = server
        .call("POST", "/api/v1/auth/login", None, Some(json!({ "username": "aaron", "password": AARON_PW })))
        .await;
    assert_eq!((s, v["code"].as_str()), (502, Some("directory_unavailable")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("local users can still sign in"), "{v}");
    Person::login(&server, "admin", ADMIN_PASSWORD);
    let r = admin.run(&["directory", "sync", "corp"]);
    assert!(!r.ok && r.text.contains("nothing was changed"), "{}", r.text);
    let l = admin.ok(&["directory", "list", "-o", "json"]).json();
    assert!(l[0]["last_error"].as_str().is_some_and(|e| e.contains("cannot read directory corp")), "{l}");
    let g = admin.ok(&["group", "show", "approvers", "-o", "json"]).json();
    assert_eq!(g["member_names"], json!(["aaron"]), "a failed sync changes nothing: {g}");
    ldap.resume();
    Person::login(&server, "aaron", AARON_PW);
    // No directory password, bind password or token in the server's output.
    let all = server.all_output();
    for secret in [DORA_PW, AARON_PW, slapd::SERVICE_PASSWORD, TARGET_PW, DIR_PW] {
        assert!(!all.contains(secret), "a secret in the server's output");
    }
}

#[tokio::test]
async fn directory_sqlite() {
    walk(Db::Sqlite).await;
}

#[tokio::test]
async fn directory_postgres() {
    walk(Db::postgres()).await;
}

/// The schedule: the directory is read at start and every `sync_interval_seconds`; a user
/// disabled there is disabled here without anyone asking.
#[tokio::test]
async fn directory_scheduled_sync() {
    let ldap = Slapd::start();
    seed(&ldap);
    let tmp = tempfile::tempdir().unwrap();
    let config = directory_config(&ldap, tmp.path(), "sync_interval_seconds = 5\n");
    let server = Server::start_with(Db::Sqlite, false, &[("PORTCULLIS_CONFIG", config.to_str().unwrap())]);
    let admin = server.bootstrap().await;
    let user = |name: &'static str| {
        let server = &server;
        let admin = admin.clone();
        async move {
            let (_, users) = server.call("GET", "/api/v1/users", Some(&admin), None).await;
            users.as_array().unwrap().iter().find(|u| u["username"] == name).cloned()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while user("aaron").await.is_none() {
        assert!(Instant::now() < deadline, "the scheduled synchronisation did not bring aaron");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(user("dora").await.unwrap()["disabled"], false);
    ldap.delete(&user_dn("dora"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while user("dora").await.unwrap()["disabled"] != true {
        assert!(Instant::now() < deadline, "dora, gone from the directory, was not disabled");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, l) = server.call("GET", "/api/v1/directories", Some(&admin), None).await;
    assert!(l[0]["last_success_at"].is_string() && l[0]["last_error"].is_null(), "{l}");
    let syncs = audited(&server, &admin, "directory.sync", "success").await;
    assert!(syncs.iter().any(|e| e["details"]["disabled"] == json!(["dora"])), "{syncs:?}");
}
