//! Server time to render the web UI's busiest pages (My Requests, Approvals, the audit page)
//! with 10,000 requests and 100,000 audit events stored (SQLite, the default store): the web
//! router called in process with a signed-in session's cookie, so the time is the server's
//! (session check, use cases, store queries, template), not the network's or the browser's.
//!
//! The pages show 100 requests (My Requests 200), newest first, with links to older pages.
//!
//! Goal: p95 < 50 ms for each page.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request};
use portcullis_app::auth::token_hash;
use portcullis_app::requests::Decision;
use portcullis_core::role::Role;
use portcullis_store::{Actor, NewEvent, NewUser};
use tower::ServiceExt;

use crate::workflow::{create, fixture};
use crate::{percentile, Metric};

fn now() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// A login session for `user_id`, as the sign-in use case would open it; returns the cookie.
async fn session(store: &portcullis_store::Store, user_id: &str, name: &str) -> String {
    let token = format!("pcs_bench_{name}_{}", uuid_ish());
    store
        .record_login_success(&Actor::system(), now(), user_id, None, &token_hash(&token), now() + 3_600_000_000)
        .await
        .expect("session");
    format!("portcullis_session={token}")
}

fn uuid_ish() -> u64 {
    rand::random()
}

async fn render(router: &axum::Router, path: &str, cookie: &str) -> (Duration, usize) {
    let req = Request::get(path).header(header::COOKIE, cookie).body(Body::empty()).expect("request");
    let started = Instant::now();
    let answer = router.clone().oneshot(req).await.expect("answer");
    let status = answer.status();
    let body = axum::body::to_bytes(answer.into_body(), 64 * 1024 * 1024).await.expect("body");
    let took = started.elapsed();
    assert!(status.is_success(), "{path} answered {status}: {}", String::from_utf8_lossy(&body));
    (took, body.len())
}

pub async fn run(quick: bool) -> Vec<Metric> {
    let (requests, events, renders) = if quick { (100, 1_000, 10) } else { (10_000, 100_000, 200) };
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("web.db").display());
    let f = fixture(&url).await;
    let store = f.app.store.clone();
    eprintln!("web: storing {requests} requests (half approved) and {events} audit events");
    for i in 0..requests {
        let id = create(&f, i).await;
        if i % 2 == 0 {
            portcullis_app::requests::decide(
                &f.app,
                &f.approver,
                &id,
                Decision { approve: true, ..Default::default() },
            )
            .await
            .expect("approve");
        }
    }
    let actor = Actor { id: f.requester.user.id.clone(), name: "requester".into(), source: "192.0.2.1".into() };
    let mut have = store.verify_audit_chain().await.map(|r| r.head_seq as usize).expect("audit chain");
    while have < events {
        store
            .record(&actor, now(), NewEvent::success("bench.filler", "request", format!("r{have}")))
            .await
            .expect("event");
        have += 1;
    }
    let auditor = store
        .create_user(
            &Actor::system(),
            now(),
            NewUser {
                username: "auditor".into(),
                display_name: "Auditor".into(),
                email: None,
                password_hash: "$argon2id$bench".into(),
                roles: vec![Role::Auditor],
                time_zone: "Europe/Berlin".into(),
                time_zone_locked: false,
            },
        )
        .await
        .expect("auditor");
    let api = portcullis_api::router(portcullis_api::AppState::new(f.app.clone()));
    let router = portcullis_web::router(f.app.clone(), false, api);
    let pages = [
        ("My Requests (all the requester's)", "/requests", session(&store, &f.requester.user.id, "r").await),
        ("Approvals (the approver's inbox)", "/approvals", session(&store, &f.approver.user.id, "a").await),
        ("Audit (newest events)", "/audit", session(&store, &auditor.id, "u").await),
    ];
    let mut out = Vec::new();
    for (label, path, cookie) in &pages {
        render(&router, path, cookie).await; // warm
        let mut times = Vec::with_capacity(renders);
        let mut size = 0;
        for _ in 0..renders {
            let (t, n) = render(&router, path, cookie).await;
            times.push(t);
            size = n;
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        out.push(Metric {
            name: format!("web render p95: {label}"),
            value: ms(percentile(&times, 95.0)),
            unit: "ms",
            spread: (ms(times[0]), ms(times[times.len() - 1])),
            goal: "< 50 ms".into(),
            note: format!(
                "{requests} requests, {have} audit events stored; page {} KiB; median {:.1} ms",
                size / 1024,
                ms(percentile(&times, 50.0))
            ),
        });
    }
    store.close().await;
    out
}
