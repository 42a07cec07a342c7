//! The use cases driven directly, with no front end, on SQLite and on PostgreSQL: what an HTTP
//! handler, the SSH proxy or the web UI will all call.

use std::sync::Arc;

use portcullis_app::auth::Caller;
use portcullis_app::requests::{self, AccountChoice, Decision, NewRequests, Queue, QueueFilter};
use portcullis_app::{App, AuthSettings, ErrorKind, SystemClock};
use portcullis_core::inventory::{AccountKind, Platform};
use portcullis_core::policy::{AccessType, ApprovalLevel, PolicySettings, Scope};
use portcullis_core::request::{Action, RequestState};
use portcullis_core::schedule::TimeRestrictions;
use portcullis_store::{
    Actor, EntitlementSpec, GroupKind, NewAccount, NewAsset, NewUser, PolicySpec, Store, StoreOptions, User, UserPatch,
};

struct World {
    store: Store,
    requester: User,
    approver: User,
    account_id: String,
    entitlement_id: String,
}

fn now() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

fn caller(user: &User) -> Caller {
    Caller { user: user.clone(), token_hash: String::new(), api_token_id: None, source: "test".into() }
}

fn app(store: &Store) -> App {
    let vault = portcullis_vault::KeyRing::new(portcullis_vault::Kek::generate(), vec![]);
    App::new(store.clone(), Arc::new(SystemClock), AuthSettings::standard(), vault)
}

