//! Bad input gets a clear 4xx with a stable code (and the field, for validation errors), and
//! changes nothing: the database's row counts and the audit log are the same afterwards.

use serde_json::{json, Value};

use crate::harness::{Db, Server};

struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn case(
    method: &'static str,
    path: impl Into<String>,
    body: Value,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case { method, path: path.into(), body: Some(body), status, code, field }
}

async fn run(db: Db) {
    let server = Server::start(db);
    let admin = server.bootstrap().await;
    let (s, asset) = server
        .call(
            "POST",
            "/api/v1/assets",
            Some(&admin),
            Some(json!({ "name": "db1", "address": "10.1.1.1", "platform": "linux" })),
        )
        .await;
    assert_eq!(s, 201);
    let asset_id = asset["id"].as_str().unwrap().to_owned();
    let (s, _) = server
        .call(
            "POST",
            "/api/v1/users",
            Some(&admin),
            Some(json!({ "username": "alice", "password": "alice password 1" })),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = server.call("POST", "/api/v1/me/totp", Some(&admin), None).await;
    assert_eq!(s, 200);
    let ghost = "00000000-0000-4000-8000-000000000000";
    let long = "x".repeat(129);

    let store = server.store().await;
    let before = store.table_counts().await.unwrap();

    let cases = vec![
        // Wrong types, unknown fields, malformed JSON.
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": 5, "address": "10.0.0.1", "platform": "linux" }),
            422,
            "invalid_body",
            None,
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "a", "address": "10.0.0.1", "platform": "linux", "colour": "red" }),
            422,
            "invalid_body",
            None,
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "address": "10.0.0.1", "platform": "linux" }),
            422,
            "invalid_body",
            None,
        ),
        case("POST", "/api/v1/assets", json!([1, 2]), 422, "invalid_body", None),
        // Empty and oversized names, invalid addresses and ports, unknown enums.
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "", "address": "10.0.0.1", "platform": "linux" }),
            422,
            "validation_failed",
            Some("name"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": long, "address": "10.0.0.1", "platform": "linux" }),
            422,
            "validation_failed",
            Some("name"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": " padded", "address": "10.0.0.1", "platform": "linux" }),
            422,
            "validation_failed",
            Some("name"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "a", "address": "999.1.1.1", "platform": "linux" }),
            422,
            "validation_failed",
            Some("address"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "a", "address": "bad host!", "platform": "linux" }),
            422,
            "validation_failed",
            Some("address"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "a", "address": "10.0.0.1", "platform": "amiga" }),
            422,
            "validation_failed",
            Some("platform"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "a", "address": "10.0.0.1", "platform": "linux", "protocols": [{ "protocol": "ssh", "port": 0 }] }),
            422,
            "validation_failed",
            Some("protocols[0].port"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "a", "address": "10.0.0.1", "platform": "linux", "protocols": [{ "protocol": "ssh", "port": 70000 }] }),
            422,
            "validation_failed",
            Some("protocols[0].port"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "a", "address": "10.0.0.1", "platform": "linux", "protocols": [{ "protocol": "vnc" }] }),
            422,
            "validation_failed",
            Some("protocols[0].protocol"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "a", "address": "10.0.0.1", "platform": "linux", "protocols": [{ "protocol": "ssh" }, { "protocol": "ssh", "port": 2222 }] }),
            422,
            "validation_failed",
            Some("protocols[1].protocol"),
        ),
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "a", "address": "10.0.0.1", "platform": "linux", "host_key": "ssh-ed25519 notbase64!" }),
            422,
            "validation_failed",
            Some("host_key"),
        ),
        // Duplicates.
        case(
            "POST",
            "/api/v1/assets",
            json!({ "name": "db1", "address": "10.0.0.2", "platform": "linux" }),
            409,
            "conflict",
            None,
        ),
        case(
            "POST",
            "/api/v1/users",
            json!({ "username": "alice", "password": "another password 1" }),
            409,
            "conflict",
            None,
        ),
        // Unknown ids.
        case("PATCH", format!("/api/v1/assets/{ghost}"), json!({ "name": "x" }), 404, "not_found", None),
        case("POST", "/api/v1/accounts", json!({ "asset_id": ghost, "name": "root" }), 404, "not_found", None),
        case("PUT", format!("/api/v1/asset-groups/{ghost}/members/{asset_id}"), json!(null), 404, "not_found", None),
        case("PATCH", format!("/api/v1/users/{ghost}"), json!({ "display_name": "x" }), 404, "not_found", None),
        case(
            "POST",
            "/api/v1/accounts",
            json!({ "asset_id": asset_id, "name": "root", "kind": "cloud" }),
            422,
            "validation_failed",
            Some("kind"),
        ),
        case(
            "POST",
            "/api/v1/accounts",
            json!({ "asset_id": asset_id, "name": "ro/ot" }),
            422,
            "validation_failed",
            Some("name"),
        ),
        // Users: names, passwords, time zones, roles, e-mail.
        case(
            "POST",
            "/api/v1/users",
            json!({ "username": "-bob", "password": "bob password 12" }),
            422,
            "validation_failed",
            Some("username"),
        ),
        case(
            "POST",
            "/api/v1/users",
            json!({ "username": "bob", "password": "short" }),
            422,
            "validation_failed",
            Some("password"),
        ),
        case(
            "POST",
            "/api/v1/users",
            json!({ "username": "bob", "password": "bob password 12", "time_zone": "Mars/Olympus_Mons" }),
            422,
            "validation_failed",
            Some("time_zone"),
        ),
        case(
            "POST",
            "/api/v1/users",
            json!({ "username": "bob", "password": "bob password 12", "roles": ["root"] }),
            422,
            "validation_failed",
            Some("roles[0]"),
        ),
        case(
            "POST",
            "/api/v1/users",
            json!({ "username": "bob", "password": "bob password 12", "email": "not-an-email" }),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            "PATCH",
            "/api/v1/me",
            json!({ "time_zone": "Europe/Atlantis" }),
            422,
            "validation_failed",
            Some("time_zone"),
        ),
        // Bad one-time codes.
        case("POST", "/api/v1/me/totp/confirm", json!({ "code": "000000" }), 422, "validation_failed", Some("code")),
        case("POST", "/api/v1/me/totp/confirm", json!({ "code": "abc" }), 422, "validation_failed", Some("code")),
        // Tokens and audit queries.
        case(
            "POST",
            "/api/v1/me/tokens",
            json!({ "name": "t", "expires_at": "yesterday" }),
            422,
            "validation_failed",
            Some("expires_at"),
        ),
        case(
            "POST",
            "/api/v1/me/tokens",
            json!({ "name": "t", "expires_at": "2001-01-01T00:00:00Z" }),
            422,
            "validation_failed",
            Some("expires_at"),
        ),
        case("GET", "/api/v1/audit/events?limit=0", json!(null), 422, "validation_failed", Some("limit")),
        case("GET", "/api/v1/audit/events?from=tuesday", json!(null), 422, "validation_failed", Some("from")),
        case("GET", "/api/v1/audit/events?bogus=1", json!(null), 400, "bad_request", None),
        case("GET", "/api/v1/assets?limit=abc", json!(null), 400, "bad_request", None),
    ];
    for c in &cases {
        let body = c.body.clone().filter(|b| !b.is_null());
        let (status, resp) = server.call(c.method, &c.path, Some(&admin), body).await;
        assert_eq!(status, c.status, "{} {} {:?}: {resp}", c.method, c.path, c.body);
        assert_eq!(resp["code"], c.code, "{} {}: {resp}", c.method, c.path);
        assert!(!resp["message"].as_str().unwrap_or_default().is_empty(), "a message for people: {resp}");
        if let Some(f) = c.field {
            assert_eq!(resp["field"], f, "{} {}: {resp}", c.method, c.path);
        }
    }

    // Raw bodies: malformed JSON, no content type, too large.
    let client = server.client();
    let url = format!("{}/api/v1/assets", server.url);
    let r = client
        .post(&url)
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "malformed_json");
    let r = client.post(&url).bearer_auth(&admin).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 415);
    let big = format!(
        "{{\"name\": \"{}\", \"address\": \"10.0.0.1\", \"platform\": \"linux\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let r = client
        .post(&url)
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "payload_too_large");

    let after = store.table_counts().await.unwrap();
    assert_eq!(before, after, "bad input changed the database");
    let (_, assets) = server.call("GET", "/api/v1/assets", Some(&admin), None).await;
    assert_eq!(assets.as_array().unwrap().len(), 1);
    assert_eq!(assets[0]["name"], "db1");
    assert!(store.verify_audit_chain().await.unwrap().broken.is_none());
    store.close().await;
}

#[tokio::test]
async fn bad_input_changes_nothing_sqlite() {
    run(Db::Sqlite).await;
}

#[tokio::test]
async fn bad_input_changes_nothing_postgres() {
    run(Db::postgres()).await;
}
