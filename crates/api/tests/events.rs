//! The event seam: request state changes made through the API reach subscribers of
//! `App::events` (what the session proxy will use to end live sessions), in order. The
//! router is driven in-process with `oneshot`; no socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use portcullis_api::auth::token_hash;
use portcullis_api::{App, AppState, AuthSettings, SystemClock};
use portcullis_core::inventory::{AccountKind, Platform};
use portcullis_core::policy::{AccessType, ApprovalLevel, PolicySettings, Scope};
use portcullis_core::request::RequestState;
use portcullis_core::schedule::TimeRestrictions;
use portcullis_store::{Actor, EntitlementSpec, NewAccount, NewAsset, NewUser, PolicySpec, Store, StoreOptions};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(app: &axum::Router, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn revocation_reaches_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::open(&StoreOptions { url, sqlite_synchronous: "normal".into(), max_connections: 2 }, &[1u8; 32])
        .await
        .unwrap();
    let sys = Actor::system();
    let now = jiff::Timestamp::now().as_microsecond();
    let user = |name: &str| NewUser {
        username: name.into(),
        display_name: name.into(),
        email: None,
        password_hash: "x".into(),
        roles: vec![],
        time_zone: "UTC".into(),
        time_zone_locked: false,
    };
    let requester = store.create_user(&sys, now, user("req")).await.unwrap();
    let approver = store.create_user(&sys, now, user("appr")).await.unwrap();
    for (u, token) in [(&requester, "tok-req"), (&approver, "tok-appr")] {
        store.record_login_success(&sys, now, &u.id, None, &token_hash(token), now + 3_600_000_000).await.unwrap();
    }
    let asset = store
        .create_asset(
            &sys,
            now,
            NewAsset {
                name: "h".into(),
                address: "10.0.0.1".into(),
                platform: Platform::Linux,
                description: String::new(),
                protocols: vec![],
                host_key: None,
            },
        )
        .await
        .unwrap();
    let account = store
        .create_account(
            &sys,
            now,
            NewAccount {
                asset_id: asset.id.clone(),
                name: "root".into(),
                kind: AccountKind::Local,
                description: String::new(),
            },
        )
        .await
        .unwrap();
    let ent = store
        .put_entitlement(
            &sys,
            now,
            None,
            EntitlementSpec {
                name: "e".into(),
                description: String::new(),
                priority: 1,
                windows: TimeRestrictions::always(),
                expires_at: None,
                user_ids: vec![requester.id.clone()],
                group_ids: vec![],
            },
        )
        .await
        .unwrap();
    let settings = PolicySettings {
        approval_levels: vec![ApprovalLevel { required: 1, user_ids: vec![approver.id.clone()], group_ids: vec![] }],
        ..Default::default()
    };
    store
        .put_policy(
            &sys,
            now,
            None,
            PolicySpec {
                entitlement_id: ent.id,
                name: "p".into(),
                description: String::new(),
                priority: 1,
                access_type: AccessType::Ssh,
                scope: Scope { accounts: vec![account.id.clone()], ..Default::default() },
                windows: TimeRestrictions::always(),
                emergency_allowed: false,
                expires_at: None,
                settings,
            },
        )
        .await
        .unwrap();

    let vault = portcullis_vault::KeyRing::new(portcullis_vault::Kek::generate(), vec![]);
    let state = AppState::new(App::new(store, Arc::new(SystemClock), AuthSettings::standard(), vault));
    let mut events = state.events.subscribe();
    let app = portcullis_api::router(state);
    let (s, r) = call(
        &app,
        "tok-req",
        "POST",
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": account.id, "access_type": "ssh" }] }),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let id = r["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    let (s, _) = call(&app, "tok-appr", "POST", &format!("/api/v1/requests/{id}/approve"), json!({})).await;
    assert_eq!(s, 200);
    let (s, _) =
        call(&app, "tok-appr", "POST", &format!("/api/v1/requests/{id}/revoke"), json!({ "comment": "incident over" }))
            .await;
    assert_eq!(s, 200);

    let first = events.try_recv().expect("approval event");
    assert_eq!(
        (first.request_id.as_str(), first.from, first.to),
        (id.as_str(), RequestState::PendingApproval, RequestState::Available)
    );
    let second = events.try_recv().expect("revocation event");
    assert_eq!((second.from, second.to), (RequestState::Available, RequestState::Revoked));
    assert!(events.try_recv().is_err(), "nothing else happened");
}
