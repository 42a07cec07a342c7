//! The access request state machine (R-REQ-3, R-REQ-4, R-REQ-6, R-REQ-7). Pure: the caller
//! passes the current state, the action, who acts and the time; the functions answer with
//! the next state or why the action is refused.
//!
//! | state            | actions                                                   |
//! |------------------|-----------------------------------------------------------|
//! | pending_approval | approve, deny (approvers); cancel (requester); revoke     |
//! | approved         | cancel (requester); revoke; activate (system, at start)   |
//! | available        | check_in (requester); revoke; expire (system, at end)     |
//! | pending_review   | review (reviewers)                                        |
//! | revoked, denied  | resubmit, remove (requester)                              |
//! | expired          | remove (requester)                                        |
//! | complete, reviewed, canceled | remove (requester)                            |
//!
//! When access ends (check-in, expiry, revocation) a request whose policy requires review
//! goes to `pending_review`; otherwise check-in leads to `complete`, expiry to `expired`,
//! revocation to `revoked`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    PendingApproval,
    Approved,
    Available,
    Complete,
    PendingReview,
    Reviewed,
    Revoked,
    Expired,
    Denied,
    Canceled,
}

impl RequestState {
    pub const ALL: [RequestState; 10] = [
        RequestState::PendingApproval,
        RequestState::Approved,
        RequestState::Available,
        RequestState::Complete,
        RequestState::PendingReview,
        RequestState::Reviewed,
        RequestState::Revoked,
        RequestState::Expired,
        RequestState::Denied,
        RequestState::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::PendingApproval => "pending_approval",
            RequestState::Approved => "approved",
            RequestState::Available => "available",
            RequestState::Complete => "complete",
            RequestState::PendingReview => "pending_review",
            RequestState::Reviewed => "reviewed",
            RequestState::Revoked => "revoked",
            RequestState::Expired => "expired",
            RequestState::Denied => "denied",
            RequestState::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<RequestState> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// States in which the request holds (or will hold) the account for its period.
    pub fn holds_account(self) -> bool {
        matches!(self, RequestState::Approved | RequestState::Available)
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Approve,
    Deny,
    Cancel,
    Revoke,
    Activate,
    CheckIn,
    Expire,
    Review,
    Resubmit,
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Deny => "deny",
            Action::Cancel => "cancel",
            Action::Revoke => "revoke",
            Action::Activate => "activate",
            Action::CheckIn => "check_in",
            Action::Expire => "expire",
            Action::Review => "review",
            Action::Resubmit => "resubmit",
            Action::Remove => "remove",
        }
    }
}

/// Whether `action` may be taken in `state` (who may take it is checked separately).
pub fn allowed(state: RequestState, action: Action) -> bool {
    use Action as A;
    use RequestState as S;
    match action {
        A::Approve | A::Deny => state == S::PendingApproval,
        A::Cancel => matches!(state, S::PendingApproval | S::Approved),
        A::Revoke => matches!(state, S::PendingApproval | S::Approved | S::Available),
        A::Activate => state == S::Approved,
        A::CheckIn => state == S::Available,
        A::Expire => matches!(state, S::Approved | S::Available),
        A::Review => state == S::PendingReview,
        A::Resubmit => matches!(state, S::Revoked | S::Denied),
        A::Remove => matches!(state, S::Revoked | S::Expired | S::Denied | S::Complete | S::Reviewed | S::Canceled),
    }
}

/// An action refused in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a request that is {}", action.as_str().replace('_', " "), state.as_str().replace('_', " "))]
pub struct NotAllowed {
    pub state: RequestState,
    pub action: Action,
}

pub fn check(state: RequestState, action: Action) -> Result<(), NotAllowed> {
    if allowed(state, action) {
        Ok(())
    } else {
        Err(NotAllowed { state, action })
    }
}

/// Where a request goes once approved (fully, or automatically): `available` if its start has
/// come, else `approved`.
pub fn on_approved(start_at: i64, now: i64) -> RequestState {
    if start_at <= now {
        RequestState::Available
    } else {
        RequestState::Approved
    }
}

/// How access ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    CheckIn,
    Expiry,
    Revocation,
}

