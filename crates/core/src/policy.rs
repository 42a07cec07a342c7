//! Which access request policy governs a request (R-POL-3), and why every other candidate was
//! eliminated (R-POL-5).
//!
//! Filters, in order: the requester is a member of the entitlement; the account is in the
//! policy's scope and the access type matches; neither entitlement nor policy has expired; for
//! an emergency request the policy allows emergency access; the request's start falls inside
//! the entitlement's time windows and inside the policy's (their overlap), in the requester's
//! time zone. Among the survivors the best (lowest) entitlement priority wins, then the best
//! policy priority; remaining ties go to the smaller policy id, so the answer is
//! deterministic.
//!
//! Window semantics: the windows are evaluated at the requested start. The granted period is
//! then clipped to the end of the allowed span that contains the start (see
//! [`crate::schedule::allowed_until`]), so access is only ever usable inside the overlap.

use std::collections::{HashMap, HashSet};

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::schedule::{local_slot, TimeRestrictions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessType {
    Password,
    SshKey,
    Ssh,
    Rdp,
    Telnet,
}

impl AccessType {
    pub const ALL: [AccessType; 5] =
        [AccessType::Password, AccessType::SshKey, AccessType::Ssh, AccessType::Rdp, AccessType::Telnet];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessType::Password => "password",
            AccessType::SshKey => "ssh_key",
            AccessType::Ssh => "ssh",
            AccessType::Rdp => "rdp",
            AccessType::Telnet => "telnet",
        }
    }

    pub fn parse(s: &str) -> Option<AccessType> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Session types go through the proxy; the others are credential checkouts.
    pub fn is_session(self) -> bool {
        matches!(self, AccessType::Ssh | AccessType::Rdp | AccessType::Telnet)
    }
}

/// Who may request (R-POL-1), reduced to what resolution needs.
#[derive(Debug, Clone)]
pub struct EntitlementRule {
    pub id: String,
    pub priority: i64,
    pub user_ids: Vec<String>,
    pub group_ids: Vec<String>,
    pub windows: TimeRestrictions,
    pub expires_at: Option<Timestamp>,
    /// Who changed it since another administrator confirmed it: they get nothing through it.
    pub unconfirmed_by: Vec<String>,
}

/// Which accounts a policy covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub assets: Vec<String>,
    pub asset_groups: Vec<String>,
    pub accounts: Vec<String>,
    pub account_groups: Vec<String>,
}

/// An access request policy, reduced to what resolution needs.
#[derive(Debug, Clone)]
pub struct PolicyRule {
    pub id: String,
    pub entitlement_id: String,
    pub priority: i64,
    pub access_type: AccessType,
    pub scope: Scope,
    pub windows: TimeRestrictions,
    pub emergency_allowed: bool,
    pub expires_at: Option<Timestamp>,
    /// Who changed it since another administrator confirmed it: they get nothing through it.
    pub unconfirmed_by: Vec<String>,
}

/// The requester.
#[derive(Debug, Clone)]
pub struct Requester<'a> {
    pub user_id: &'a str,
    pub group_ids: &'a [String],
    pub time_zone: &'a TimeZone,
}

/// The requested account with the groups it and its asset belong to.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub account_id: &'a str,
    pub asset_id: &'a str,
    pub account_group_ids: &'a [String],
    pub asset_group_ids: &'a [String],
}

/// The question: who, which account, which access type, when, emergency or not.
#[derive(Debug, Clone)]
pub struct Question<'a> {
    pub requester: Requester<'a>,
    pub target: Target<'a>,
    pub access_type: AccessType,
    pub at: Timestamp,
    pub emergency: bool,
}

/// Why a policy does not govern the request. Ordered as the filters apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Elimination {
    NotMember,
    ChangedByRequester,
    OutOfScope,
    WrongAccessType,
    EntitlementExpired,
    PolicyExpired,
    EmergencyNotAllowed,
    OutsideEntitlementWindow,
    OutsidePolicyWindow,
    LowerEntitlementPriority,
    LowerPolicyPriority,
}

