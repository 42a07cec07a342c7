//! The access request workflow through the real server: levels of approval, nobody approving
//! their own request, check-in and review with the whole history, revocation, emergency
//! access, availability under concurrency, the outbox, bad input, and scheduled transitions
//! that survive a restart.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{Db, Server};

struct World {
    admin: String,
    requester: (String, String),
    approver1: (String, String),
    approver2: (String, String),
    reviewer: (String, String),
    accounts: Vec<String>,
    entitlement: String,
}

async fn post(server: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    server.call("POST", path, Some(token), Some(body)).await
}

async fn world(server: &Server) -> World {
    let admin = server.bootstrap().await;
    let requester = server.user_with_roles(&admin, "requester", &[]).await;
    let approver1 = server.user_with_roles(&admin, "approver1", &[]).await;
    let approver2 = server.user_with_roles(&admin, "approver2", &[]).await;
    let reviewer = server.user_with_roles(&admin, "reviewer", &[]).await;
    let (_, asset) =
        post(server, &admin, "/api/v1/assets", json!({ "name": "db", "address": "10.0.0.1", "platform": "linux" }))
            .await;
    let mut accounts = Vec::new();
    for name in ["root", "oracle", "shared", "race"] {
        let (s, a) = post(server, &admin, "/api/v1/accounts", json!({ "asset_id": asset["id"], "name": name })).await;
        assert_eq!(s, 201);
        accounts.push(a["id"].as_str().unwrap().to_owned());
    }
    let (s, e) = post(
        server,
        &admin,
        "/api/v1/entitlements",
        json!({ "name": "DBAs", "priority": 1, "user_ids": [requester.0] }),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    World {
        admin,
        requester,
        approver1,
        approver2,
        reviewer,
        accounts,
        entitlement: e["id"].as_str().unwrap().to_owned(),
    }
}

async fn policy(server: &Server, w: &World, name: &str, account: &str, settings: Value, emergency: bool) -> Value {
    // No automatic password change after check-in here: its background work (and its
    // notifications) would race the row counts this workflow test compares.
    let mut settings = settings;
    if settings.get("change_password_after_checkin").is_none() {
        settings["change_password_after_checkin"] = json!(false);
    }
    let (s, p) = post(
        server,
        &w.admin,
        "/api/v1/policies",
        json!({ "entitlement_id": w.entitlement, "name": name, "priority": 1, "access_type": "password",
                "scope": { "accounts": [account] }, "emergency_allowed": emergency, "settings": settings }),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    p
}

async fn request_one(server: &Server, token: &str, account: &str, extra: Value) -> Value {
    let mut body = json!({ "accounts": [{ "account_id": account, "access_type": "password" }] });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, r) = post(server, token, "/api/v1/requests", body).await;
    assert_eq!(s, 200, "{r}");
    r["outcomes"][0].clone()
}

/// The ids in a work queue, as `token` sees it (`query`: `queue=…&…`).
async fn queue(server: &Server, token: &str, query: &str) -> (u16, Value) {
    server.call("GET", &format!("/api/v1/requests?{query}"), Some(token), None).await
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().map(|l| l.iter().map(|r| r["id"].as_str().unwrap_or("").to_owned()).collect()).unwrap_or_default()
}

async fn run(db: Db) {
    let server = Server::start(db);
    let w = world(&server).await;
    let two_levels = json!({
        "approval_levels": [{ "required": 1, "user_ids": [w.approver1.0] }, { "required": 1, "user_ids": [w.approver2.0] }],
        "review_required": true, "reviewer_user_ids": [w.reviewer.0], "ticket_required": true,
    });
    policy(&server, &w, "two levels", &w.accounts[0], two_levels, false).await;
    let req_tok = &w.requester.1;

    // A detail the policy requires is required.
    let (s, b) = post(
        &server,
        req_tok,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": w.accounts[0], "access_type": "password" }] }),
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("ticket")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("the policy 'two levels'"), "names the policy: {b}");

    let out = request_one(&server, req_tok, &w.accounts[0], json!({ "ticket": "CHG-1", "comment": "patching" })).await;
    let r = out["request"].clone();
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["state"], "pending_approval");
    assert_eq!(r["status_text"], "Pending 2 approvals");

    let approve = |tok: String, body: Value| {
        let path = format!("/api/v1/requests/{id}/approve");
        let server = &server;
        async move { post(server, &tok, &path, body).await }
    };
    // Nobody approves their own request; level 2 waits for level 1.
    let (s, b) = approve(req_tok.clone(), json!({})).await;
    assert_eq!((s, b["message"].as_str()), (403, Some("you cannot approve or deny your own request")), "{b}");
    let (s, b) = approve(w.approver2.1.clone(), json!({})).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("not_allowed_to_approve")), "{b}");
    let (_, pending) = server.call("GET", "/api/v1/approvals", Some(&w.approver1.1), None).await;
    assert_eq!(pending.as_array().unwrap().len(), 1);
    // The approver's queue names the requester, account, asset and policy.
    let (s, q) = queue(&server, &w.approver1.1, "queue=approvals").await;
    assert_eq!((s, ids(&q)), (200, vec![id.clone()]), "{q}");
    let names = |r: &Value| {
        ["requester_name", "account_name", "asset_name", "policy_name", "ticket"]
            .map(|k| r[k].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(names(&q[0]), ["requester", "root", "db", "two levels", "CHG-1"]);
    assert!(ids(&queue(&server, req_tok, "queue=approvals").await.1).is_empty(), "nobody approves their own");
    let (_, pending2) = server.call("GET", "/api/v1/approvals", Some(&w.approver2.1), None).await;
    assert!(pending2.as_array().unwrap().is_empty(), "level 2 is not asked before level 1 approved");

    let (s, b) = approve(w.approver1.1.clone(), json!({ "comment": "ok from ops" })).await;
    assert_eq!(
        (s, b["state"].as_str(), b["status_text"].as_str()),
        (200, Some("pending_approval"), Some("Pending 1 approval")),
        "{b}"
    );
    let (s, b) = approve(w.approver1.1.clone(), json!({})).await;
    assert_eq!(s, 403, "one approver cannot approve twice: {b}");
    let (s, b) = approve(w.approver2.1.clone(), json!({ "comment": "ok from security" })).await;
    assert_eq!((s, b["state"].as_str()), (200, Some("available")), "{b}");
    let (s, b) = approve(w.approver2.1.clone(), json!({})).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("request_available")), "{b}");
    // Both approvers find what they approved, in use, with its live sessions (none yet).
    for tok in [&w.approver1.1, &w.approver2.1] {
        let (s, q) = queue(&server, tok, "queue=approved").await;
        assert_eq!((s, ids(&q)), (200, vec![id.clone()]), "{q}");
        assert_eq!(q[0]["state"], "available");
        assert_eq!(q[0]["live_sessions"], json!([]));
    }
    assert!(ids(&queue(&server, &w.approver1.1, "queue=approved&state=expired").await.1).is_empty());
    assert!(ids(&queue(&server, &w.reviewer.1, "queue=approved").await.1).is_empty());

    // Check-in leads to review; the reviewer sees the whole history.
    let (s, b) = post(&server, &w.approver1.1, &format!("/api/v1/requests/{id}/checkin"), json!({})).await;
    assert_eq!(s, 403, "only the requester checks in: {b}");
    let (s, b) = post(&server, req_tok, &format!("/api/v1/requests/{id}/checkin"), json!({ "comment": "done" })).await;
    assert_eq!((s, b["state"].as_str()), (200, Some("pending_review")), "{b}");
    // The reviewer's own queue holds it (filters narrow it); nobody else's review queue does.
    let (s, q) = queue(&server, &w.reviewer.1, "queue=reviews").await;
    assert_eq!((s, ids(&q)), (200, vec![id.clone()]), "{q}");
    assert_eq!(q[0]["requester_name"], "requester");
    let same_account = "queue=reviews&account=root@db&state=pending_review&requester=requester";
    assert_eq!(ids(&queue(&server, &w.reviewer.1, same_account).await.1), vec![id.clone()]);
    assert_eq!(
        ids(&queue(&server, &w.reviewer.1, &format!("queue=reviews&account={}", w.accounts[0])).await.1),
        vec![id.clone()]
    );
    assert!(ids(&queue(&server, &w.reviewer.1, "queue=reviews&requester=nobody").await.1).is_empty());
    let other_account = format!("queue=reviews&account={}", w.accounts[1]);
    assert!(ids(&queue(&server, &w.reviewer.1, &other_account).await.1).is_empty());
    assert!(ids(&queue(&server, &w.approver1.1, "queue=reviews").await.1).is_empty());
    assert!(ids(&queue(&server, req_tok, "queue=reviews").await.1).is_empty());
    let (s, b) = queue(&server, &w.reviewer.1, "queue=all").await;
    assert_eq!(s, 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("use the queues mine, approvals, approved or reviews"), "{b}");
    let (s, b) = queue(&server, &w.reviewer.1, "queue=mine&limit=0").await;
    assert_eq!((s, b["field"].as_str()), (422, Some("limit")), "{b}");
    let (s, b) = queue(&server, &w.reviewer.1, "queue=everything").await;
    assert_eq!((s, b["field"].as_str()), (422, Some("queue")), "{b}");
    let (s, detail) = server.call("GET", &format!("/api/v1/requests/{id}"), Some(&w.reviewer.1), None).await;
    assert_eq!(s, 200);
    let steps: Vec<String> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}:{}:{}",
                h["actor_name"].as_str().unwrap(),
                h["action"].as_str().unwrap(),
                h["to_state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "requester:create:pending_approval",
            "approver1:approve:pending_approval",
            "approver2:approve:available",
            "requester:check_in:pending_review"
        ]
    );
    assert_eq!(detail["approvals"].as_array().unwrap().len(), 2);
    let (s, b) =
        post(&server, &w.reviewer.1, &format!("/api/v1/requests/{id}/review"), json!({ "comment": "looked fine" }))
            .await;
    assert_eq!((s, b["state"].as_str()), (200, Some("reviewed")), "{b}");
    assert!(ids(&queue(&server, &w.reviewer.1, "queue=reviews").await.1).is_empty(), "reviewed: out of the queue");
    let (s, _) = post(&server, req_tok, &format!("/api/v1/requests/{id}/remove"), json!({})).await;
    assert_eq!(s, 200);
    let (_, mine) = server.call("GET", "/api/v1/requests", Some(req_tok), None).await;
    assert!(mine.as_array().unwrap().iter().all(|r| r["id"] != id.as_str()), "removed from the requester's list");
    let (_, outsider) = server.user_with_roles(&w.admin, "outsider", &[]).await;
    let (s, _) = server.call("GET", &format!("/api/v1/requests/{id}"), Some(&outsider), None).await;
    assert_eq!(s, 404, "others cannot see it");

    // Revocation by one approver; an approval after it is refused.
    let out = request_one(&server, req_tok, &w.accounts[0], json!({ "ticket": "CHG-2" })).await;
    let id2 = out["request"]["id"].as_str().unwrap().to_owned();
    let (s, b) =
        post(&server, &w.approver2.1, &format!("/api/v1/requests/{id2}/revoke"), json!({ "comment": "not today" }))
            .await;
    assert_eq!((s, b["state"].as_str()), (200, Some("revoked")), "{b}");
    let (s, b) = post(&server, &w.approver1.1, &format!("/api/v1/requests/{id2}/approve"), json!({})).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("request_revoked")), "{b}");

    // Emergency access: skips approval, every approver is told.
    let emergency_settings =
        json!({ "approval_levels": [{ "required": 1, "user_ids": [w.approver1.0, w.approver2.0] }] });
    policy(&server, &w, "emergency", &w.accounts[1], emergency_settings, true).await;
    let out = request_one(&server, req_tok, &w.accounts[1], json!({ "emergency": true })).await;
    assert_eq!(out["request"]["state"], "available", "{out}");
    assert_eq!(out["request"]["emergency"], true);

    // Availability: an auto-approved, exclusive account is held by one request at a time.
    policy(&server, &w, "exclusive", &w.accounts[2], json!({ "auto_approve": true }), false).await;
    let first = request_one(&server, req_tok, &w.accounts[2], json!({})).await;
    assert_eq!(first["request"]["state"], "available");
    let second = request_one(&server, req_tok, &w.accounts[2], json!({})).await;
    assert_eq!(second["error"]["code"], "account_in_use", "{second}");
    // Many at once: exactly one wins.
    policy(&server, &w, "race", &w.accounts[3], json!({ "auto_approve": true }), false).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (url, tok, acct, client) = (server.url.clone(), req_tok.clone(), w.accounts[3].clone(), server.client());
        tasks.push(tokio::spawn(async move {
            let body = json!({ "accounts": [{ "account_id": acct, "access_type": "password" }] });
            let r: Value = client
                .post(format!("{url}/api/v1/requests"))
                .bearer_auth(tok)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["outcomes"][0]["request"].is_object()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one concurrent request may hold the account");

    // Bad input: a clear 4xx (or a failed outcome) and no change to requests; refused
    // approvals are themselves audited.
    let store = server.store().await;
    let counts = |c: Vec<(String, i64)>| {
        c.into_iter().filter(|(t, _)| t != "audit_events" && t != "login_sessions").collect::<Vec<_>>()
    };
    let before = counts(store.table_counts().await.unwrap());
    let (s, _) = post(&server, &w.approver1.1, &format!("/api/v1/requests/{id}/approve"), json!({})).await;
    assert_eq!(s, 409, "approving a reviewed request");
    let (s, _) =
        post(&server, &w.approver1.1, &format!("/api/v1/requests/{id2}/deny"), json!({ "comment": "x".repeat(300) }))
            .await;
    assert_eq!(s, 422, "comment too long");
    let (s, _) = post(
        &server,
        &w.approver1.1,
        &format!("/api/v1/requests/{id2}/approve"),
        json!({ "start_at": "2030-01-01T10:00:00Z", "end_at": "2030-01-01T09:00:00Z" }),
    )
    .await;
    assert_eq!(s, 422, "a window that ends before it starts");
    let (s, b) = post(&server, &w.approver1.1, "/api/v1/requests/ghost/approve", json!({})).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    let (s, b) = post(&server, &w.approver1.1, &format!("/api/v1/requests/{id2}/cancel"), json!({})).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")), "only the requester cancels: {b}");
    let (s, b) =
        post(&server, &w.approver1.1, "/api/v1/requests/bulk-decision", json!({ "ids": [], "decision": "approve" }))
            .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("ids")));
    let (s, b) =
        post(&server, &w.approver1.1, "/api/v1/requests/bulk-decision", json!({ "ids": [id2], "decision": "maybe" }))
            .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("decision")));
    let (s, b) = post(&server, req_tok, "/api/v1/requests", json!({ "accounts": [] })).await;
    assert_eq!((s, b["field"].as_str()), (422, Some("accounts")));
    let (s, b) = post(
        &server,
        req_tok,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": w.accounts[2], "access_type": "password" }], "comment": "x".repeat(256) }),
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("comment")));
    let (s, b) = post(
        &server,
        req_tok,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": w.accounts[2], "access_type": "fax" }] }),
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("accounts[0].access_type")));
    let out = request_one(&server, req_tok, &w.accounts[1], json!({ "duration_minutes": 100000 })).await;
    assert_eq!(out["error"]["field"], "duration_minutes", "{out}");
    // A start in the past says so (not "outside the policy's time restrictions").
    let (s, b) = post(
        &server,
        req_tok,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": w.accounts[1], "access_type": "password" }], "start_at": "2001-01-01T00:00:00Z" }),
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("start_at")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("in the past"), "{b}");
    let out = request_one(&server, &outsider, &w.accounts[1], json!({})).await;
    assert_eq!(out["error"]["code"], "no_governing_policy", "not entitled: {out}");
    let out = request_one(&server, req_tok, "ghost", json!({})).await;
    assert_eq!(out["error"]["code"], "not_found");
    assert_eq!(counts(store.table_counts().await.unwrap()), before, "bad input changed requests");

    // Every workflow event went to the outbox with its recipients.
    let outbox = store.outbox(1000).await.unwrap();
    let has = |event: &str, who: &str| outbox.iter().any(|o| o.event == event && o.recipients.iter().any(|r| r == who));
    assert!(has("pending_approval", &w.approver1.0));
    assert!(has("pending_approval", &w.approver2.0), "level 2 is told when level 1 approved");
    assert!(has("approved", &w.requester.0));
    assert!(has("review_due", &w.reviewer.0));
    assert!(has("revoked", &w.requester.0));
    assert!(has("emergency", &w.approver1.0) && has("emergency", &w.approver2.0));
    assert!(store.verify_audit_chain().await.unwrap().broken.is_none());
    store.close().await;
}