impl EndCause {
    pub fn as_str(self) -> &'static str {
        match self {
            EndCause::CheckIn => "check_in",
            EndCause::Expiry => "expiry",
            EndCause::Revocation => "revocation",
        }
    }

    pub fn parse(s: &str) -> Option<EndCause> {
        [EndCause::CheckIn, EndCause::Expiry, EndCause::Revocation].into_iter().find(|c| c.as_str() == s)
    }

    /// The cause as a past participle: "checked in", "expired", "revoked".
    pub fn past(self) -> &'static str {
        match self {
            EndCause::CheckIn => "checked in",
            EndCause::Expiry => "expired",
            EndCause::Revocation => "revoked",
        }
    }

    /// The cause of an action, for the actions that end access.
    pub fn of(action: Action) -> Option<EndCause> {
        match action {
            Action::CheckIn => Some(EndCause::CheckIn),
            Action::Expire => Some(EndCause::Expiry),
            Action::Revoke => Some(EndCause::Revocation),
            _ => None,
        }
    }
}

/// Whether `action` may be taken on a request in `state` whose access ended by `ended`. A
/// used request that was revoked or expired under a policy requiring review waits for review,
/// yet stays revoked or expired for its requester (R-REQ-3): a revoked one may be resubmitted,
/// and either may be removed from their list (the review still happens).
pub fn allowed_after(state: RequestState, ended: Option<EndCause>, action: Action) -> bool {
    use RequestState as S;
    allowed(state, action)
        || match (action, ended) {
            (Action::Resubmit, Some(EndCause::Revocation)) => matches!(state, S::PendingReview | S::Reviewed),
            (Action::Remove, Some(EndCause::Revocation | EndCause::Expiry)) => state == S::PendingReview,
            _ => false,
        }
}

pub fn check_after(state: RequestState, ended: Option<EndCause>, action: Action) -> Result<(), NotAllowed> {
    if allowed_after(state, ended, action) {
        Ok(())
    } else {
        Err(NotAllowed { state, action })
    }
}

/// The state after access ends. Review applies only to requests whose access was used, i.e.
/// that were `available`; a request revoked or expired before its start needs no review.
pub fn on_end(from: RequestState, cause: EndCause, review_required: bool) -> RequestState {
    if review_required && from == RequestState::Available {
        return RequestState::PendingReview;
    }
    match cause {
        EndCause::CheckIn => RequestState::Complete,
        EndCause::Expiry => RequestState::Expired,
        EndCause::Revocation => RequestState::Revoked,
    }
}

/// The outcome of one approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// More approvals are needed at this level.
    StillPending { level: usize, remaining: u32 },
    /// This level is done; the next level's approvers are asked now.
    NextLevel { level: usize },
    /// Every level approved.
    Approved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("you cannot approve or deny your own request")]
    OwnRequest,
    #[error("you are not an approver of this request at its current level")]
    NotAnApprover,
    #[error("you have already approved this request")]
    AlreadyApproved,
}

/// Decides an approval at `level` (0-based) of `required_per_level`, given how many distinct
/// approvals the level already has.
pub fn approve(
    required_per_level: &[u32],
    level: usize,
    approvals_so_far: u32,
    approver_is_requester: bool,
    approver_is_eligible: bool,
    approver_already_approved: bool,
) -> Result<ApprovalOutcome, ApprovalError> {
    if approver_is_requester {
        return Err(ApprovalError::OwnRequest);
    }
    if !approver_is_eligible {
        return Err(ApprovalError::NotAnApprover);
    }
    if approver_already_approved {
        return Err(ApprovalError::AlreadyApproved);
    }
    let required = required_per_level.get(level).copied().unwrap_or(1);
    let have = approvals_so_far + 1;
    if have < required {
        Ok(ApprovalOutcome::StillPending { level, remaining: required - have })
    } else if level + 1 < required_per_level.len() {
        Ok(ApprovalOutcome::NextLevel { level: level + 1 })
    } else {
        Ok(ApprovalOutcome::Approved)
    }
}