impl Elimination {
    pub fn code(self) -> &'static str {
        match self {
            Elimination::NotMember => "not_member",
            Elimination::ChangedByRequester => "changed_by_requester",
            Elimination::OutOfScope => "out_of_scope",
            Elimination::WrongAccessType => "wrong_access_type",
            Elimination::EntitlementExpired => "entitlement_expired",
            Elimination::PolicyExpired => "policy_expired",
            Elimination::EmergencyNotAllowed => "emergency_not_allowed",
            Elimination::OutsideEntitlementWindow => "outside_entitlement_window",
            Elimination::OutsidePolicyWindow => "outside_policy_window",
            Elimination::LowerEntitlementPriority => "lower_entitlement_priority",
            Elimination::LowerPolicyPriority => "lower_policy_priority",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Elimination::NotMember => "the requester is not a member of the entitlement",
            Elimination::ChangedByRequester => {
                "the requester changed the entitlement or the policy, and no other Security Policy Administrator has \
                 confirmed it since"
            }
            Elimination::OutOfScope => "the account is not in the policy's scope",
            Elimination::WrongAccessType => "the policy grants another access type",
            Elimination::EntitlementExpired => "the entitlement has expired",
            Elimination::PolicyExpired => "the policy has expired",
            Elimination::EmergencyNotAllowed => "the policy does not allow emergency access",
            Elimination::OutsideEntitlementWindow => "the time is outside the entitlement's time restrictions",
            Elimination::OutsidePolicyWindow => "the time is outside the policy's time restrictions",
            Elimination::LowerEntitlementPriority => "another entitlement has a better priority",
            Elimination::LowerPolicyPriority => "another policy of the entitlement has a better priority",
        }
    }
}

/// One policy's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub policy_id: String,
    pub entitlement_id: String,
    /// `None` for the governing policy.
    pub eliminated: Option<Elimination>,
}

/// The outcome for every policy looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub governing: Option<String>,
    pub verdicts: Vec<Verdict>,
}

/// Entitlements and policies, indexed by scope so that a request looks only at the policies
/// that can cover its account. Built once per policy change; resolution allocates little.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    entitlements: Vec<EntitlementRule>,
    members: Vec<(HashSet<String>, HashSet<String>)>,
    policies: Vec<PolicyRule>,
    /// Entitlement index of each policy (`None`: the entitlement does not exist).
    policy_entitlement: Vec<Option<usize>>,
    by_account: HashMap<String, Vec<usize>>,
    by_asset: HashMap<String, Vec<usize>>,
    by_account_group: HashMap<String, Vec<usize>>,
    by_asset_group: HashMap<String, Vec<usize>>,
}

