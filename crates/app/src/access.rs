//! Who may do what: one function per question, whichever front end asks (HTTP, SSH, the
//! web UI). Roles come from the caller; relations to a request come from its policy (its
//! approvers and reviewers, groups expanded) in the policy snapshot.
//!
//! Requests and sessions are invisible ("not found") to anyone with no relation to them.

use portcullis_core::request::Action;
use portcullis_core::role::Role;
use portcullis_store::AccessRequest;

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::policy_cache::PolicySnapshot;
use crate::state::App;

/// Who the caller is to a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Relation {
    pub requester: bool,
    /// Named as an approver at any level of the request's policy.
    pub approver: bool,
    /// Named as a reviewer of the request's policy.
    pub reviewer: bool,
    /// Security Policy Administrator.
    pub admin: bool,
    /// Auditor or Appliance Administrator (read only).
    pub auditor: bool,
}

impl Relation {
    pub fn any(&self) -> bool {
        self.requester || self.approver || self.reviewer || self.admin || self.auditor
    }

    /// Roles alone, for objects without a request.
    pub fn of_roles(caller: &Caller) -> Relation {
        Relation {
            admin: caller.has(Role::SecurityPolicyAdmin),
            auditor: caller.has(Role::Auditor) || caller.has(Role::ApplianceAdmin),
            ..Relation::default()
        }
    }
}

/// The caller's relation to a request.
pub fn relation(rules: &PolicySnapshot, caller: &Caller, r: &AccessRequest) -> Relation {
    let me = &caller.user.id;
    let approver =
        rules.approvals.get(&r.policy_id).is_some_and(|c| c.approvers_per_level.iter().any(|l| l.contains(me)));
    let reviewer = rules.reviewers.get(&r.policy_id).is_some_and(|l| l.contains(me));
    Relation { requester: &r.requester_id == me, approver, reviewer, ..Relation::of_roles(caller) }
}

/// Loads a request the caller may see; "not found" (indistinguishable from a missing one)
/// otherwise.
pub async fn visible_request(
    state: &App,
    rules: &PolicySnapshot,
    caller: &Caller,
    id: &str,
) -> AppResult<(AccessRequest, Relation)> {
    let r = state.store.request(id).await?;
    let rel = relation(rules, caller, &r);
    if !rel.any() {
        return Err(AppError::not_found("request"));
    }
    Ok((r, rel))
}

/// May the caller take this action on the request? Approve and deny are decided per level by
/// [`may_approve_at`].
pub fn may_act(rel: &Relation, action: Action) -> AppResult<()> {
    if action == Action::Review && rel.requester {
        return Err(AppError::forbidden("nobody reviews their own request; another reviewer named by the policy must"));
    }
    let permitted = match action {
        Action::Cancel | Action::CheckIn | Action::Remove => rel.requester,
        Action::Revoke => rel.approver || rel.admin,
        Action::Review => rel.reviewer,
        _ => false,
    };
    if permitted {
        return Ok(());
    }
    let who = match action {
        Action::Cancel | Action::CheckIn | Action::Remove => "the requester",
        Action::Revoke => "an approver of the request or a Security Policy Administrator",
        _ => "a reviewer named by the policy",
    };
    Err(AppError::forbidden(format!("only {who} may {} this request", action.as_str().replace('_', " "))))
}

/// May the caller approve at this level of the request's policy?
pub fn may_approve_at(rules: &PolicySnapshot, caller: &Caller, policy_id: &str, level: usize) -> bool {
    rules
        .approvals
        .get(policy_id)
        .and_then(|c| c.approvers_per_level.get(level))
        .is_some_and(|l| l.contains(&caller.user.id))
}

/// May the caller end a live session of this request?
pub fn may_terminate(rel: &Relation) -> AppResult<()> {
    if rel.approver || rel.admin {
        return Ok(());
    }
    Err(AppError::forbidden(
        "only an approver of the session's request or a Security Policy Administrator may terminate it",
    ))
}

/// May the caller verify, replay or export a recording of this request's sessions?
pub fn may_replay(rel: &Relation) -> AppResult<()> {
    if rel.reviewer || rel.admin || rel.auditor {
        return Ok(());
    }
    Err(AppError::forbidden("recordings are for reviewers, Security Policy Administrators and Auditors"))
}

/// May the caller watch a live session of this request (read-only)? Those who may end it or
/// replay its recording.
pub fn may_watch(rel: &Relation) -> AppResult<()> {
    if rel.approver || rel.admin || rel.reviewer || rel.auditor {
        return Ok(());
    }
    Err(AppError::forbidden(
        "watching a session is for approvers and reviewers of its request, Security Policy Administrators and Auditors",
    ))
}

/// May the caller see everyone's requests and sessions?
pub fn sees_everything(caller: &Caller) -> bool {
    [Role::SecurityPolicyAdmin, Role::Auditor, Role::ApplianceAdmin].iter().any(|r| caller.has(*r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_act() {
        let requester = Relation { requester: true, ..Relation::default() };
        let reviewer = Relation { reviewer: true, ..Relation::default() };
        let both = Relation { requester: true, reviewer: true, ..Relation::default() };
        assert!(may_act(&requester, Action::CheckIn).is_ok());
        assert!(may_act(&reviewer, Action::CheckIn).is_err());
        assert!(may_act(&reviewer, Action::Review).is_ok());
        let own = may_act(&both, Action::Review).unwrap_err();
        assert!(own.message.contains("nobody reviews their own request"), "{}", own.message);
        assert!(may_act(&requester, Action::Revoke).is_err());
        assert!(may_act(&Relation { admin: true, ..Relation::default() }, Action::Revoke).is_ok());
        assert!(may_act(&Relation { auditor: true, ..Relation::default() }, Action::Revoke).is_err());
    }
}