#[tokio::test]
async fn request_workflow_sqlite() {
    run(Db::Sqlite).await;
}

#[tokio::test]
async fn request_workflow_postgres() {
    run(Db::postgres()).await;
}

/// Expiry is driven by the scheduler from the database: a request whose end passes while the
/// server is down expires on restart, audited with the time of the restart.
#[tokio::test]
async fn expiry_happens_after_a_restart() {
    let mut server = Server::start(Db::Sqlite);
    let w = world(&server).await;
    policy(
        &server,
        &w,
        "manual",
        &w.accounts[0],
        json!({ "approval_levels": [{ "required": 1, "user_ids": [w.approver1.0] }] }),
        false,
    )
    .await;
    let out = request_one(&server, &w.requester.1, &w.accounts[0], json!({})).await;
    let id = out["request"]["id"].as_str().unwrap().to_owned();
    let now = jiff::Timestamp::now();
    let end = now + jiff::SignedDuration::from_secs(3);
    let (s, b) =
        post(&server, &w.approver1.1, &format!("/api/v1/requests/{id}/approve"), json!({ "end_at": end.to_string() }))
            .await;
    assert_eq!((s, b["state"].as_str()), (200, Some("available")), "{b}");

    server.restart_after(Duration::from_secs(4));
    let restarted = jiff::Timestamp::now();
    let ok = portcullis_testkit::process::wait_until(Duration::from_secs(10), || {
        let out = server.cli(&["--help"], &[]);
        out.status.success()
    });
    assert!(ok);
    let mut state = String::new();
    for _ in 0..50 {
        let (_, r) = server.call("GET", &format!("/api/v1/requests/{id}"), Some(&w.requester.1), None).await;
        state = r["state"].as_str().unwrap().to_owned();
        if state == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "expired");
    let (_, page) = server
        .call("GET", &format!("/api/v1/audit/events?action=request.expire&object_id={id}"), Some(&w.admin), None)
        .await;
    let event = &page["events"][0];
    assert_eq!(event["actor_name"], "system");
    let at: jiff::Timestamp = event["at"].as_str().unwrap().parse().unwrap();
    assert!(
        at >= restarted - jiff::SignedDuration::from_secs(1) && at > end,
        "audited at the real time of the catch-up: {at}"
    );
}

