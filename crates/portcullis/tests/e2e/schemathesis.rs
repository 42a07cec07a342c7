//! schemathesis (property-based API testing) against the live server's own OpenAPI
//! document: no 5xx response and no response that disagrees with the document.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use crate::harness::{Db, Server};

fn schemathesis() -> PathBuf {
    if let Ok(p) = std::env::var("PORTCULLIS_SCHEMATHESIS") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/schemathesis");
    assert!(
        venv.exists(),
        "schemathesis is not installed: run the suite with scripts/test, which installs it into .venv"
    );
    venv
}

#[tokio::test]
async fn openapi_conformance_and_no_server_errors() {
    let server = Server::start(Db::Sqlite);
    let admin = server.bootstrap().await;
    // An API token: the fuzzer calls logout, which must not cut it off mid-run.
    let (s, t) = server.call("POST", "/api/v1/me/tokens", Some(&admin), Some(json!({ "name": "schemathesis" }))).await;
    assert_eq!(s, 201);
    let token = t["secret"].as_str().unwrap().to_owned();
    let out = Command::new(schemathesis())
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", server.url))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"])
        .args(["--max-examples", "25", "--seed", "7", "--workers", "2", "--no-color"])
        // Would strip the fuzzer's own administrator of its roles and hide the rest of the API.
        .args(["--exclude-operation-id", "set_user_roles"])
        .current_dir(server.dir.path())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found problems:\n{stdout}\n{stderr}");
    assert!(stdout.contains("generated") && stdout.contains("passed"), "schemathesis ran no test cases:\n{stdout}");
    assert!(!stdout.contains("Authentication failed"), "the fuzzer was not signed in, so it only saw 401s:\n{stdout}");
    let log = server.all_output();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