async fn world(url: String) -> World {
    let store = Store::open(&StoreOptions { url, sqlite_synchronous: "normal".into(), max_connections: 4 }, &[7u8; 32])
        .await
        .unwrap();
    let sys = Actor::system();
    let user = |name: &str| NewUser {
        username: name.into(),
        display_name: name.into(),
        email: None,
        password_hash: "x".into(),
        roles: vec![],
        time_zone: "UTC".into(),
        time_zone_locked: false,
    };
    let requester = store.create_user(&sys, now(), user("req")).await.unwrap();
    let approver = store.create_user(&sys, now(), user("appr")).await.unwrap();
    let asset = store
        .create_asset(
            &sys,
            now(),
            NewAsset {
                name: "db1".into(),
                address: "192.0.2.1".into(),
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
            now(),
            NewAccount {
                asset_id: asset.id.clone(),
                name: "root".into(),
                kind: AccountKind::Local,
                description: String::new(),
            },
        )
        .await
        .unwrap();
    // The entitlement names a group, not the user: membership decides.
    let group = store.create_group(&sys, now(), GroupKind::User, "dbas", "").await.unwrap();
    let ent = store
        .put_entitlement(
            &sys,
            now(),
            None,
            EntitlementSpec {
                name: "e".into(),
                description: String::new(),
                priority: 1,
                windows: TimeRestrictions::always(),
                expires_at: None,
                user_ids: vec![],
                group_ids: vec![group.id.clone()],
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
            now(),
            None,
            PolicySpec {
                entitlement_id: ent.id.clone(),
                name: "p".into(),
                description: String::new(),
                priority: 1,
                access_type: AccessType::Password,
                scope: Scope { accounts: vec![account.id.clone()], ..Default::default() },
                windows: TimeRestrictions::always(),
                emergency_allowed: false,
                expires_at: None,
                settings,
            },
        )
        .await
        .unwrap();
    store.set_group_member(&sys, now(), GroupKind::User, &group.id, &requester.id, true).await.unwrap();
    World { store, requester, approver, account_id: account.id, entitlement_id: ent.id }
}

fn ask(account_id: &str) -> NewRequests {
    NewRequests {
        accounts: vec![AccountChoice { account_id: account_id.into(), access_type: "password".into() }],
        ..Default::default()
    }
}

/// Two nodes (two `App`s on one database): a change made through one, or straight in the
/// store, is seen by the other's cached rules at its next use.
async fn rules_follow_changes_on_every_node(w: World) {
    let (node_a, node_b) = (app(&w.store), app(&w.store));
    let me = caller(&w.requester);
    let first = requests::create(&node_a, &me, ask(&w.account_id)).await.unwrap();
    let view = first.outcomes[0].result.as_ref().unwrap();
    assert_eq!(view.request.state, RequestState::PendingApproval);
    assert_eq!(view.status_text(), "Pending 1 approval");
    // Node B builds its rules now; then the requester leaves the group (a store write that no
    // use case made).
    let warmed = node_b.policies.get(&node_b.store).await.unwrap();
    assert!(warmed.policy(&view.request.policy_id).is_some());
    let group = w.store.groups_of_user(&w.requester.id).await.unwrap().remove(0);
    w.store.set_group_member(&Actor::system(), now(), GroupKind::User, &group, &w.requester.id, false).await.unwrap();
    for node in [&node_a, &node_b] {
        let again = requests::create(node, &me, ask(&w.account_id)).await.unwrap();
        let e = again.outcomes[0].result.as_ref().unwrap_err();
        assert_eq!(e.code, "no_governing_policy", "{}", e.message);
        assert_eq!(e.kind, ErrorKind::Forbidden);
    }
    // A time-zone change moves the generation too.
    let before = w.store.policy_generation().await.unwrap();
    let patch = UserPatch { time_zone: Some("Europe/Paris".into()), ..Default::default() };
    w.store.update_user(&Actor::system(), now(), &w.requester.id, patch).await.unwrap();
    assert!(w.store.policy_generation().await.unwrap() > before);
    // Deleting the entitlement removes its policy for everyone.
    w.store.delete_entitlement(&Actor::system(), now(), &w.entitlement_id).await.unwrap();
    let e =
        portcullis_app::policies::explain(&node_b, &w.requester.id, &w.account_id, AccessType::Password, None, false)
            .await
            .unwrap();
    assert!(e.candidates.is_empty() && e.governing_policy_id.is_none());
}

/// Create, approve, revoke through the use cases: the approver's queue, the rules on who may
/// act, the events a proxy would end sessions on.
async fn workflow_through_use_cases(w: World) {
    let node = app(&w.store);
    let generation = w.store.policy_generation().await.unwrap();
    let mut events = node.events.subscribe();
    let (me, approver) = (caller(&w.requester), caller(&w.approver));
    let batch = requests::create(&node, &me, ask(&w.account_id)).await.unwrap();
    let id = batch.outcomes[0].result.as_ref().unwrap().request.id.clone();
    // Nobody approves their own request, and the requester cannot revoke.
    let own = requests::decide(&node, &me, &id, Decision { approve: true, ..Default::default() }).await.unwrap_err();
    assert_eq!(own.kind, ErrorKind::Forbidden, "{own:?}");
    let queue = requests::waiting_for_approval(&node, &approver).await.unwrap();
    assert_eq!(queue.iter().map(|v| v.request.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    assert!(requests::waiting_for_approval(&node, &me).await.unwrap().is_empty());
    let approved =
        requests::decide(&node, &approver, &id, Decision { approve: true, ..Default::default() }).await.unwrap();
    assert_eq!(approved.request.state, RequestState::Available);
    let t = events.recv().await.unwrap();
    assert_eq!((t.request_id.as_str(), t.to), (id.as_str(), RequestState::Available));
    let refused = requests::act(&node, &me, &id, Action::Revoke, None).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Forbidden);
    let revoked = requests::act(&node, &approver, &id, Action::Revoke, Some("done")).await.unwrap();
    assert_eq!(revoked.request.state, RequestState::Revoked);
    assert_eq!(events.recv().await.unwrap().to, RequestState::Revoked);
    // The workflow's own writes (requests, approvals, row locks) never invalidate the rules.
    assert_eq!(w.store.policy_generation().await.unwrap(), generation);
    // Someone unrelated sees nothing: not found, not forbidden.
    let stranger = w
        .store
        .create_user(
            &Actor::system(),
            now(),
            NewUser {
                username: "stranger".into(),
                display_name: "s".into(),
                email: None,
                password_hash: "x".into(),
                roles: vec![],
                time_zone: "UTC".into(),
                time_zone_locked: false,
            },
        )
        .await
        .unwrap();
    let hidden = requests::show(&node, &caller(&stranger), &id).await.err().unwrap();
    assert_eq!(hidden.kind, ErrorKind::NotFound);
    let page = || QueueFilter { limit: 10, ..Default::default() };
    let mine = requests::queue(&node, &me, Queue::Mine, page()).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert!(requests::queue(&node, &me, Queue::All, page()).await.is_err());
}

/// Many writers at once (grouped into shared commits on SQLite): every success is stored,
/// every failure (an unknown account, a refused self-approval) leaves nothing but its audit
/// event, and the audit chain stays one unbroken line.
async fn concurrent_writers_share_commits_safely(w: World) {
    let node = app(&w.store);
    let me = caller(&w.requester);
    let before = w.store.requests(None, None, 1000).await.unwrap().len();
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let (node, me) = (node.clone(), me.clone());
            let account = if i % 3 == 0 { "no-such-account".to_owned() } else { w.account_id.clone() };
            tokio::spawn(async move {
                let batch = requests::create(&node, &me, ask(&account)).await.unwrap();
                let id = batch.outcomes.into_iter().next().unwrap().result.ok().map(|v| v.request.id);
                // The requester approving their own request: refused, audited.
                if let Some(id) = &id {
                    let own = Decision { approve: true, ..Default::default() };
                    assert_eq!(requests::decide(&node, &me, id, own).await.unwrap_err().kind, ErrorKind::Forbidden);
                }
                id
            })
        })
        .collect();
    let mut created = Vec::new();
    for t in tasks {
        created.extend(t.await.unwrap());
    }
    assert_eq!(created.len(), 32);
    let stored = w.store.requests(None, None, 1000).await.unwrap();
    assert_eq!(stored.len(), before + 32);
    for id in &created {
        assert!(stored.iter().any(|r| &r.id == id), "request {id} was answered but not stored");
    }
    let report = w.store.verify_audit_chain().await.unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
    let refused = w
        .store
        .audit_events(&portcullis_store::AuditQuery {
            action: Some("request.approve".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(refused.iter().filter(|e| e.outcome == "denied").count(), 32);
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display())
}

#[tokio::test]
async fn sqlite_rules_follow_changes_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    rules_follow_changes_on_every_node(world(sqlite_url(&dir)).await).await;
}

#[tokio::test]
async fn sqlite_workflow_through_use_cases() {
    let dir = tempfile::tempdir().unwrap();
    workflow_through_use_cases(world(sqlite_url(&dir)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_writers_share_commits_safely() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_writers_share_commits_safely(world(sqlite_url(&dir)).await).await;
}

#[tokio::test]
async fn postgres_use_cases() {
    let pg = portcullis_testkit::pg::PgCluster::start();
    rules_follow_changes_on_every_node(world(pg.create_database("cache")).await).await;
    workflow_through_use_cases(world(pg.create_database("flow")).await).await;
    concurrent_writers_share_commits_safely(world(pg.create_database("concurrent")).await).await;
}
