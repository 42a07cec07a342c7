//! The request workflow through the application layer's use cases (what every front end
//! calls: validation, the policy snapshot, resolution, the store's transactions, history,
//! outbox and audit chain), on a store holding 10,000 policies and 1,000 entitlements:
//! create + approve pairs on SQLite (synchronous = FULL) and PostgreSQL, request creation time
//! with 100 against 10,000 stored policies, and explain answers.
//!
//! Goals: ≥ 1,000 pairs/s (SQLite 1 and 8 clients, PostgreSQL 8 clients) with p99 < 20 ms;
//! creation time within 10 % between 100 and 10,000 policies; ≥ 20,000 explain answers/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_app::auth::Caller;
use portcullis_app::requests::{AccountChoice, Decision, NewRequests};
use portcullis_app::{App, AuthSettings, SystemClock};
use portcullis_core::inventory::{AccountKind, Platform, Protocol};
use portcullis_core::policy::{AccessType, ApprovalLevel, PolicySettings, Scope};
use portcullis_core::schedule::TimeRestrictions;
use portcullis_store::{
    Actor, EntitlementSpec, GroupKind, NewAccount, NewAsset, NewUser, PolicySpec, ProtocolPort, Store, StoreOptions,
    User,
};
use portcullis_testkit::pg::PgCluster;
use rand::{Rng, SeedableRng};

use crate::{percentile, summarize, Metric};

fn now() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

pub(crate) struct Fixture {
    pub(crate) app: App,
    pub(crate) requester: Caller,
    pub(crate) approver: Caller,
    /// The bench requester's accounts (their policy needs one approval).
    accounts: Vec<String>,
    /// Accounts the filler policies cover (5 assets × 100).
    others: Vec<String>,
    filler_users: Vec<User>,
    groups: Vec<String>,
    seeded: (usize, usize),
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        display_name: name.into(),
        email: None,
        password_hash: "$argon2id$bench".into(),
        roles: vec![],
        time_zone: "Europe/Berlin".into(),
        time_zone_locked: false,
    }
}

fn caller(u: User) -> Caller {
    Caller { user: u, token_hash: String::new(), api_token_id: None, source: "127.0.0.1".into() }
}

async fn open(url: &str, sync: &str) -> Store {
    Store::open(&StoreOptions { url: url.into(), sqlite_synchronous: sync.into(), max_connections: 8 }, &[7u8; 32])
        .await
        .expect("open store")
}

async fn asset_with_accounts(store: &Store, name: &str, n: usize) -> Vec<String> {
    let admin = Actor::system();
    let asset = store
        .create_asset(
            &admin,
            now(),
            NewAsset {
                name: name.into(),
                address: "192.0.2.10".into(),
                platform: Platform::Linux,
                description: String::new(),
                protocols: vec![ProtocolPort { protocol: Protocol::Ssh, port: 22 }],
                host_key: None,
            },
        )
        .await
        .expect("asset");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let new = NewAccount {
            asset_id: asset.id.clone(),
            name: format!("acct{i}"),
            kind: AccountKind::Local,
            description: String::new(),
        };
        out.push(store.create_account(&admin, now(), new).await.expect("account").id);
    }
    out
}

