//! Entitlements, policies and what resolution reads about users, groups and accounts, kept in
//! memory as one immutable snapshot and rebuilt only when the stored policy generation moves.
//!
//! Every change to those tables bumps `policy_generation` in the writing transaction (database
//! triggers, so no write path can forget it). Each use reads the generation (one indexed row)
//! and rebuilds when it differs from the snapshot's, so a change made on another node sharing
//! the database is seen at the next use, never later. A request's cost then grows with the
//! request, not with the number of stored policies.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jiff::tz::TimeZone;
use portcullis_core::policy::{PolicySet, Question, Requester, Resolution, Target};
use portcullis_core::schedule::TimeRestrictions;
use portcullis_store::{ApprovalContext, Policy, Store};

use crate::error::{AppError, AppResult};

/// One consistent view of the rules (at least as new as `generation`).
pub struct PolicySnapshot {
    pub generation: i64,
    pub set: PolicySet,
    pub policies: HashMap<String, Policy>,
    pub entitlement_names: HashMap<String, String>,
    pub entitlement_windows: HashMap<String, TimeRestrictions>,
    /// Per policy: who approves at each level (groups expanded) and how many are needed.
    pub approvals: HashMap<String, ApprovalContext>,
    /// Per policy: its reviewers (groups expanded).
    pub reviewers: HashMap<String, Vec<String>>,
    user_groups: HashMap<String, Vec<String>>,
    account_groups: HashMap<String, Vec<String>>,
    asset_groups: HashMap<String, Vec<String>>,
    user_zones: HashMap<String, String>,
    account_assets: HashMap<String, String>,
}

/// Who is asking, for what, when.
pub struct Ask<'a> {
    pub user_id: &'a str,
    pub account_id: &'a str,
    pub access_type: portcullis_core::policy::AccessType,
    pub at: i64,
    pub emergency: bool,
}

static NONE: Vec<String> = Vec::new();

impl PolicySnapshot {
    async fn load(store: &Store) -> AppResult<PolicySnapshot> {
        // The generation first: the data read after it is at least that new, so a snapshot is
        // never older than the generation it claims.
        let generation = store.policy_generation().await?;
        let ents = store.entitlements().await?;
        let pols = store.policies(None).await?;
        let facts = store.resolution_facts().await?;
        let (ent_rules, pol_rules) = portcullis_store::rules(&ents, &pols);
        let group = |pairs: &[(String, String)], by_member: bool| {
            let mut m: HashMap<String, Vec<String>> = HashMap::new();
            for (g, member) in pairs {
                let (k, v) = if by_member { (member, g) } else { (g, member) };
                m.entry(k.clone()).or_default().push(v.clone());
            }
            for v in m.values_mut() {
                v.sort();
            }
            m
        };
        let group_members = group(&facts.user_group_members, false);
        let expand = |users: &[String], groups: &[String]| {
            let mut out = users.to_vec();
            for g in groups {
                out.extend(group_members.get(g).into_iter().flatten().cloned());
            }
            out.sort();
            out.dedup();
            out
        };
        let approvals = pols
            .iter()
            .map(|p| {
                let levels = &p.settings.approval_levels;
                let ctx = ApprovalContext {
                    required_per_level: levels.iter().map(|l| l.required).collect(),
                    approvers_per_level: levels.iter().map(|l| expand(&l.user_ids, &l.group_ids)).collect(),
                };
                (p.id.clone(), ctx)
            })
            .collect();
        let reviewers = pols
            .iter()
            .map(|p| (p.id.clone(), expand(&p.settings.reviewer_user_ids, &p.settings.reviewer_group_ids)))
            .collect();
        Ok(PolicySnapshot {
            generation,
            set: PolicySet::new(ent_rules, pol_rules),
            entitlement_names: ents.iter().map(|e| (e.id.clone(), e.name.clone())).collect(),
            entitlement_windows: ents.into_iter().map(|e| (e.id, e.windows)).collect(),
            policies: pols.into_iter().map(|p| (p.id.clone(), p)).collect(),
            approvals,
            reviewers,
            user_groups: group(&facts.user_group_members, true),
            account_groups: group(&facts.account_group_members, true),
            asset_groups: group(&facts.asset_group_members, true),
            user_zones: facts.user_zones.into_iter().collect(),
            account_assets: facts.account_assets.into_iter().collect(),
        })
    }

    /// The asset an account belongs to, if the account exists.
    pub fn asset_of(&self, account_id: &str) -> Option<&str> {
        self.account_assets.get(account_id).map(String::as_str)
    }

    /// A user's time zone, if the user exists.
    pub fn zone_of(&self, user_id: &str) -> Option<&str> {
        self.user_zones.get(user_id).map(String::as_str)
    }

