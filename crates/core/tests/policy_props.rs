//! Property tests of policy resolution: deterministic, the fast path agrees with the full
//! explanation, and the governing policy passes every filter and beats every other survivor.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use portcullis_core::policy::*;
use portcullis_core::schedule::{local_slot, TimeRestrictions, Weekdays, Window};
use proptest::prelude::*;

fn windows() -> impl Strategy<Value = TimeRestrictions> {
    prop::collection::vec((1u8..=0x7f, 0u16..24, 1u16..=24), 0..3).prop_map(|ws| TimeRestrictions {
        windows: ws
            .into_iter()
            .filter_map(|(d, a, b)| {
                let (a, b) = if a < b { (a, b) } else { (b.min(a), a.max(b) + 1) };
                Window::new(Weekdays::from_bits(d)?, a * 60, (b * 60).min(1440)).ok()
            })
            .collect(),
    })
}

fn ids(prefix: &'static str, n: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(0..n, 0..3).prop_map(move |v| v.into_iter().map(|i| format!("{prefix}{i}")).collect())
}

fn entitlement(i: usize) -> impl Strategy<Value = EntitlementRule> {
    (1i64..4, ids("u", 3), ids("g", 3), windows(), prop::option::of(0i64..3)).prop_map(
        move |(priority, user_ids, group_ids, windows, exp)| EntitlementRule {
            id: format!("e{i}"),
            priority,
            user_ids,
            group_ids,
            windows,
            expires_at: exp.map(|d| Timestamp::from_second(1_767_225_600 + d * 86_400 * 3).unwrap()),
            // Some entitlements were changed by u0 and not confirmed since.
            unconfirmed_by: if priority == 3 { vec!["u0".into()] } else { vec![] },
        },
    )
}

fn policy(i: usize, n_ent: usize) -> impl Strategy<Value = PolicyRule> {
    (
        0..n_ent,
        1i64..4,
        0usize..5,
        ids("acct", 3),
        ids("asset", 2),
        ids("ag", 2),
        ids("sg", 2),
        windows(),
        any::<bool>(),
    )
        .prop_map(
            move |(e, priority, at, accounts, assets, account_groups, asset_groups, windows, emergency_allowed)| {
                PolicyRule {
                    id: format!("p{i:02}"),
                    entitlement_id: format!("e{e}"),
                    priority,
                    access_type: AccessType::ALL[at],
                    scope: Scope { assets, asset_groups, accounts, account_groups },
                    windows,
                    emergency_allowed,
                    expires_at: None,
                    unconfirmed_by: if priority == 2 && emergency_allowed { vec!["u1".into()] } else { vec![] },
                }
            },
        )
}

fn world() -> impl Strategy<Value = (Vec<EntitlementRule>, Vec<PolicyRule>)> {
    (1usize..4).prop_flat_map(|n_ent| {
        let ents: Vec<_> = (0..n_ent).map(entitlement).collect();
        let pols = (1usize..12).prop_flat_map(move |n| (0..n).map(|i| policy(i, n_ent)).collect::<Vec<_>>());
        (ents, pols)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn resolution_is_sound((ents, pols) in world(), user in 0usize..3, groups in ids("g", 3), account in 0usize..3, asset in 0usize..2,
                           account_groups in ids("ag", 2), asset_groups in ids("sg", 2), at_type in 0usize..5,
                           secs in 0i64..(14 * 86_400), emergency in any::<bool>(), zone in 0usize..3) {
        let tz = TimeZone::get(["UTC", "Europe/Berlin", "Pacific/Auckland"][zone]).unwrap();
        let (user, account, asset) = (format!("u{user}"), format!("acct{account}"), format!("asset{asset}"));
        let q = Question {
            requester: Requester { user_id: &user, group_ids: &groups, time_zone: &tz },
            target: Target { account_id: &account, asset_id: &asset, account_group_ids: &account_groups, asset_group_ids: &asset_groups },
            access_type: AccessType::ALL[at_type],
            at: Timestamp::from_second(1_767_225_600 + secs).unwrap(),
            emergency,
        };
        let set = PolicySet::new(ents.clone(), pols.clone());
        let a = set.resolve(&q);
        let b = set.resolve(&q);
        prop_assert_eq!(&a, &b, "deterministic");
        let full = set.explain(&q);
        prop_assert_eq!(&a.governing, &full.governing, "the index agrees with the full scan");
        prop_assert_eq!(set.governing(&q).map(|p| p.id.clone()), a.governing.clone(), "the fast path agrees");

        // Independent re-check of every filter.
        let passes = |p: &PolicyRule| {
            let Some(e) = ents.iter().find(|e| e.id == p.entitlement_id) else { return false };
            let slot = local_slot(q.at, &tz);
            (e.user_ids.contains(&user) || e.group_ids.iter().any(|g| groups.contains(g)))
                && !e.unconfirmed_by.contains(&user) && !p.unconfirmed_by.contains(&user)
                && (p.scope.accounts.contains(&account) || p.scope.assets.contains(&asset)
                    || p.scope.account_groups.iter().any(|g| account_groups.contains(g))
                    || p.scope.asset_groups.iter().any(|g| asset_groups.contains(g)))
                && p.access_type == q.access_type
                && e.expires_at.is_none_or(|t| t > q.at)
                && (!emergency || p.emergency_allowed)
                && e.windows.permits_slot(slot) && p.windows.permits_slot(slot)
        };
        let rank = |p: &PolicyRule| (ents.iter().find(|e| e.id == p.entitlement_id).unwrap().priority, p.priority, p.id.clone());
        match &a.governing {
            Some(id) => {
                let g = pols.iter().find(|p| &p.id == id).unwrap();
                prop_assert!(passes(g), "the governing policy {} fails a filter", id);
                for p in pols.iter().filter(|p| passes(p)) {
                    prop_assert!(rank(g) <= rank(p), "{} beats the governing {}", p.id, id);
                }
            }
            None => prop_assert!(!pols.iter().any(passes), "a policy passes every filter but none governs"),
        }
        for v in &full.verdicts {
            let p = pols.iter().find(|p| p.id == v.policy_id).unwrap();
            prop_assert_eq!(v.eliminated.is_none(), a.governing.as_deref() == Some(p.id.as_str()));
        }
    }
}