/// The bench's own users, accounts, entitlement and policy; filler comes from `seed`.
pub(crate) async fn fixture(url: &str) -> Fixture {
    let store = open(url, "normal").await;
    let admin = Actor::system();
    let requester = store.create_user(&admin, now(), new_user("requester")).await.expect("user");
    let approver = store.create_user(&admin, now(), new_user("approver")).await.expect("user");
    let mut filler_users = Vec::new();
    for i in 0..100 {
        filler_users.push(store.create_user(&admin, now(), new_user(&format!("filler{i}"))).await.expect("user"));
    }
    let mut groups = Vec::new();
    for i in 0..20 {
        let g = store.create_group(&admin, now(), GroupKind::User, &format!("team{i}"), "").await.expect("group");
        for u in filler_users.iter().skip(i).step_by(20) {
            store.set_group_member(&admin, now(), GroupKind::User, &g.id, &u.id, true).await.expect("member");
        }
        groups.push(g.id);
    }
    // The requester is in two teams, like the filler users.
    for g in &groups[..2] {
        store.set_group_member(&admin, now(), GroupKind::User, g, &requester.id, true).await.expect("member");
    }
    let accounts = asset_with_accounts(&store, "db", 50).await;
    let mut others = Vec::new();
    for a in 0..5 {
        others.extend(asset_with_accounts(&store, &format!("srv{a}"), 100).await);
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
    let spec = PolicySpec {
        entitlement_id: ent.id,
        name: "bench".into(),
        description: String::new(),
        priority: 1,
        access_type: AccessType::Password,
        scope: Scope { accounts: accounts.clone(), ..Default::default() },
        windows: TimeRestrictions::always(),
        emergency_allowed: false,
        expires_at: None,
        settings,
    };
    store.put_policy(&admin, now(), None, spec).await.expect("policy");
    let vault = portcullis_vault::KeyRing::new(portcullis_vault::Kek::generate(), vec![]);
    let app = App::new(store, Arc::new(SystemClock), AuthSettings::standard(), vault);
    Fixture {
        app,
        requester: caller(requester),
        approver: caller(approver),
        accounts,
        others,
        filler_users,
        groups,
        seeded: (1, 1),
    }
}

/// Adds filler entitlements (20 users and 2 groups each) and policies (3 accounts each, some
/// on the bench requester's accounts, which then compete in resolution) until the store
/// holds `entitlements` and `policies`.
async fn seed(f: &mut Fixture, entitlements: usize, policies: usize) {
    let store = f.app.store.clone();
    let admin = Actor::system();
    let mut rng = rand::rngs::StdRng::seed_from_u64(f.seeded.1 as u64);
    let mut ent_ids = Vec::new();
    while f.seeded.0 < entitlements {
        let spec = EntitlementSpec {
            name: format!("team-{}", f.seeded.0),
            description: String::new(),
            priority: rng.gen_range(1..20),
            windows: TimeRestrictions::always(),
            expires_at: None,
            user_ids: (0..20).map(|_| f.filler_users[rng.gen_range(0..f.filler_users.len())].id.clone()).collect(),
            group_ids: (0..2).map(|_| f.groups[rng.gen_range(2..f.groups.len())].clone()).collect(),
        };
        ent_ids.push(store.put_entitlement(&admin, now(), None, spec).await.expect("entitlement").id);
        f.seeded.0 += 1;
    }
    let approver = f.approver.user.id.clone();
    while f.seeded.1 < policies {
        let pick = |rng: &mut rand::rngs::StdRng| {
            if rng.gen_bool(0.05) {
                f.accounts[rng.gen_range(0..f.accounts.len())].clone()
            } else {
                f.others[rng.gen_range(0..f.others.len())].clone()
            }
        };
        let mut scope: Vec<String> = (0..3).map(|_| pick(&mut rng)).collect();
        scope.sort();
        scope.dedup();
        let spec = PolicySpec {
            entitlement_id: ent_ids[rng.gen_range(0..ent_ids.len().max(1))].clone(),
            name: format!("filler-{}", f.seeded.1),
            description: String::new(),
            priority: rng.gen_range(1..10),
            access_type: AccessType::ALL[rng.gen_range(0..5)],
            scope: Scope { accounts: scope, ..Default::default() },
            windows: TimeRestrictions::always(),
            emergency_allowed: rng.gen_bool(0.2),
            expires_at: None,
            settings: PolicySettings {
                approval_levels: vec![ApprovalLevel {
                    required: 1,
                    user_ids: vec![approver.clone()],
                    group_ids: vec![],
                }],
                ..Default::default()
            },
        };
        store.put_policy(&admin, now(), None, spec).await.expect("policy");
        f.seeded.1 += 1;
    }
}

fn ask(account_id: &str) -> NewRequests {
    NewRequests {
        accounts: vec![AccountChoice { account_id: account_id.into(), access_type: "password".into() }],
        ..Default::default()
    }
}

/// One create through the use case; returns the request id.
pub(crate) async fn create(f: &Fixture, i: usize) -> String {
    let batch = portcullis_app::requests::create(&f.app, &f.requester, ask(&f.accounts[i % f.accounts.len()]))
        .await
        .expect("create");
    let outcome = batch.outcomes.into_iter().next().expect("one outcome");
    outcome.result.unwrap_or_else(|e| panic!("create refused: {} {}", e.code, e.message)).request.id
}

/// One create + approve; returns its latency.
pub(crate) async fn pair(f: &Fixture, i: usize) -> Duration {
    let started = Instant::now();
    let id = create(f, i).await;
    portcullis_app::requests::decide(&f.app, &f.approver, &id, Decision { approve: true, ..Default::default() })
        .await
        .expect("approve");
    started.elapsed()
}

fn metric(name: String, value: f64, unit: &'static str, spread: (f64, f64), goal: &str) -> Metric {
    Metric { name, value, unit, spread, goal: goal.into(), note: String::new() }
}

/// Pairs per second from 8 clients making `n` pairs between them.
pub(crate) async fn eight_clients(f: &Arc<Fixture>, n: usize) -> f64 {
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
    (per_task * 8) as f64 / started.elapsed().as_secs_f64()
}

/// Pairs from one client (with latencies) and from eight.
async fn pairs(f: &Arc<Fixture>, label: &str, quick: bool, out: &mut Vec<Metric>) {
    let n = if quick { 40 } else { 2_000 };
    for i in 0..(n / 10).max(5) {
        pair(f, i).await; // warm-up
    }
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        latencies.push(pair(f, i).await);
    }
    let sequential = n as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut rates = Vec::new();
    for _ in 0..3 {
        rates.push(eight_clients(f, n).await);
    }
    let (rate, spread) = summarize(rates);
    let range = (ms(latencies[0]), ms(latencies[latencies.len() - 1]));
    out.push(metric(
        format!("create+approve, {label}, 1 client"),
        sequential,
        "pairs/s",
        (sequential, sequential),
        "≥ 1,000/s",
    ));
    out.push(metric(
        format!("create+approve, {label}, 1 client: p50"),
        ms(percentile(&latencies, 50.0)),
        "ms",
        range,
        "",
    ));
    out.push(metric(
        format!("create+approve, {label}, 1 client: p99"),
        ms(percentile(&latencies, 99.0)),
        "ms",
        range,
        "< 20 ms",
    ));
    out.push(metric(format!("create+approve, {label}, 8 clients"), rate, "pairs/s", spread, "≥ 1,000/s"));
}

