//! Policy questions as use cases: which policy would govern a request, and why every other
//! one was eliminated (R-POL-5), answered from the policy snapshot.

use jiff::tz::TimeZone;
use portcullis_core::policy::AccessType;

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::policy_cache::Ask;
use crate::state::App;

/// One candidate policy and its verdict.
pub struct Candidate {
    pub policy_id: String,
    pub policy_name: String,
    pub entitlement_id: String,
    pub entitlement_name: String,
    /// `governs`, or the code of the filter that eliminated it.
    pub outcome: &'static str,
    pub reason: &'static str,
}

pub struct Explanation {
    pub governing_policy_id: Option<String>,
    pub governing_policy_name: Option<String>,
    /// The requester's zone, in which windows were evaluated.
    pub time_zone: String,
    pub at: i64,
    /// `at` as the requester's wall-clock time, e.g. `2026-12-01T09:00:00+01:00[Europe/Paris]`.
    pub at_local: String,
    /// The policies whose scope covers the account, best-ranked first.
    pub candidates: Vec<Candidate>,
    /// How many other policies there are (their scope does not cover the account).
    pub out_of_scope: usize,
}

/// Which policy would govern a request by this user for this account, access type, time and
/// emergency flag. The time is RFC 3339, or a local date-time in the requester's zone (as
/// they would type it when requesting); now when absent.
pub async fn explain(
    state: &App,
    user_id: &str,
    account_id: &str,
    access_type: AccessType,
    at: Option<&str>,
    emergency: bool,
) -> AppResult<Explanation> {
    let rules = state.policies.get(&state.store).await?;
    let zone = rules.zone_of(user_id).ok_or_else(|| AppError::invalid("user_id", "no such user"))?;
    if rules.asset_of(account_id).is_none() {
        return Err(AppError::invalid("account_id", "no such account"));
    }
    let tz = TimeZone::get(zone).map_err(|_| AppError::invalid("user_id", "the user's time zone is not valid"))?;
    let at = match at {
        Some(t) => crate::requests::parse_local_or_ts("at", t, &tz)?,
        None => state.now(),
    };
    let at_local =
        jiff::Timestamp::from_microsecond(at).map(|t| t.to_zoned(tz.clone()).to_string()).unwrap_or_default();
    let ask = Ask { user_id, account_id, access_type, at, emergency };
    // The policies that cover the account, from the scope index; the others are counted:
    // listing thousands of "not in scope" lines helps no one (R-POL-5 asks why the others
    // were eliminated, and for them the answer is one line).
    let r = rules.resolve(&ask, &tz)?;
    let out_of_scope = rules.policies.len().saturating_sub(r.verdicts.len());
    let candidates = r
        .verdicts
        .into_iter()
        .map(|v| Candidate {
            policy_name: rules.policy(&v.policy_id).map(|p| p.name.clone()).unwrap_or_default(),
            entitlement_name: rules.entitlement_names.get(&v.entitlement_id).cloned().unwrap_or_default(),
            outcome: v.eliminated.map_or("governs", |e| e.code()),
            reason: v.eliminated.map_or("this policy governs the request", |e| e.describe()),
            policy_id: v.policy_id,
            entitlement_id: v.entitlement_id,
        })
        .collect();
    let governing_policy_name = r.governing.as_deref().and_then(|id| rules.policy(id)).map(|p| p.name.clone());
    Ok(Explanation {
        governing_policy_id: r.governing,
        governing_policy_name,
        time_zone: zone.to_owned(),
        at,
        at_local,
        candidates,
        out_of_scope,
    })
}

/// Confirms an entitlement (`"entitlement"`) or a policy (`"policy"`) as it is, so that those
/// who changed it get access through it again: by a Security Policy Administrator who made
/// none of the changes (a change that benefits its author needs a second administrator).
pub async fn confirm(state: &App, caller: &Caller, object_type: &'static str, id: &str) -> AppResult<Vec<String>> {
    use portcullis_core::role::Role;
    if !caller.has(Role::SecurityPolicyAdmin) {
        return Err(AppError::forbidden("confirming entitlements and policies is for Security Policy Administrators"));
    }
    let changers = if object_type == "entitlement" {
        state.store.entitlement(id).await?.unconfirmed_by
    } else {
        state.store.policy(id).await?.unconfirmed_by
    };
    if changers.is_empty() {
        return Err(AppError::conflict("already_confirmed", format!("this {object_type} has no unconfirmed changes")));
    }
    if changers.contains(&caller.user.id) {
        return Err(AppError::refused(
            "own_change",
            format!(
                "you changed this {object_type} yourself; another Security Policy Administrator must confirm it \
                 (until then it grants nothing to those who changed it)"
            ),
        ));
    }
    Ok(state.store.confirm_rule(&caller.actor(), state.now(), object_type, id).await?)
}
