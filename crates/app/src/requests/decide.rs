//! Deciding on requests (approve, deny, bulk) and the other actions (cancel, revoke, check
//! in, review, remove). Each transition is published to the event stream, so live sessions
//! of a revoked or checked-in request end at once.

use portcullis_core::request::Action;

use super::{check_comment, view_with, RequestView};
use crate::access;
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// An approver's decision, with an optional comment and changed access window.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub approve: bool,
    pub comment: Option<String>,
    /// Microseconds; either may be absent (keeps the request's).
    pub start_at: Option<i64>,
    pub end_at: Option<i64>,
}

/// Approves (at the current level) or denies a pending request. Nobody approves their own.
pub async fn decide(state: &App, caller: &Caller, id: &str, d: Decision) -> AppResult<RequestView> {
    check_comment(d.comment.as_deref())?;
    let rules = state.policies.get(&state.store).await?;
    let (r, _) = access::visible_request(state, &rules, caller, id).await?;
    let policy = rules.policy(&r.policy_id).ok_or_else(|| AppError::not_found("policy"))?;
    let ctx = rules.approval(&r.policy_id);
    let window = match (d.start_at, d.end_at) {
        (None, None) => None,
        (s, e) => {
            let s = s.unwrap_or(r.start_at);
            let e = e.unwrap_or(r.end_at);
            if e <= s {
                return Err(AppError::invalid("end_at", "must be after start_at"));
            }
            if (e - s) / 60_000_000 > policy.settings.max_duration_minutes {
                return Err(AppError::invalid(
                    "end_at",
                    format!("the window may be at most {} minutes", policy.settings.max_duration_minutes),
                ));
            }
            Some((s, e))
        }
    };
    let eligible = |level: usize| access::may_approve_at(&rules, caller, &r.policy_id, level);
    let (updated, _) = state
        .store
        .decide_request(
            &caller.actor(),
            state.now(),
            id,
            d.approve,
            &ctx,
            &eligible,
            d.comment.as_deref(),
            window,
            policy.settings.simultaneous_access,
        )
        .await?;
    if updated.state != r.state {
        state.publish([portcullis_store::Transition {
            request_id: updated.id.clone(),
            from: r.state,
            to: updated.state,
            ended_by: updated.ended_by,
        }]);
    }
    view_with(state, &rules, updated).await
}

/// Cancel, revoke, check in, review or remove.
pub async fn act(
    state: &App,
    caller: &Caller,
    id: &str,
    action: Action,
    comment: Option<&str>,
) -> AppResult<RequestView> {
    check_comment(comment)?;
    let rules = state.policies.get(&state.store).await?;
    let (r, rel) = access::visible_request(state, &rules, caller, id).await?;
    access::may_act(&rel, action)?;
    let (updated, transition) =
        state.store.act_on_request(&caller.actor(), state.now(), &r.id, action, comment).await?;
    state.publish(transition);
    view_with(state, &rules, updated).await
}

/// The outcome of one request in a bulk decision.
pub struct BulkOutcome {
    pub id: String,
    pub result: AppResult<RequestView>,
}

/// Approves or denies many requests with one comment; one outcome per request.
pub async fn bulk_decide(
    state: &App,
    caller: &Caller,
    ids: Vec<String>,
    approve: bool,
    comment: Option<String>,
) -> AppResult<Vec<BulkOutcome>> {
    if ids.is_empty() || ids.len() > 100 {
        return Err(AppError::invalid("ids", "name 1 to 100 requests"));
    }
    check_comment(comment.as_deref())?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let d = Decision { approve, comment: comment.clone(), ..Default::default() };
        let result = decide(state, caller, &id, d).await;
        out.push(BulkOutcome { id, result });
    }
    Ok(out)
}