impl PolicySet {
    pub fn new(entitlements: Vec<EntitlementRule>, policies: Vec<PolicyRule>) -> PolicySet {
        let members = entitlements
            .iter()
            .map(|e| (e.user_ids.iter().cloned().collect(), e.group_ids.iter().cloned().collect()))
            .collect();
        let index: HashMap<&str, usize> = entitlements.iter().enumerate().map(|(i, e)| (e.id.as_str(), i)).collect();
        let policy_entitlement = policies.iter().map(|p| index.get(p.entitlement_id.as_str()).copied()).collect();
        let mut set = PolicySet {
            entitlements: Vec::new(),
            members,
            policies: Vec::new(),
            policy_entitlement,
            ..Default::default()
        };
        for (i, p) in policies.iter().enumerate() {
            for (map, ids) in [
                (&mut set.by_account, &p.scope.accounts),
                (&mut set.by_asset, &p.scope.assets),
                (&mut set.by_account_group, &p.scope.account_groups),
                (&mut set.by_asset_group, &p.scope.asset_groups),
            ] {
                for id in ids {
                    let list = map.entry(id.clone()).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
        set.entitlements = entitlements;
        set.policies = policies;
        set
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policies of the entitlements that name this user or one of their groups: what the
    /// user may request at some time (R-POL-1).
    pub fn policies_for(&self, user_id: &str, group_ids: &[String]) -> Vec<&PolicyRule> {
        self.policies
            .iter()
            .zip(&self.policy_entitlement)
            .filter(|(_, e)| {
                e.is_some_and(|e| {
                    let (users, groups) = &self.members[e];
                    users.contains(user_id) || group_ids.iter().any(|g| groups.contains(g))
                })
            })
            .map(|(p, _)| p)
            .collect()
    }

    fn in_scope(p: &PolicyRule, t: &Target<'_>) -> bool {
        p.scope.accounts.iter().any(|a| a == t.account_id)
            || p.scope.assets.iter().any(|a| a == t.asset_id)
            || p.scope.account_groups.iter().any(|g| t.account_group_ids.contains(g))
            || p.scope.asset_groups.iter().any(|g| t.asset_group_ids.contains(g))
    }

    /// The first filter policy `i` fails, or `None` if it survives all but priority. `slot` is
    /// the request's local time, computed once per question.
    fn check(&self, i: usize, q: &Question<'_>, slot: &mut Option<crate::schedule::LocalSlot>) -> Option<Elimination> {
        let p = &self.policies[i];
        let Some(ei) = self.policy_entitlement[i] else { return Some(Elimination::NotMember) };
        let e = &self.entitlements[ei];
        let (users, groups) = &self.members[ei];
        if !(users.contains(q.requester.user_id) || q.requester.group_ids.iter().any(|g| groups.contains(g))) {
            return Some(Elimination::NotMember);
        }
        let me = q.requester.user_id;
        if e.unconfirmed_by.iter().any(|u| u == me) || p.unconfirmed_by.iter().any(|u| u == me) {
            return Some(Elimination::ChangedByRequester);
        }
        if !Self::in_scope(p, &q.target) {
            return Some(Elimination::OutOfScope);
        }
        if p.access_type != q.access_type {
            return Some(Elimination::WrongAccessType);
        }
        if e.expires_at.is_some_and(|t| t <= q.at) {
            return Some(Elimination::EntitlementExpired);
        }
        if p.expires_at.is_some_and(|t| t <= q.at) {
            return Some(Elimination::PolicyExpired);
        }
        if q.emergency && !p.emergency_allowed {
            return Some(Elimination::EmergencyNotAllowed);
        }
        if !(e.windows.is_unrestricted() && p.windows.is_unrestricted()) {
            let slot = *slot.get_or_insert_with(|| local_slot(q.at, q.requester.time_zone));
            if !e.windows.permits_slot(slot) {
                return Some(Elimination::OutsideEntitlementWindow);
            }
            if !p.windows.permits_slot(slot) {
                return Some(Elimination::OutsidePolicyWindow);
            }
        }
        None
    }

    /// Sort key: entitlement priority, policy priority, policy id.
    fn rank(&self, i: usize) -> (i64, i64, &str) {
        let p = &self.policies[i];
        let e = self.policy_entitlement[i].map_or(i64::MAX, |e| self.entitlements[e].priority);
        (e, p.priority, p.id.as_str())
    }

    fn decide(&self, q: &Question<'_>, candidates: impl Iterator<Item = usize>) -> Resolution {
        let mut slot = None;
        let mut verdicts: Vec<(usize, Option<Elimination>)> =
            candidates.map(|i| (i, self.check(i, q, &mut slot))).collect();
        let best = verdicts
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(i, _)| *i)
            .min_by(|a, b| self.rank(*a).cmp(&self.rank(*b)));
        if let Some(b) = best {
            let best_e = self.rank(b).0;
            for (i, v) in verdicts.iter_mut() {
                if v.is_none() && *i != b {
                    *v = Some(if self.rank(*i).0 > best_e {
                        Elimination::LowerEntitlementPriority
                    } else {
                        Elimination::LowerPolicyPriority
                    });
                }
            }
        }
        verdicts.sort_by(|a, b| self.rank(a.0).cmp(&self.rank(b.0)));
        Resolution {
            governing: best.map(|b| self.policies[b].id.clone()),
            verdicts: verdicts
                .into_iter()
                .map(|(i, eliminated)| Verdict {
                    policy_id: self.policies[i].id.clone(),
                    entitlement_id: self.policies[i].entitlement_id.clone(),
                    eliminated,
                })
                .collect(),
        }
    }

    fn candidates(&self, t: &Target<'_>) -> Vec<usize> {
        let empty = Vec::new();
        let mut out: Vec<usize> = self
            .by_account
            .get(t.account_id)
            .unwrap_or(&empty)
            .iter()
            .chain(self.by_asset.get(t.asset_id).unwrap_or(&empty))
            .chain(t.account_group_ids.iter().flat_map(|g| self.by_account_group.get(g.as_str()).unwrap_or(&empty)))
            .chain(t.asset_group_ids.iter().flat_map(|g| self.by_asset_group.get(g.as_str()).unwrap_or(&empty)))
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The governing policy only: the fast path a request takes. Looks only at the policies
    /// whose scope names the account, its asset or one of their groups, and builds no list
    /// of verdicts.
    pub fn governing(&self, q: &Question<'_>) -> Option<&PolicyRule> {
        let mut slot = None;
        self.candidates(&q.target)
            .into_iter()
            .filter(|i| self.check(*i, q, &mut slot).is_none())
            .min_by(|a, b| self.rank(*a).cmp(&self.rank(*b)))
            .map(|i| &self.policies[i])
    }

    /// The governing policy with a verdict for every candidate in scope.
    pub fn resolve(&self, q: &Question<'_>) -> Resolution {
        self.decide(q, self.candidates(&q.target).into_iter())
    }

    /// Every policy with its verdict (R-POL-5): the same decision as [`Self::resolve`], with
    /// the out-of-scope policies listed too.
    pub fn explain(&self, q: &Question<'_>) -> Resolution {
        self.decide(q, 0..self.policies.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Weekdays, Window};

    fn days(names: &[&str]) -> Weekdays {
        Weekdays::parse("days", &names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn window(d: &[&str], from: u16, to: u16) -> TimeRestrictions {
        TimeRestrictions { windows: vec![Window::new(days(d), from * 60, to * 60).unwrap()] }
    }

    fn entitlement(id: &str, priority: i64) -> EntitlementRule {
        EntitlementRule {
            id: id.into(),
            priority,
            user_ids: vec!["u".into()],
            group_ids: vec![],
            windows: TimeRestrictions::always(),
            expires_at: None,
            unconfirmed_by: vec![],
        }
    }

    fn policy(id: &str, ent: &str, priority: i64, windows: TimeRestrictions) -> PolicyRule {
        PolicyRule {
            id: id.into(),
            entitlement_id: ent.into(),
            priority,
            access_type: AccessType::Password,
            scope: Scope { accounts: vec!["accountX".into()], ..Default::default() },
            windows,
            emergency_allowed: false,
            expires_at: None,
            unconfirmed_by: vec![],
        }
    }

    #[test]
    fn a_rule_changed_by_the_requester_grants_them_nothing_until_confirmed() {
        let utc = TimeZone::UTC;
        let q = |user: &'static str| Question {
            requester: Requester { user_id: user, group_ids: &[], time_zone: &utc },
            target: Target { account_id: "accountX", asset_id: "h", account_group_ids: &[], asset_group_ids: &[] },
            access_type: AccessType::Password,
            at: "2026-11-30T10:00:00Z".parse().unwrap(),
            emergency: false,
        };
        let mut e = entitlement("E", 1);
        e.user_ids.push("spa".into());
        let p = policy("P", "E", 1, TimeRestrictions::always());
        let set = |e: &EntitlementRule, p: &PolicyRule| PolicySet::new(vec![e.clone()], vec![p.clone()]);
        assert!(set(&e, &p).governing(&q("spa")).is_some(), "confirmed: granted");
        let mut changed = e.clone();
        changed.unconfirmed_by = vec!["spa".into()];
        let r = set(&changed, &p).resolve(&q("spa"));
        assert_eq!((r.governing, r.verdicts[0].eliminated), (None, Some(Elimination::ChangedByRequester)));
        assert!(set(&changed, &p).governing(&q("u")).is_some(), "others are not affected");
        let mut p2 = p.clone();
        p2.unconfirmed_by = vec!["spa".into()];
        assert!(set(&e, &p2).governing(&q("spa")).is_none(), "a changed policy too");
    }

    /// Seed 004: Entitlement A (priority 1) with a weekday policy; Entitlement B (priority 2)
    /// with Sunday AM (priority 1) and Sunday PM (priority 2); all scoped to AccountX.
    fn seed_004() -> (Vec<EntitlementRule>, Vec<PolicyRule>) {
        (
            vec![entitlement("A", 1), entitlement("B", 2)],
            vec![
                policy("weekday", "A", 1, window(&["mon-fri"], 8, 17)),
                policy("sunday-am", "B", 1, window(&["sun"], 8, 12)),
                policy("sunday-pm", "B", 2, window(&["sun"], 13, 17)),
            ],
        )
    }

    /// Resolves for user `u` (time zone `tz`) at `at`, and checks that the fast path and the
    /// full explanation agree.
    fn check(ents: Vec<EntitlementRule>, pols: Vec<PolicyRule>, at: &str, tz: &str, emergency: bool) -> String {
        let set = PolicySet::new(ents, pols);
        let tz = TimeZone::get(tz).unwrap();
        let q = Question {
            requester: Requester { user_id: "u", group_ids: &[], time_zone: &tz },
            target: Target { account_id: "accountX", asset_id: "asset1", account_group_ids: &[], asset_group_ids: &[] },
            access_type: AccessType::Password,
            at: at.parse().unwrap(),
            emergency,
        };
        let fast = set.resolve(&q);
        let full = set.explain(&q);
        assert_eq!(fast.governing, full.governing);
        assert_eq!(set.governing(&q).map(|p| p.id.clone()), fast.governing);
        let mut out = format!("governing: {}", fast.governing.as_deref().unwrap_or("none"));
        for v in &full.verdicts {
            out += &format!("; {}: {}", v.policy_id, v.eliminated.map_or("governs", |e| e.code()));
        }
        out
    }

    // 2026-01-04 is a Sunday, 2026-01-05 a Monday.
    #[test]
    fn seed_004_sunday_afternoon_goes_to_sunday_pm() {
        let (e, p) = seed_004();
        assert_eq!(
            check(e, p, "2026-01-04T16:00:00Z", "UTC", false),
            "governing: sunday-pm; weekday: outside_policy_window; sunday-am: outside_policy_window; sunday-pm: governs"
        );
    }

    #[test]
    fn seed_004_weekday_goes_to_entitlement_a() {
        let (e, p) = seed_004();
        assert_eq!(
            check(e, p, "2026-01-05T10:00:00Z", "UTC", false),
            "governing: weekday; weekday: governs; sunday-am: outside_policy_window; sunday-pm: outside_policy_window"
        );
    }

    #[test]
    fn seed_004_variation_sunday_am_until_17_wins_by_priority() {
        let (e, mut p) = seed_004();
        p[1].windows = window(&["sun"], 8, 17);
        assert_eq!(
            check(e, p, "2026-01-04T16:00:00Z", "UTC", false),
            "governing: sunday-am; weekday: outside_policy_window; sunday-am: governs; sunday-pm: lower_policy_priority"
        );
    }

    #[test]
    fn seed_004_variation_emergency_eliminates_sunday_am() {
        let (e, mut p) = seed_004();
        p[1].windows = window(&["sun"], 8, 17);
        p[2].emergency_allowed = true;
        assert_eq!(
            check(e, p, "2026-01-04T16:00:00Z", "UTC", true),
            "governing: sunday-pm; weekday: emergency_not_allowed; sunday-am: emergency_not_allowed; sunday-pm: governs"
        );
    }

    #[test]
    fn seed_004_between_the_sunday_windows_nothing_governs() {
        let (e, p) = seed_004();
        assert_eq!(
            check(e, p, "2026-01-04T12:30:00Z", "UTC", false),
            "governing: none; weekday: outside_policy_window; sunday-am: outside_policy_window; sunday-pm: outside_policy_window"
        );
    }

    #[test]
    fn time_zone_of_the_requester_decides() {
        // Sunday 16:00 UTC is Monday 01:00 in Tokyo and Sunday 08:00 in Los Angeles.
        let (e, p) = seed_004();
        assert!(check(e.clone(), p.clone(), "2026-01-04T16:00:00Z", "Asia/Tokyo", false).starts_with("governing: none"));
        assert!(check(e, p, "2026-01-04T16:00:00Z", "America/Los_Angeles", false).starts_with("governing: sunday-am"));
    }

    #[test]
    fn dst_change_moves_the_window_in_utc() {
        // Berlin: 2026-03-29 switches to summer time. Sunday 08:00-12:00 local is 07:00-11:00
        // UTC before and 06:00-10:00 UTC after.
        let (e, p) = seed_004();
        assert!(check(e.clone(), p.clone(), "2026-03-22T07:30:00Z", "Europe/Berlin", false)
            .starts_with("governing: sunday-am"));
        assert!(check(e.clone(), p.clone(), "2026-03-29T06:30:00Z", "Europe/Berlin", false)
            .starts_with("governing: sunday-am"));
        assert!(check(e, p, "2026-03-22T06:30:00Z", "Europe/Berlin", false).starts_with("governing: none"));
    }

    #[test]
    fn entitlement_window_overlaps_with_policy_window_and_expiry_applies() {
        let (mut e, p) = seed_004();
        e[1].windows = window(&["sun"], 14, 24);
        assert!(check(e.clone(), p.clone(), "2026-01-04T13:30:00Z", "UTC", false)
            .contains("sunday-pm: outside_entitlement_window"));
        assert!(check(e.clone(), p.clone(), "2026-01-04T14:30:00Z", "UTC", false).starts_with("governing: sunday-pm"));
        e[1].expires_at = Some("2026-01-01T00:00:00Z".parse().unwrap());
        assert!(check(e, p, "2026-01-04T14:30:00Z", "UTC", false).contains("sunday-pm: entitlement_expired"));
    }

    #[test]
    fn membership_scope_and_access_type() {
        let (mut e, mut p) = seed_004();
        e[0].user_ids.clear();
        e[0].group_ids = vec!["g".into()];
        p[2].access_type = AccessType::Ssh;
        p[1].scope = Scope { assets: vec!["other".into()], ..Default::default() };
        assert_eq!(
            check(e, p, "2026-01-04T16:00:00Z", "UTC", false),
            "governing: none; weekday: not_member; sunday-am: out_of_scope; sunday-pm: wrong_access_type"
        );
    }
}

/// How the session side of a request authenticates to the target (R-REQ-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountMode {
    /// The vaulted account's credential.
    Vaulted,
    /// The user types the credential at launch.
    UserSupplied,
    /// One of the requester's linked directory accounts.
    LinkedAccount,
    /// Only the directory accounts the policy names.
    DirectoryAccount,
}

impl AccountMode {
    pub const ALL: [AccountMode; 4] =
        [AccountMode::Vaulted, AccountMode::UserSupplied, AccountMode::LinkedAccount, AccountMode::DirectoryAccount];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountMode::Vaulted => "none",
            AccountMode::UserSupplied => "user_supplied",
            AccountMode::LinkedAccount => "linked_account",
            AccountMode::DirectoryAccount => "directory_account",
        }
    }

    pub fn parse(s: &str) -> Option<AccountMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// One approval level: `required` approvals from the named users or members of the groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalLevel {
    pub required: u32,
    pub user_ids: Vec<String>,
    pub group_ids: Vec<String>,
}

/// Everything a policy says beyond what resolution needs (R-POL-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    pub ticket_required: bool,
    pub reason_required: bool,
    pub comment_required: bool,
    /// The requester may choose a duration up to `max_duration_minutes`.
    pub duration_changeable: bool,
    pub default_duration_minutes: i64,
    pub max_duration_minutes: i64,
    /// No approval needed.
    pub auto_approve: bool,
    /// Asked in order; level 2 only after level 1 approved.
    pub approval_levels: Vec<ApprovalLevel>,
    pub review_required: bool,
    pub reviewer_user_ids: Vec<String>,
    pub reviewer_group_ids: Vec<String>,
    pub account_mode: AccountMode,
    pub directory_account_ids: Vec<String>,
    pub recording: bool,
    pub connection_policy: Option<String>,
    pub idle_timeout_minutes: i64,
    pub simultaneous_access: bool,
    pub change_password_after_checkin: bool,
    /// Channel policy: allow direct TCP/IP forwarding (`ssh -L`) in proxied SSH sessions.
    /// X11, agent and remote forwarding are always refused.
    pub port_forwarding: bool,
    /// Viewing or exporting a session's recording needs an approved request with a
    /// justification, decided by someone else (R-REQ-12).
    pub recording_view_approval: bool,
    /// Sessions under this policy (recordings, index entries, metadata) are deleted this many
    /// days after they end, unless under legal hold; 0 keeps them (R-SES-13).
    pub recording_retention_days: i64,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            ticket_required: false,
            reason_required: false,
            comment_required: false,
            duration_changeable: true,
            default_duration_minutes: 120,
            max_duration_minutes: 8 * 60,
            auto_approve: false,
            approval_levels: vec![],
            review_required: false,
            reviewer_user_ids: vec![],
            reviewer_group_ids: vec![],
            account_mode: AccountMode::Vaulted,
            directory_account_ids: vec![],
            recording: true,
            connection_policy: None,
            idle_timeout_minutes: 10,
            simultaneous_access: false,
            change_password_after_checkin: true,
            port_forwarding: false,
            recording_view_approval: false,
            recording_retention_days: 0,
        }
    }
}