    pub fn groups_of_user(&self, user_id: &str) -> &[String] {
        self.user_groups.get(user_id).unwrap_or(&NONE)
    }

    pub fn policy(&self, id: &str) -> Option<&Policy> {
        self.policies.get(id)
    }

    /// The approval context of a policy (empty when the policy is gone).
    pub fn approval(&self, policy_id: &str) -> ApprovalContext {
        self.approvals
            .get(policy_id)
            .cloned()
            .unwrap_or(ApprovalContext { required_per_level: vec![], approvers_per_level: vec![] })
    }

    fn question<'a>(&'a self, ask: &'a Ask<'a>, tz: &'a TimeZone) -> AppResult<Question<'a>> {
        let asset_id = self.asset_of(ask.account_id).ok_or_else(|| AppError::not_found("account"))?;
        Ok(Question {
            requester: Requester { user_id: ask.user_id, group_ids: self.groups_of_user(ask.user_id), time_zone: tz },
            target: Target {
                account_id: ask.account_id,
                asset_id,
                account_group_ids: self.account_groups.get(ask.account_id).unwrap_or(&NONE),
                asset_group_ids: self.asset_groups.get(asset_id).unwrap_or(&NONE),
            },
            access_type: ask.access_type,
            at: jiff::Timestamp::from_microsecond(ask.at).map_err(|_| AppError::invalid("at", "out of range"))?,
            emergency: ask.emergency,
        })
    }

    /// Every account this user's entitlements cover, with the access types their policies
    /// name: what the user may request at some time. Whether a policy governs at a given
    /// time is [`Self::resolve`]'s answer.
    pub fn requestable(&self, user_id: &str) -> HashMap<String, Vec<portcullis_core::policy::AccessType>> {
        use std::collections::HashSet;
        let mine = self.set.policies_for(user_id, self.groups_of_user(user_id));
        let mut by: [HashMap<&str, HashSet<portcullis_core::policy::AccessType>>; 4] = Default::default();
        for p in &mine {
            let scope = [&p.scope.accounts, &p.scope.assets, &p.scope.account_groups, &p.scope.asset_groups];
            for (map, ids) in by.iter_mut().zip(scope) {
                for id in ids {
                    map.entry(id.as_str()).or_default().insert(p.access_type);
                }
            }
        }
        let [by_account, by_asset, by_account_group, by_asset_group] = &by;
        let mut out = HashMap::new();
        if mine.is_empty() {
            return out;
        }
        for (account, asset) in &self.account_assets {
            let mut types: HashSet<portcullis_core::policy::AccessType> = HashSet::new();
            types.extend(by_account.get(account.as_str()).into_iter().flatten());
            types.extend(by_asset.get(asset.as_str()).into_iter().flatten());
            for g in self.account_groups.get(account).unwrap_or(&NONE) {
                types.extend(by_account_group.get(g.as_str()).into_iter().flatten());
            }
            for g in self.asset_groups.get(asset).unwrap_or(&NONE) {
                types.extend(by_asset_group.get(g.as_str()).into_iter().flatten());
            }
            if !types.is_empty() {
                let mut types: Vec<_> = types.into_iter().collect();
                types.sort_by_key(|t| t.as_str());
                out.insert(account.clone(), types);
            }
        }
        out
    }

    /// The governing policy (R-POL-3) of a request, with every candidate's verdict.
    pub fn resolve(&self, ask: &Ask<'_>, tz: &TimeZone) -> AppResult<Resolution> {
        Ok(self.set.resolve(&self.question(ask, tz)?))
    }
}

/// The current snapshot, shared by every use case on this node.
#[derive(Default)]
pub struct PolicyCache {
    current: RwLock<Option<Arc<PolicySnapshot>>>,
    /// One rebuild at a time; the others wait for it and use its result.
    rebuilding: tokio::sync::Mutex<()>,
}

impl PolicyCache {
    fn cached(&self, generation: i64) -> Option<Arc<PolicySnapshot>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|s| s.generation == generation).cloned()
    }

    /// The snapshot for the stored generation, rebuilt if it moved.
    pub async fn get(&self, store: &Store) -> AppResult<Arc<PolicySnapshot>> {
        let generation = store.policy_generation().await?;
        if let Some(s) = self.cached(generation) {
            return Ok(s);
        }
        let _one = self.rebuilding.lock().await;
        let generation = store.policy_generation().await?;
        if let Some(s) = self.cached(generation) {
            return Ok(s);
        }
        let started = std::time::Instant::now();
        let snapshot = Arc::new(PolicySnapshot::load(store).await?);
        tracing::debug!(
            generation = snapshot.generation,
            policies = snapshot.policies.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "policy rules rebuilt"
        );
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }
}