/// Validates and computes the access period: `start` (defaults to now; not in the past by
/// more than a minute), the duration (the policy's default, or the requester's choice up to
/// the maximum when the policy allows it). Returns `(start, end)` in microseconds.
pub fn period(
    now: i64,
    start: Option<i64>,
    requested_minutes: Option<i64>,
    default_minutes: i64,
    max_minutes: i64,
    changeable: bool,
) -> Result<(i64, i64), crate::ValidationError> {
    use crate::ValidationError as E;
    let start = start.unwrap_or(now);
    if start < now - 60_000_000 {
        return Err(E::new("start_at", "must not be in the past"));
    }
    if start > now + 366 * 24 * 3600 * 1_000_000 {
        return Err(E::new("start_at", "must be within a year"));
    }
    let minutes = match requested_minutes {
        None => default_minutes,
        Some(m) if m < 1 => return Err(E::new("duration_minutes", "must be at least 1")),
        Some(m) if !changeable && m != default_minutes => {
            return Err(E::new(
                "duration_minutes",
                format!("the policy fixes the duration at {default_minutes} minutes"),
            ))
        }
        Some(m) if m > max_minutes => {
            return Err(E::new("duration_minutes", format!("must be at most {max_minutes} minutes")))
        }
        Some(m) => m,
    };
    Ok((start, start + minutes * 60_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RequestState as S;

    #[test]
    fn state_action_table() {
        let table: Vec<(S, Vec<Action>)> = S::ALL
            .iter()
            .map(|s| {
                let acts = [
                    Action::Approve,
                    Action::Deny,
                    Action::Cancel,
                    Action::Revoke,
                    Action::Activate,
                    Action::CheckIn,
                    Action::Expire,
                    Action::Review,
                    Action::Resubmit,
                    Action::Remove,
                ]
                .into_iter()
                .filter(|a| allowed(*s, *a))
                .collect();
                (*s, acts)
            })
            .collect();
        let text: Vec<String> = table
            .iter()
            .map(|(s, a)| format!("{}: {}", s, a.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")))
            .collect();
        assert_eq!(
            text,
            [
                "pending_approval: approve,deny,cancel,revoke",
                "approved: cancel,revoke,activate,expire",
                "available: revoke,check_in,expire",
                "complete: remove",
                "pending_review: review",
                "reviewed: remove",
                "revoked: resubmit,remove",
                "expired: remove",
                "denied: resubmit,remove",
                "canceled: remove",
            ]
        );
        assert_eq!(
            check(S::Denied, Action::Approve).unwrap_err().to_string(),
            "cannot approve a request that is denied"
        );
    }

    #[test]
    fn approvals_by_level() {
        // Two levels: two approvals, then one.
        let levels = [2, 1];
        assert_eq!(
            approve(&levels, 0, 0, false, true, false),
            Ok(ApprovalOutcome::StillPending { level: 0, remaining: 1 })
        );
        assert_eq!(approve(&levels, 0, 1, false, true, false), Ok(ApprovalOutcome::NextLevel { level: 1 }));
        assert_eq!(approve(&levels, 1, 0, false, true, false), Ok(ApprovalOutcome::Approved));
        assert_eq!(approve(&levels, 0, 0, true, true, false), Err(ApprovalError::OwnRequest));
        assert_eq!(approve(&levels, 0, 0, false, false, false), Err(ApprovalError::NotAnApprover));
        assert_eq!(approve(&levels, 0, 1, false, true, true), Err(ApprovalError::AlreadyApproved));
    }

    #[test]
    fn ends_and_review() {
        assert_eq!(on_end(S::Available, EndCause::CheckIn, false), S::Complete);
        assert_eq!(on_end(S::Available, EndCause::CheckIn, true), S::PendingReview);
        assert_eq!(on_end(S::Available, EndCause::Expiry, false), S::Expired);
        assert_eq!(on_end(S::Approved, EndCause::Revocation, true), S::Revoked, "never used: nothing to review");
        // A used request revoked under review stays resubmittable and removable; checked in, not.
        let revoked = Some(EndCause::Revocation);
        assert!(allowed_after(S::PendingReview, revoked, Action::Resubmit));
        assert!(allowed_after(S::Reviewed, revoked, Action::Resubmit));
        assert!(allowed_after(S::PendingReview, Some(EndCause::Expiry), Action::Remove));
        assert!(!allowed_after(S::PendingReview, Some(EndCause::Expiry), Action::Resubmit));
        assert!(!allowed_after(S::PendingReview, Some(EndCause::CheckIn), Action::Remove));
        assert!(!allowed_after(S::PendingReview, Some(EndCause::CheckIn), Action::Resubmit));
        assert_eq!(on_approved(10, 5), S::Approved);
        assert_eq!(on_approved(5, 5), S::Available);
    }

    #[test]
    fn periods() {
        let m = 60_000_000;
        assert_eq!(period(0, None, None, 60, 120, true), Ok((0, 60 * m)));
        assert_eq!(period(0, Some(10 * m), Some(90), 60, 120, true), Ok((10 * m, 100 * m)));
        assert_eq!(period(0, None, Some(121), 60, 120, true).unwrap_err().field, "duration_minutes");
        assert_eq!(period(0, None, Some(90), 60, 120, false).unwrap_err().field, "duration_minutes");
        assert_eq!(period(0, None, Some(0), 60, 120, true).unwrap_err().field, "duration_minutes");
        assert_eq!(period(100 * m, Some(0), None, 60, 120, true).unwrap_err().field, "start_at");
    }
}