/// The longest access period a policy may grant: 31 days.
pub const MAX_DURATION_MINUTES: i64 = 31 * 24 * 60;

impl PolicySettings {
    /// Checks the settings hang together; errors name the field.
    pub fn validate(&self) -> Result<(), crate::ValidationError> {
        use crate::ValidationError as E;
        if !(1..=MAX_DURATION_MINUTES).contains(&self.max_duration_minutes) {
            return Err(E::new("max_duration_minutes", format!("must be 1 to {MAX_DURATION_MINUTES}")));
        }
        if !(1..=self.max_duration_minutes).contains(&self.default_duration_minutes) {
            return Err(E::new("default_duration_minutes", "must be at least 1 and at most max_duration_minutes"));
        }
        if !self.auto_approve && self.approval_levels.is_empty() {
            return Err(E::new("approval_levels", "name at least one approval level, or set auto_approve"));
        }
        if self.auto_approve && !self.approval_levels.is_empty() {
            return Err(E::new("approval_levels", "must be empty when auto_approve is set"));
        }
        for (i, l) in self.approval_levels.iter().enumerate() {
            if l.required == 0 || l.required > 10 {
                return Err(E::new(format!("approval_levels[{i}].required"), "must be 1 to 10"));
            }
            if l.user_ids.is_empty() && l.group_ids.is_empty() {
                return Err(E::new(format!("approval_levels[{i}]"), "name approvers (users or groups)"));
            }
        }
        if self.review_required && self.reviewer_user_ids.is_empty() && self.reviewer_group_ids.is_empty() {
            return Err(E::new("reviewer_user_ids", "name reviewers when review is required"));
        }
        if self.account_mode == AccountMode::DirectoryAccount && self.directory_account_ids.is_empty() {
            return Err(E::new(
                "directory_account_ids",
                "name the directory accounts for account mode directory_account",
            ));
        }
        if !(0..=36_500).contains(&self.recording_retention_days) {
            return Err(E::new("recording_retention_days", "must be 0 (keep) to 36500 days"));
        }
        if !(1..=24 * 60).contains(&self.idle_timeout_minutes) {
            return Err(E::new("idle_timeout_minutes", "must be 1 to 1440"));
        }
        Ok(())
    }
}
