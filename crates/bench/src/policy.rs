//! Policy resolution throughput: 1,000 entitlements and 10,000 policies over 5,000 accounts,
//! one core, random questions (goal ≥ 200,000 resolutions/s).

use std::time::Instant;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use portcullis_core::policy::*;
use portcullis_core::schedule::{TimeRestrictions, Weekdays, Window};
use rand::{Rng, SeedableRng};

use crate::{summarize, Metric};

pub fn run(quick: bool) -> Vec<Metric> {
    let (n_ent, n_pol, n_acct, n_users) = if quick { (10, 100, 50, 20) } else { (1_000, 10_000, 5_000, 2_000) };
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let ents: Vec<EntitlementRule> = (0..n_ent)
        .map(|i| EntitlementRule {
            id: format!("e{i}"),
            priority: rng.gen_range(1..20),
            user_ids: (0..20).map(|_| format!("u{}", rng.gen_range(0..n_users))).collect(),
            group_ids: (0..2).map(|_| format!("g{}", rng.gen_range(0..50))).collect(),
            windows: if rng.gen_bool(0.3) { weekdays() } else { TimeRestrictions::always() },
            expires_at: None,
            unconfirmed_by: vec![],
        })
        .collect();
    let pols: Vec<PolicyRule> = (0..n_pol)
        .map(|i| PolicyRule {
            id: format!("p{i:05}"),
            entitlement_id: format!("e{}", rng.gen_range(0..n_ent)),
            priority: rng.gen_range(1..10),
            access_type: AccessType::ALL[rng.gen_range(0..5)],
            scope: Scope {
                accounts: (0..3).map(|_| format!("a{}", rng.gen_range(0..n_acct))).collect(),
                asset_groups: if rng.gen_bool(0.1) { vec![format!("ag{}", rng.gen_range(0..100))] } else { vec![] },
                ..Default::default()
            },
            windows: if rng.gen_bool(0.5) { weekdays() } else { TimeRestrictions::always() },
            emergency_allowed: rng.gen_bool(0.2),
            expires_at: None,
            unconfirmed_by: vec![],
        })
        .collect();
    let set = PolicySet::new(ents, pols);
    let tz = TimeZone::get("Europe/Berlin").expect("tz");
    let groups: Vec<Vec<String>> = (0..n_users).map(|u| vec![format!("g{}", u % 50)]).collect();
    let accounts: Vec<String> = (0..n_acct).map(|a| format!("a{a}")).collect();
    let users: Vec<String> = (0..n_users).map(|u| format!("u{u}")).collect();
    let asset_groups: Vec<Vec<String>> = (0..100).map(|g| vec![format!("ag{g}")]).collect();
    let base = Timestamp::from_second(1_767_225_600).expect("ts");
    let iterations = if quick { 2_000 } else { 400_000 };
    let mut rates = Vec::new();
    let mut governed = 0usize;
    for _round in 0..5 {
        let started = Instant::now();
        for i in 0..iterations {
            let u = rng.gen_range(0..n_users);
            let a = rng.gen_range(0..n_acct);
            let q = Question {
                requester: Requester { user_id: &users[u], group_ids: &groups[u], time_zone: &tz },
                target: Target {
                    account_id: &accounts[a],
                    asset_id: "asset",
                    account_group_ids: &[],
                    asset_group_ids: &asset_groups[a % 100],
                },
                access_type: AccessType::ALL[i % 5],
                at: base + jiff::SignedDuration::from_secs(rng.gen_range(0..604_800)),
                emergency: i % 10 == 0,
            };
            governed += usize::from(std::hint::black_box(set.governing(&q)).is_some());
        }
        rates.push(iterations as f64 / started.elapsed().as_secs_f64());
    }
    let (median, spread) = summarize(rates);
    vec![Metric {
        name: format!("policy resolution ({n_pol} policies, {n_ent} entitlements, 1 core)"),
        value: median,
        unit: "res/s",
        spread,
        goal: "≥ 200,000 res/s".into(),
        note: format!("{governed} of {} questions had a governing policy", iterations * 5),
    }]
}

fn weekdays() -> TimeRestrictions {
    TimeRestrictions {
        windows: vec![Window::new(Weekdays::from_bits(0x1f).expect("bits"), 8 * 60, 18 * 60).expect("window")],
    }
}

/// Connection-policy decisions: 1,000 policies (client networks, asset patterns, target
/// networks, ports; about one in ten connections matches none and scans them all), one core,
/// random connections (goal ≥ 100,000 decisions/s).
pub fn gateway(quick: bool) -> Vec<Metric> {
    use portcullis_core::gateway::{compile, select, ConnectionPolicySpec, Facts, TargetSpec};
    use portcullis_core::inventory::Protocol;
    let n = if quick { 50 } else { 1_000 };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let policies: Vec<_> = (0..n)
        .map(|i| {
            let mut spec: ConnectionPolicySpec = portcullis_core::gateway::default_spec();
            spec.clients =
                (0..3).map(|_| format!("10.{}.{}.0/24", rng.gen_range(0..64), rng.gen_range(0..256))).collect();
            spec.targets = vec![
                TargetSpec { asset: Some(format!("srv-{}*", rng.gen_range(0..100))), ..Default::default() },
                TargetSpec {
                    network: Some(format!("172.16.{}.0/24", rng.gen_range(0..256))),
                    port: Some(22),
                    ..Default::default()
                },
            ];
            spec.listen_ports = if rng.gen_bool(0.2) { vec![2222] } else { vec![] };
            compile(&format!("c{i}"), &format!("c{i}"), &spec).expect("bench policy compiles")
        })
        .collect();
    let clients: Vec<std::net::IpAddr> = (0..4096)
        .map(|_| {
            std::net::IpAddr::from([10, rng.gen_range(0..64u8), rng.gen_range(0..=255u8), rng.gen_range(1..255u8)])
        })
        .collect();
    let assets: Vec<String> = (0..1000).map(|i| format!("srv-{}-{i}", rng.gen_range(0..100))).collect();
    let addresses: Vec<String> =
        (0..1000).map(|_| format!("172.16.{}.{}", rng.gen_range(0..256), rng.gen_range(1..255))).collect();
    let iterations = if quick { 2_000 } else { 200_000 };
    let mut rates = Vec::new();
    let mut matched = 0usize;
    for _round in 0..5 {
        let started = Instant::now();
        for i in 0..iterations {
            let facts = Facts {
                protocol: Protocol::Ssh,
                client: clients[i % clients.len()],
                listen_port: 2222,
                asset: &assets[i % assets.len()],
                target_address: &addresses[(i * 7) % addresses.len()],
                target_port: 22,
            };
            matched += usize::from(std::hint::black_box(select(&policies, &facts)).is_some());
        }
        rates.push(iterations as f64 / started.elapsed().as_secs_f64());
    }
    let (median, spread) = summarize(rates);
    vec![Metric {
        name: format!("connection-policy decisions ({n} policies, 1 core)"),
        value: median,
        unit: "dec/s",
        spread,
        goal: "≥ 100,000 dec/s".into(),
        note: format!("{matched} of {} connections matched a policy", iterations * 5),
    }]
}