/// Reason codes, favorites, the service switch, resubmission, bulk decisions, availability,
/// and approve racing revoke.
#[tokio::test]
async fn request_extras() {
    let server = Server::start(Db::Sqlite);
    let w = world(&server).await;
    let req_tok = w.requester.1.clone();
    let manual = json!({ "approval_levels": [{ "required": 1, "user_ids": [w.approver1.0, w.approver2.0] }], "reason_required": true });
    policy(&server, &w, "manual", &w.accounts[0], manual, false).await;
    let (s, _) = post(
        &server,
        &w.admin,
        "/api/v1/reason-codes",
        json!({ "name": "incident", "description": "Production incident" }),
    )
    .await;
    assert_eq!(s, 201);
    let (_, codes) = server.call("GET", "/api/v1/reason-codes", Some(&req_tok), None).await;
    assert_eq!(codes[0]["name"], "incident");
    let (s, b) = post(
        &server,
        &req_tok,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": w.accounts[0], "access_type": "password" }], "reason_code": "boredom" }),
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("reason_code")), "{b}");

    // Favorites: save, list, submit; another user cannot see or submit them.
    let saved = json!({ "name": "db root", "colour": "#FF8800", "request": { "accounts": [{ "account_id": w.accounts[0], "access_type": "password" }], "reason_code": "incident", "comment": "from favorite" } });
    let (s, fav) = post(&server, &req_tok, "/api/v1/favorites", saved.clone()).await;
    assert_eq!(s, 201, "{fav}");
    assert_eq!(fav["colour"], "#ff8800");
    let (s, b) = post(
        &server,
        &req_tok,
        "/api/v1/favorites",
        json!({ "name": "bad", "colour": "orange", "request": saved["request"] }),
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("colour")));
    let fav_id = fav["id"].as_str().unwrap();
    let (s, out) = post(&server, &req_tok, &format!("/api/v1/favorites/{fav_id}/submit"), json!({})).await;
    assert_eq!(s, 200);
    let r1 = out["outcomes"][0]["request"].clone();
    assert_eq!(
        (r1["state"].as_str(), r1["comment"].as_str()),
        (Some("pending_approval"), Some("from favorite")),
        "{out}"
    );
    let (s, _) = post(&server, &w.approver1.1, &format!("/api/v1/favorites/{fav_id}/submit"), json!({})).await;
    assert_eq!(s, 404);

    // Bulk deny with one comment, then resubmit a denied one.
    let (_, out2) = post(&server, &req_tok, &format!("/api/v1/favorites/{fav_id}/submit"), json!({})).await;
    let r2 = out2["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    let r1_id = r1["id"].as_str().unwrap().to_owned();
    let (s, bulk) = post(
        &server,
        &w.approver1.1,
        "/api/v1/requests/bulk-decision",
        json!({ "ids": [r1_id, r2, "ghost"], "decision": "deny", "comment": "not now" }),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(bulk[0]["request"]["state"], "denied");
    assert_eq!(bulk[1]["request"]["state"], "denied");
    assert_eq!(bulk[2]["error"]["code"], "not_found");
    let (s, again) = post(&server, &req_tok, &format!("/api/v1/requests/{r1_id}/resubmit"), json!({})).await;
    assert_eq!(s, 200, "{again}");
    let r3 = again["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    assert_ne!(r3, r1_id);
    let (s, b) = post(&server, &req_tok, &format!("/api/v1/requests/{r3}/resubmit"), json!({})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (409, Some("request_pending_approval")),
        "only revoked or denied requests are resubmitted"
    );

    // Approve racing revoke: one wins, the other gets a clear 409, the history is consistent.
    let (approve_path, revoke_path) =
        (format!("/api/v1/requests/{r3}/approve"), format!("/api/v1/requests/{r3}/revoke"));
    let (a, b) = tokio::join!(
        post(&server, &w.approver1.1, &approve_path, json!({})),
        post(&server, &w.approver2.1, &revoke_path, json!({})),
    );
    assert!(a.0 < 500 && b.0 < 500, "{a:?} {b:?}");
    let (_, detail) = server.call("GET", &format!("/api/v1/requests/{r3}"), Some(&req_tok), None).await;
    assert_eq!(detail["state"], "revoked", "revocation wins whichever came first: {detail}");
    let (s, late) = post(&server, &w.approver1.1, &format!("/api/v1/requests/{r3}/approve"), json!({})).await;
    assert_eq!((s, late["code"].as_str()), (409, Some("request_revoked")));

    // "Later", as a local date-time in the requester's zone.
    let (s, _) = server.call("PATCH", "/api/v1/me", Some(&req_tok), Some(json!({ "time_zone": "Asia/Kolkata" }))).await;
    assert_eq!(s, 200);
    let later = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap()).datetime()
        + jiff::SignedDuration::from_hours(48);
    let later = later.round(jiff::Unit::Minute).unwrap();
    let out = request_one(
        &server,
        &req_tok,
        &w.accounts[0],
        json!({ "start_at": later.to_string(), "reason_code": "incident" }),
    )
    .await;
    let expected = later.to_zoned(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap()).unwrap().timestamp();
    let got: jiff::Timestamp = out["request"]["start_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(got, expected, "{out}");

    // Availability.
    policy(&server, &w, "auto", &w.accounts[1], json!({ "auto_approve": true }), false).await;
    let out = request_one(&server, &req_tok, &w.accounts[1], json!({})).await;
    assert_eq!(out["request"]["state"], "available");
    let (_, av) = post(
        &server,
        &req_tok,
        "/api/v1/requests/availability",
        json!({ "account_ids": [w.accounts[1], w.accounts[2]] }),
    )
    .await;
    assert_eq!(av["summary"], "1 of 2 accounts in use");

    // The service switch turns session requests off, with a clear message.
    let (s, _) = post(&server, &w.admin, "/api/v1/policies", json!({ "entitlement_id": w.entitlement, "name": "ssh", "priority": 1, "access_type": "ssh", "scope": { "accounts": [w.accounts[2]] }, "settings": { "auto_approve": true } })).await;
    assert_eq!(s, 201);
    let (s, _) =
        server.call("PUT", "/api/v1/services", Some(&w.admin), Some(json!({ "session_requests": false }))).await;
    assert_eq!(s, 200);
    let (s, r) = post(
        &server,
        &req_tok,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": w.accounts[2], "access_type": "ssh" }] }),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(r["outcomes"][0]["error"]["code"], "service_disabled", "{r}");
    let (s, _) =
        server.call("PUT", "/api/v1/services", Some(&w.admin), Some(json!({ "session_requests": true }))).await;
    assert_eq!(s, 200);
    let (_, r) = post(
        &server,
        &req_tok,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": w.accounts[2], "access_type": "ssh" }] }),
    )
    .await;
    assert_eq!(r["outcomes"][0]["request"]["state"], "available", "{r}");
    // No launch token while session access is switched off.
    let ssh_id = r["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    let (s, _) =
        server.call("PUT", "/api/v1/services", Some(&w.admin), Some(json!({ "session_requests": false }))).await;
    assert_eq!(s, 200);
    let (s, b) = post(&server, &req_tok, &format!("/api/v1/requests/{ssh_id}/launch"), json!({})).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("service_disabled")), "{b}");
    let (s, _) =
        server.call("PUT", "/api/v1/services", Some(&w.admin), Some(json!({ "session_requests": true }))).await;
    assert_eq!(s, 200);
    let (s, b) = post(&server, &req_tok, &format!("/api/v1/requests/{ssh_id}/launch"), json!({})).await;
    assert_eq!(s, 200, "{b}");
}

/// The same workflow from the CLI: a requester and an approver, each with their own saved
/// session.
#[tokio::test]
async fn cli_request_flow() {
    let server = Server::start(Db::Sqlite);
    let w = world(&server).await;
    policy(
        &server,
        &w,
        "manual",
        &w.accounts[0],
        json!({ "approval_levels": [{ "required": 1, "user_ids": [w.approver1.0] }] }),
        false,
    )
    .await;
    let dir = server.dir.path();
    let as_user = |name: &str| dir.join(format!("{name}.json")).display().to_string();
    let (req_cfg, appr_cfg, admin_cfg) = (as_user("requester"), as_user("approver"), as_user("admin"));
    let run = |cfg: &str, args: &[&str]| server.cli(args, &[("PORTCULLIS_CLI_CONFIG", cfg)]);
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    for (cfg, user) in [(&req_cfg, "requester"), (&appr_cfg, "approver1"), (&admin_cfg, "admin")] {
        let pw =
            if user == "admin" { crate::harness::ADMIN_PASSWORD.to_owned() } else { format!("{user} password 1234") };
        let o = server.cli(
            &["login", "--server", &server.url, "--username", user],
            &[("PORTCULLIS_CLI_CONFIG", cfg), ("PORTCULLIS_PASSWORD", &pw)],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let account = format!("{}:password", w.accounts[0]);
    let o = run(&req_cfg, &["request", "create", "--account", &account, "--comment", "via cli"]);
    assert!(
        o.status.success() && text(&o).contains("root@db: request") && text(&o).contains("is Pending 1 approval"),
        "{}",
        text(&o)
    );
    // Part of a request failing is a failure for scripts, with the part that worked made.
    let both = [&account, &format!("{}:password", w.accounts[1])].map(|a| a.to_string());
    let o = run(&req_cfg, &["request", "create", "--account", &both[0], "--account", &both[1]]);
    assert!(!o.status.success() && text(&o).contains("1 of 2 accounts failed"), "{}", text(&o));
    let o = run(&req_cfg, &["request", "list", "-o", "json"]);
    let mine: Value = serde_json::from_slice(&o.stdout).unwrap();
    let newest = mine[0]["id"].as_str().unwrap().to_owned();
    let o = run(&req_cfg, &["request", "cancel", &newest]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&req_cfg, &["request", "create", "--account", &format!("{}:password", w.accounts[1])]);
    assert!(
        !o.status.success() && text(&o).contains("FAILED") && text(&o).contains("no_governing_policy"),
        "{}",
        text(&o)
    );

    let o = run(&appr_cfg, &["approvals", "-o", "json"]);
    let pending: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    // The approver's queue shows names, not ids.
    let o = run(&appr_cfg, &["request", "list", "--queue", "approvals"]);
    assert!(o.status.success() && text(&o).contains(&id) && text(&o).contains("requester"), "{}", text(&o));
    assert!(text(&o).contains("root") && text(&o).contains("db"), "{}", text(&o));
    let o = run(&appr_cfg, &["approvals"]);
    assert!(text(&o).contains("requester") && text(&o).contains("via cli"), "names and the comment: {}", text(&o));
    let o = run(&appr_cfg, &["request", "approve", &id, "--comment", "go ahead"]);
    assert!(o.status.success() && text(&o).contains("available"), "{}", text(&o));
    // … and then what they approved, in use, filtered by ACCOUNT@ASSET and by requester name.
    let o = run(&appr_cfg, &["request", "list", "--queue", "approved", "--requester", "requester", "-o", "json"]);
    let approved: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(ids(&approved), vec![id.clone()], "{}", text(&o));
    let o =
        run(&admin_cfg, &["request", "list", "--all", "--account", "root@db", "--state", "available", "-o", "json"]);
    let all: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(ids(&all), vec![id.clone()], "{}", text(&o));
    let o = run(&admin_cfg, &["request", "list", "--all", "--asset", "db", "--account", "nosuch@db", "-o", "json"]);
    let none: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert!(o.status.success() && ids(&none).is_empty(), "{}", text(&o));
    let o = run(&req_cfg, &["request", "checkin", &id]);
    assert!(o.status.success() && text(&o).contains("complete"), "{}", text(&o));
    let o = run(&req_cfg, &["request", "show", &id]);
    assert!(o.status.success() && text(&o).contains("go ahead") && text(&o).contains("check_in"), "{}", text(&o));
    let o = run(&appr_cfg, &["request", "approve", &id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("request_complete"), "{}", text(&o));
}
