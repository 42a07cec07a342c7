//! Single sign-on with a real OpenID provider (`oidc-provider` on Node.js): the web UI in a
//! real browser and the CLI's loopback flow; the provider's groups as Portcullis groups; a
//! one-time code asked only when the provider asserted no second factor; a Portcullis user of
//! the same name not taken over. On SQLite and PostgreSQL.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use portcullis_testkit::oidc::OidcProvider;
use serde_json::{json, Value};

use crate::auth_flows::code;
use crate::harness::{Db, Server, ADMIN_PASSWORD};
use crate::people::{audited, Person};
use crate::web::run_browser;

const CLIENT_SECRET: &str = "oidc client secret 90125";
const OLGA_PW: &str = "olga provider pw 3141";
const ALICE_PW: &str = "alice provider pw 2718";

fn users() -> String {
    json!({
        "olga": { "password": OLGA_PW, "claims": {
            "preferred_username": "olga", "name": "Olga Operator", "email": "olga@example.test",
            "groups": ["ops", "sso-auditors"] } },
        // The provider's alice is not Portcullis's alice.
        "alice": { "password": ALICE_PW, "claims": { "preferred_username": "alice", "name": "Other Alice" } },
    })
    .to_string()
}

/// `portcullis login --sso` as a person would run it: it prints the address, the browser
/// signs in at the provider, the command finishes. Returns the command's saved sign-in.
fn cli_sign_in<'a>(server: &'a Server, login: &str, password: &str, name: &str) -> Person<'a> {
    let cfg = server.dir.path().join(format!("{name}.json")).display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["login", "--sso", "--no-browser", "--server", &server.url])
        .env("PORTCULLIS_CLI_CONFIG", &cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the command printed no address: {said}");
        said.push_str(&line);
        if let Some(u) = line.trim().strip_prefix("http://127.0.0.1") {
            break format!("http://127.0.0.1{u}");
        }
    };
    assert!(said.contains("open this address in a browser"), "{said}");
    let env =
        [("BASE_URL", server.url.as_str()), ("MODE", "cli"), ("URL", &url), ("LOGIN", login), ("PASSWORD", password)];
    run_browser("sso.py", &format!("sso-cli-{name}"), &env);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "login --sso failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("Signed in as {login}")), "{stdout}");
    Person { server, cfg }
}

async fn walk(db: Db, name: &str) {
    let provider_port = portcullis_testkit::free_port();
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let server = Server::start_env_for_port(db, |port| {
        vec![
            ("PORTCULLIS_OIDC_ISSUER".into(), issuer.clone()),
            ("PORTCULLIS_OIDC_CLIENT_ID".into(), "portcullis".into()),
            ("PORTCULLIS_OIDC_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("PORTCULLIS_OIDC_PUBLIC_URL".into(), format!("http://127.0.0.1:{port}")),
            ("PORTCULLIS_OIDC_DISPLAY_NAME".into(), "Test SSO".into()),
        ]
    });
    let redirect = format!("{}/auth/oidc/callback", server.url);
    let provider = OidcProvider::start(provider_port, "portcullis", CLIENT_SECRET, &redirect, &users());
    let admin_token = server.bootstrap().await;
    let admin = Person::login(&server, "admin", ADMIN_PASSWORD);
    let (s, v) = server.call("GET", "/api/v1/auth/sso", None, None).await;
    assert_eq!((s, v["display_name"].as_str()), (200, Some("Test SSO")), "{v}");

    // The CLI: the loopback flow creates olga, with the provider's groups.
    let olga = cli_sign_in(&server, "olga", OLGA_PW, &format!("{name}-olga"));
    let me = olga.ok(&["whoami", "-o", "json"]).json();
    assert_eq!((me["display_name"].as_str(), me["directory"].as_str()), (Some("Olga Operator"), Some("oidc")), "{me}");
    let g = admin.ok(&["group", "show", "ops", "-o", "json"]).json();
    assert_eq!(g["member_names"], json!(["olga"]), "{g}");
    // Her password is the provider's: she has none here.
    let (s, v) =
        server.call("POST", "/api/v1/auth/login", None, Some(json!({ "username": "olga", "password": OLGA_PW }))).await;
    assert_eq!(s, 401, "{v}");

    // The web UI: olga enrols a one-time code; signing in through the provider without a
    // second factor asks for it, with one it does not.
    let token = serde_json::from_str::<Value>(&std::fs::read_to_string(&olga.cfg).unwrap()).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, e) = server.call("POST", "/api/v1/me/totp", Some(&token), None).await;
    let secret = e["secret"].as_str().unwrap().to_owned();
    let (s, b) =
        server.call("POST", "/api/v1/me/totp/confirm", Some(&token), Some(json!({ "code": code(&secret, -1) }))).await;
    assert_eq!(s, 204, "{b}");
    let totp = code(&secret, 0);
    let web = |mfa: &'static str, totp: String, run: &str| {
        let env = [
            ("BASE_URL", server.url.clone()),
            ("MODE", "web".into()),
            ("LOGIN", "olga".into()),
            ("PASSWORD", OLGA_PW.into()),
            ("MFA", mfa.into()),
            ("TOTP_CODE", totp),
            ("EXPECT", "Olga Operator".into()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_browser("sso.py", &format!("sso-web-{name}-{run}"), &env)
    };
    web("0", totp, "totp");
    web("1", String::new(), "mfa");

    // A Portcullis user of the same name is not taken over by the provider's.
    server.user_with_roles(&admin_token, "alice", &[]).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["login", "--sso", "--no-browser", "--server", &server.url])
        .env("PORTCULLIS_CLI_CONFIG", server.dir.path().join("alice.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0);
        if let Some(u) = line.trim().strip_prefix("http://127.0.0.1") {
            break format!("http://127.0.0.1{u}");
        }
    };
    // The browser is sent back with the refusal, not to the command.
    let env = [
        ("BASE_URL", server.url.as_str()),
        ("MODE", "refused"),
        ("URL", &url),
        ("LOGIN", "alice"),
        ("PASSWORD", ALICE_PW),
    ];
    let said = run_browser("sso.py", &format!("sso-refused-{name}"), &env);
    assert!(said.contains("link_existing"), "{said}");
    let _ = child.kill();
    let _ = child.wait();
    let refused = audited(&server, &admin_token, "auth.sso", "denied").await;
    assert!(refused.iter().any(|e| e["details"]["code"] == "sso_name_taken"), "{refused:?}");
    let ok = audited(&server, &admin_token, "auth.sso", "success").await;
    assert_eq!(ok.len(), 3, "{ok:?}");
    let all = server.all_output();
    for secret in [CLIENT_SECRET, OLGA_PW, ALICE_PW] {
        assert!(!all.contains(secret), "a secret in the server's output");
    }
    drop(provider);
}

#[tokio::test]
async fn sso_sqlite() {
    walk(Db::Sqlite, "sqlite").await;
}

#[tokio::test]
async fn sso_postgres() {
    walk(Db::postgres(), "postgres").await;
}
