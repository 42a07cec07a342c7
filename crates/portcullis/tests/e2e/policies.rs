//! Entitlements, policies and "explain" through the real server: seed 004's example built
//! with the API, the requester's time zone, and bad input that changes nothing.

use serde_json::{json, Value};

use crate::harness::{Db, Server};

async fn post(server: &Server, token: &str, path: &str, body: Value) -> Value {
    let (s, b) = server.call("POST", path, Some(token), Some(body)).await;
    assert_eq!(s, 201, "POST {path}: {b}");
    b
}

async fn run(db: Db) {
    let server = Server::start(db);
    let admin = server.bootstrap().await;
    let (user_id, _) = server.user_with_roles(&admin, "requester", &[]).await;
    let (approver_id, _) = server.user_with_roles(&admin, "approver", &[]).await;
    let asset =
        post(&server, &admin, "/api/v1/assets", json!({ "name": "srv", "address": "10.0.0.9", "platform": "linux" }))
            .await;
    let account =
        post(&server, &admin, "/api/v1/accounts", json!({ "asset_id": asset["id"], "name": "accountX" })).await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let group = post(&server, &admin, "/api/v1/user-groups", json!({ "name": "operators" })).await;
    let (s, _) = server
        .call(
            "PUT",
            &format!("/api/v1/user-groups/{}/members/{user_id}", group["id"].as_str().unwrap()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200);

    let ent_a =
        post(&server, &admin, "/api/v1/entitlements", json!({ "name": "A", "priority": 1, "user_ids": [user_id] }))
            .await;
    let ent_b = post(
        &server,
        &admin,
        "/api/v1/entitlements",
        json!({ "name": "B", "priority": 2, "group_ids": [group["id"]] }),
    )
    .await;
    let approvals = json!({ "approval_levels": [{ "required": 1, "user_ids": [approver_id] }] });
    let policy = |ent: &Value, name: &str, priority: i64, days: &str, start: &str, end: &str| {
        json!({
            "entitlement_id": ent["id"], "name": name, "priority": priority, "access_type": "password",
            "scope": { "accounts": [account_id] },
            "windows": [{ "days": [days], "start": start, "end": end }],
            "settings": approvals,
        })
    };
    let weekday =
        post(&server, &admin, "/api/v1/policies", policy(&ent_a, "Week Day Policy", 1, "mon-fri", "08:00", "17:00"))
            .await;
    let sunday_am =
        post(&server, &admin, "/api/v1/policies", policy(&ent_b, "Sunday AM", 1, "sun", "08:00", "12:00")).await;
    let sunday_pm =
        post(&server, &admin, "/api/v1/policies", policy(&ent_b, "Sunday PM", 2, "sun", "13:00", "17:00")).await;
    assert_eq!(weekday["settings"]["approval_levels"][0]["required"], 1);
    assert_eq!(weekday["windows"][0]["days"], json!(["mon", "tue", "wed", "thu", "fri"]));

    let explain = |at: &str, emergency: bool| {
        server.call(
            "POST",
            "/api/v1/policies/explain",
            Some(&admin),
            Some(json!({ "user_id": user_id, "account_id": account_id, "access_type": "password", "at": at, "emergency": emergency })),
        )
    };
    // Sunday 2026-01-04 16:00 in the requester's zone (UTC by default): Sunday PM governs.
    let (s, r) = explain("2026-01-04T16:00:00Z", false).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["governing_policy_id"], sunday_pm["id"]);
    let outcome = |r: &Value, name: &str| {
        r["candidates"].as_array().unwrap().iter().find(|c| c["policy_name"] == name).unwrap()["outcome"].clone()
    };
    assert_eq!(outcome(&r, "Week Day Policy"), "outside_policy_window");
    assert_eq!(outcome(&r, "Sunday AM"), "outside_policy_window");
    assert_eq!(outcome(&r, "Sunday PM"), "governs");
    // Monday 10:00: entitlement A.
    let (_, r) = explain("2026-01-05T10:00:00Z", false).await;
    assert_eq!(r["governing_policy_id"], weekday["id"]);
    // Emergency: nobody allows it.
    let (_, r) = explain("2026-01-04T16:00:00Z", true).await;
    assert_eq!(r["governing_policy_id"], Value::Null);
    assert_eq!(outcome(&r, "Sunday PM"), "emergency_not_allowed");

    // Variation: Sunday AM until 17:00 wins by priority; Sunday PM allows emergencies.
    let mut am = policy(&ent_b, "Sunday AM", 1, "sun", "08:00", "17:00");
    am["emergency_allowed"] = json!(false);
    let (s, b) = server
        .call("PUT", &format!("/api/v1/policies/{}", sunday_am["id"].as_str().unwrap()), Some(&admin), Some(am))
        .await;
    assert_eq!(s, 200, "{b}");
    let mut pm = policy(&ent_b, "Sunday PM", 2, "sun", "13:00", "17:00");
    pm["emergency_allowed"] = json!(true);
    let (s, _) = server
        .call("PUT", &format!("/api/v1/policies/{}", sunday_pm["id"].as_str().unwrap()), Some(&admin), Some(pm))
        .await;
    assert_eq!(s, 200);
    let (_, r) = explain("2026-01-04T16:00:00Z", false).await;
    assert_eq!(r["governing_policy_id"], sunday_am["id"]);
    assert_eq!(outcome(&r, "Sunday PM"), "lower_policy_priority");
    let (_, r) = explain("2026-01-04T16:00:00Z", true).await;
    assert_eq!(r["governing_policy_id"], sunday_pm["id"]);

    // The requester's time zone decides: in Tokyo, 16:00 UTC Sunday is Monday 01:00.
    let (s, _) = server
        .call("PATCH", &format!("/api/v1/users/{user_id}"), Some(&admin), Some(json!({ "time_zone": "Asia/Tokyo" })))
        .await;
    assert_eq!(s, 200);
    let (_, r) = explain("2026-01-04T16:00:00Z", false).await;
    assert_eq!(r["governing_policy_id"], Value::Null);
    assert_eq!(r["time_zone"], "Asia/Tokyo");

    // The same question from the CLI.
    let o = server.cli(
        &["login", "--server", &server.url, "--username", "admin"],
        &[("PORTCULLIS_PASSWORD", crate::harness::ADMIN_PASSWORD)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = server.cli(
        &[
            "policy",
            "explain",
            "--user",
            "requester",
            "--account",
            &account_id,
            "--access-type",
            "password",
            "--at",
            "2026-01-05T00:30:00Z",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains(&format!("Governing policy: {}", weekday["name"].as_str().unwrap())),
        "{text}"
    );
    assert!(text.contains("Sunday AM") && text.contains("outside_policy_window"), "{text}");
    let o = server
        .cli(&["policy", "explain", "--user", "nobody", "--account", &account_id, "--access-type", "password"], &[]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no user is named 'nobody'"));

    // Bad input: 4xx naming the field, nothing changed.
    let store = server.store().await;
    let before = store.table_counts().await.unwrap();
    let bad: Vec<(&str, Value, &str)> = vec![
        (
            "/api/v1/policies",
            json!({ "entitlement_id": ent_a["id"], "name": "x", "priority": 1, "access_type": "password", "scope": { "accounts": [account_id] }, "windows": [{ "days": ["mon"], "start": "17:00", "end": "08:00" }], "settings": approvals }),
            "windows[0].end",
        ),
        (
            "/api/v1/policies",
            json!({ "entitlement_id": ent_a["id"], "name": "x", "priority": 1, "access_type": "ftp", "scope": { "accounts": [account_id] }, "settings": approvals }),
            "access_type",
        ),
        (
            "/api/v1/policies",
            json!({ "entitlement_id": ent_a["id"], "name": "x", "priority": 1, "access_type": "password", "scope": {}, "settings": approvals }),
            "scope",
        ),
        (
            "/api/v1/policies",
            json!({ "entitlement_id": ent_a["id"], "name": "x", "priority": 1, "access_type": "password", "scope": { "accounts": ["ghost"] }, "settings": approvals }),
            "scope.accounts[0]",
        ),
        (
            "/api/v1/policies",
            json!({ "entitlement_id": "ghost", "name": "x", "priority": 1, "access_type": "password", "scope": { "accounts": [account_id] }, "settings": approvals }),
            "entitlement_id",
        ),
        (
            "/api/v1/policies",
            json!({ "entitlement_id": ent_a["id"], "name": "x", "priority": 1, "access_type": "password", "scope": { "accounts": [account_id] } }),
            "settings.approval_levels",
        ),
        (
            "/api/v1/policies",
            json!({ "entitlement_id": ent_a["id"], "name": "x", "priority": 1, "access_type": "password", "scope": { "accounts": [account_id] }, "settings": { "auto_approve": true, "default_duration_minutes": 600, "max_duration_minutes": 60 } }),
            "settings.default_duration_minutes",
        ),
        (
            "/api/v1/policies",
            json!({ "entitlement_id": ent_a["id"], "name": "Week Day Policy", "priority": 1, "access_type": "password", "scope": { "accounts": [account_id] }, "settings": approvals }),
            "",
        ),
        ("/api/v1/entitlements", json!({ "name": "C", "priority": 0 }), "priority"),
        (
            "/api/v1/entitlements",
            json!({ "name": "C", "priority": 1, "windows": [{ "days": ["someday"], "start": "08:00", "end": "09:00" }] }),
            "windows[0].days[0]",
        ),
        (
            "/api/v1/entitlements",
            json!({ "name": "C", "priority": 1, "windows": [{ "days": ["mon"], "start": "8am", "end": "09:00" }] }),
            "windows[0].start",
        ),
        ("/api/v1/entitlements", json!({ "name": "C", "priority": 1, "user_ids": ["ghost"] }), "user_ids[0]"),
        ("/api/v1/entitlements", json!({ "name": "C", "priority": 1, "expires_at": "soon" }), "expires_at"),
        (
            "/api/v1/policies/explain",
            json!({ "user_id": "ghost", "account_id": account_id, "access_type": "password" }),
            "user_id",
        ),
        (
            "/api/v1/policies/explain",
            json!({ "user_id": user_id, "account_id": "ghost", "access_type": "password" }),
            "account_id",
        ),
        (
            "/api/v1/policies/explain",
            json!({ "user_id": user_id, "account_id": account_id, "access_type": "password", "at": "noon" }),
            "at",
        ),
    ];
    for (path, body, field) in bad {
        let (s, b) = server.call("POST", path, Some(&admin), Some(body.clone())).await;
        if field.is_empty() {
            assert_eq!((s, b["code"].as_str()), (409, Some("conflict")), "{path} {body}: {b}");
        } else {
            assert_eq!(s, 422, "{path} {body}: {b}");
            assert_eq!(b["field"], field, "{path} {body}: {b}");
        }
    }
    assert_eq!(store.table_counts().await.unwrap(), before, "bad input changed the database");

    // Deleting an entitlement deletes its policies; the audit log says how many.
    let (s, _) = server
        .call("DELETE", &format!("/api/v1/entitlements/{}", ent_b["id"].as_str().unwrap()), Some(&admin), None)
        .await;
    assert_eq!(s, 204);
    let (_, left) = server.call("GET", "/api/v1/policies", Some(&admin), None).await;
    assert_eq!(left.as_array().unwrap().len(), 1);
    let (_, page) = server.call("GET", "/api/v1/audit/events?action=entitlement.delete", Some(&admin), None).await;
    assert_eq!(page["events"][0]["details"]["policies_deleted"], 2);
    store.close().await;
}

#[tokio::test]
async fn policies_and_explain_sqlite() {
    run(Db::Sqlite).await;
}

#[tokio::test]
async fn policies_and_explain_postgres() {
    run(Db::postgres()).await;
}