/// The mean time of one request creation, in µs (5 rounds; median).
async fn creation_time(f: &Fixture, quick: bool) -> (f64, (f64, f64)) {
    let n = if quick { 20 } else { 300 };
    for i in 0..20 {
        create(f, i).await;
    }
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for i in 0..n {
            create(f, i).await;
        }
        rounds.push(started.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    summarize(rounds)
}

/// Explain answers per second through the use case, from 8 concurrent callers.
async fn explain_rate(f: &Arc<Fixture>, quick: bool) -> (f64, (f64, f64)) {
    let per_task = if quick { 200 } else { 5_000 };
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let f = f.clone();
                tokio::spawn(async move {
                    let mut governed = 0usize;
                    for i in 0..per_task {
                        let (user, account) = if i % 2 == 0 {
                            (&f.requester.user.id, &f.accounts[(t + i) % f.accounts.len()])
                        } else {
                            (
                                &f.filler_users[(t * 7 + i) % f.filler_users.len()].id,
                                &f.others[(t + i) % f.others.len()],
                            )
                        };
                        let access = AccessType::ALL[i % 5];
                        let e = portcullis_app::policies::explain(&f.app, user, account, access, None, false)
                            .await
                            .expect("explain");
                        governed += usize::from(e.governing_policy_id.is_some());
                    }
                    governed
                })
            })
            .collect();
        let mut governed = 0;
        for t in tasks {
            governed += t.await.expect("task");
        }
        assert!(governed > 0, "no question was governed: the fixture is wrong");
        rates.push((per_task * 8) as f64 / started.elapsed().as_secs_f64());
    }
    summarize(rates)
}

async fn measure(label: &str, url: &str, sync: &str, quick: bool, out: &mut Vec<Metric>) {
    let (ents, pols) = if quick { (10, 100) } else { (1_000, 10_000) };
    let mut f = fixture(url).await;
    let small = if sync == "full" {
        seed(&mut f, ents.min(10), 100).await;
        Some(creation_time(&f, quick).await)
    } else {
        None
    };
    eprintln!("workflow: {label}: seeding {ents} entitlements and {pols} policies");
    seed(&mut f, ents, pols).await;
    // Reopen with the durability under test (seeding ran with synchronous = normal).
    let store = f.app.store.clone();
    store.close().await;
    f.app = App { store: open(url, sync).await, ..f.app.clone() };
    let f = Arc::new(f);
    pairs(&f, label, quick, out).await;
    if let Some(small) = small {
        let large = creation_time(&f, quick).await;
        let note = |(v, _): (f64, (f64, f64))| v;
        out.push(metric(format!("request creation, {label}, 100 policies"), note(small), "µs", small.1, ""));
        out.push(metric(
            format!("request creation, {label}, {pols} policies"),
            note(large),
            "µs",
            large.1,
            "within 10 % of 100 policies",
        ));
        let (rate, spread) = explain_rate(&f, quick).await;
        out.push(metric(
            format!("explain through the use case, {label}, 8 callers"),
            rate,
            "answers/s",
            spread,
            "≥ 20,000/s",
        ));
    }
    f.app.store.close().await;
}

pub async fn run(quick: bool) -> Vec<Metric> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = Vec::new();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    measure("SQLite (synchronous=full)", &url, "full", quick, &mut out).await;
    let pg = PgCluster::start_durable();
    let url = pg.create_database("bench");
    measure("PostgreSQL", &url, "full", quick, &mut out).await;
    out
}
