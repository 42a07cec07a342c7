//! Request create + approve through the store (the database work of the two API calls:
//! transactions, history, outbox, audit chain), on SQLite (synchronous = FULL) and on
//! PostgreSQL. Goal ≥ 1,000 pairs/s with p99 < 20 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::inventory::{AccountKind, Platform, Protocol};
use portcullis_core::policy::{AccessType, ApprovalLevel, PolicySettings, Scope};
use portcullis_core::schedule::TimeRestrictions;
use portcullis_store::{
    Actor, ApprovalContext, EntitlementSpec, NewAccount, NewAsset, NewRequest, NewUser, PolicySpec, ProtocolPort,
    Store, StoreOptions,
};
use portcullis_testkit::pg::PgCluster;

use crate::{percentile, summarize, Metric};

fn now() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

struct Fixture {
    store: Store,
    requester: Actor,
    approver: Actor,
    policy_id: String,
    accounts: Vec<(String, String)>,
    ctx: Arc<ApprovalContext>,
}

async fn fixture(url: &str, sync: &str) -> Fixture {
    let store =
        Store::open(&StoreOptions { url: url.into(), sqlite_synchronous: sync.into(), max_connections: 8 }, &[7u8; 32])
            .await
            .expect("open store");
    let admin = Actor::system();
    let user = |name: &str| NewUser {
        username: name.into(),
        display_name: name.into(),
        email: None,
        password_hash: "$argon2id$bench".into(),
        roles: vec![],
        time_zone: "UTC".into(),
        time_zone_locked: false,
    };
    let requester = store.create_user(&admin, now(), user("requester")).await.expect("user");
    let approver = store.create_user(&admin, now(), user("approver")).await.expect("user");
    let asset = store
        .create_asset(
            &admin,
            now(),
            NewAsset {
                name: "db".into(),
                address: "10.0.0.1".into(),
                platform: Platform::Linux,
                description: String::new(),
                protocols: vec![ProtocolPort { protocol: Protocol::Ssh, port: 22 }],
                host_key: None,
            },
        )
        .await
        .expect("asset");
    let mut accounts = Vec::new();
    for i in 0..50 {
        let a = store
            .create_account(
                &admin,
                now(),
                NewAccount {
                    asset_id: asset.id.clone(),
                    name: format!("acct{i}"),
                    kind: AccountKind::Local,
                    description: String::new(),
                },
            )
            .await
            .expect("account");
        accounts.push((a.id, a.asset_id));
    }
    let ent = store
        .put_entitlement(
            &admin,
            now(),
            None,
            EntitlementSpec {
                name: "bench".into(),
                description: String::new(),
                priority: 1,
                windows: TimeRestrictions::always(),
                expires_at: None,
                user_ids: vec![requester.id.clone()],
                group_ids: vec![],
            },
        )
        .await
        .expect("entitlement");
    let settings = PolicySettings {
        approval_levels: vec![ApprovalLevel { required: 1, user_ids: vec![approver.id.clone()], group_ids: vec![] }],
        simultaneous_access: true,
        ..Default::default()
    };
    let policy = store
        .put_policy(
            &admin,
            now(),
            None,
            PolicySpec {
                entitlement_id: ent.id,
                name: "bench".into(),
                description: String::new(),
                priority: 1,
                access_type: AccessType::Password,
                scope: Scope { assets: vec![asset.id], ..Default::default() },
                windows: TimeRestrictions::always(),
                emergency_allowed: false,
                expires_at: None,
                settings,
            },
        )
        .await
        .expect("policy");
    let actor =
        |u: &portcullis_store::User| Actor { id: u.id.clone(), name: u.username.clone(), source: "127.0.0.1".into() };
    Fixture {
        ctx: Arc::new(ApprovalContext {
            required_per_level: vec![1],
            approvers_per_level: vec![vec![approver.id.clone()]],
        }),
        requester: actor(&requester),
        approver: actor(&approver),
        policy_id: policy.id,
        accounts,
        store,
    }
}

/// One create + approve; returns its latency.
async fn pair(f: &Fixture, i: usize) -> Duration {
    let started = Instant::now();
    let (account_id, asset_id) = f.accounts[i % f.accounts.len()].clone();
    let t = now();
    let req = f
        .store
        .create_request(
            &f.requester,
            t,
            NewRequest {
                batch_id: format!("b{i}"),
                requester_id: f.requester.id.clone(),
                account_id,
                asset_id,
                access_type: AccessType::Password,
                policy_id: f.policy_id.clone(),
                emergency: false,
                start_at: t,
                end_at: t + 3_600_000_000,
                ticket: None,
                reason_code: None,
                comment: None,
                review_required: false,
                approved_at_once: false,
                simultaneous_access: true,
                notify: vec![f.approver.id.clone()],
            },
        )
        .await
        .expect("create");
    let me = f.approver.id.clone();
    let eligible = move |l: usize| l == 0 && !me.is_empty();
    f.store
        .decide_request(&f.approver, now(), &req.id, true, &f.ctx, &eligible, None, None, true)
        .await
        .expect("approve");
    started.elapsed()
}

async fn measure(label: &str, url: &str, sync: &str, quick: bool) -> Vec<Metric> {
    let f = Arc::new(fixture(url, sync).await);
    let n = if quick { 20 } else { 2_000 };
    for i in 0..(n / 10).max(5) {
        pair(&f, i).await; // warm-up
    }
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        latencies.push(pair(&f, i).await);
    }
    let sequential_rate = n as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;

    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let per_task = n / 8;
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let f = f.clone();
                tokio::spawn(async move {
                    for i in 0..per_task {
                        pair(&f, t * per_task + i).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        rates.push((per_task * 8) as f64 / started.elapsed().as_secs_f64());
    }
    let (rate, spread) = summarize(rates);
    f.store.close().await;
    vec![
        Metric {
            name: format!("create+approve, {label}, 1 client"),
            value: sequential_rate,
            unit: "pairs/s",
            spread: (sequential_rate, sequential_rate),
            goal: "≥ 1,000/s".into(),
            note: String::new(),
        },
        Metric {
            name: format!("create+approve, {label}, 1 client: p50"),
            value: ms(percentile(&latencies, 50.0)),
            unit: "ms",
            spread: (ms(latencies[0]), ms(latencies[latencies.len() - 1])),
            goal: String::new(),
            note: String::new(),
        },
        Metric {
            name: format!("create+approve, {label}, 1 client: p99"),
            value: ms(percentile(&latencies, 99.0)),
            unit: "ms",
            spread: (ms(latencies[0]), ms(latencies[latencies.len() - 1])),
            goal: "< 20 ms".into(),
            note: String::new(),
        },
        Metric {
            name: format!("create+approve, {label}, 8 clients"),
            value: rate,
            unit: "pairs/s",
            spread,
            goal: "≥ 1,000/s".into(),
            note: String::new(),
        },
    ]
}

pub async fn run(quick: bool) -> Vec<Metric> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    let mut out = measure("SQLite (synchronous=full)", &url, "full", quick).await;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench-normal.db").display());
    out.extend(measure("SQLite (synchronous=normal)", &url, "normal", quick).await);
    let pg = PgCluster::start_durable();
    let url = pg.create_database("bench");
    out.extend(measure("PostgreSQL", &url, "full", quick).await);
    out
}
