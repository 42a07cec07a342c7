//! Access requests (R-REQ-1..8) as use cases: create (one outcome per account), decide
//! (approve, deny, bulk), act (cancel, revoke, check in, review, remove), resubmit, the lists
//! and explain. Who may do what to a request is decided in [`crate::access`].

mod create;
mod decide;
mod options;
mod queues;

pub use create::{create, parse_local_or_ts, resubmit, AccountChoice, AccountOutcome, Batch, NewRequests};
pub use decide::{act, bulk_decide, decide, BulkOutcome, Decision};
pub use options::{options, OptionFilter, Options, RequestOption, Terms};
pub use queues::{names_of, queue, Queue, QueueFilter, QueueItem};

use portcullis_core::policy::AccessType;
use portcullis_core::request::RequestState;
use portcullis_store::{AccessRequest, Approval, ApprovalContext, HistoryEntry};

use crate::access::{self, Relation};
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::policy_cache::PolicySnapshot;
use crate::state::App;

/// The most assets one request may name (R-REQ-1).
pub const MAX_ASSETS: usize = 50;
pub const COMMENT_MAX: usize = 255;

/// A request as people see it: with the approvals still missing, for pending ones.
#[derive(Debug, Clone)]
pub struct RequestView {
    pub request: AccessRequest,
    /// Approvals still needed (this level and the ones after it), for pending requests.
    pub pending_approvals: Option<u32>,
}

impl RequestView {
    /// "Pending 1 approval", or the state in words.
    pub fn status_text(&self) -> String {
        use portcullis_core::request::EndCause;
        match (self.request.state, self.pending_approvals, self.request.ended_by) {
            (RequestState::PendingApproval, Some(n), _) => {
                format!("Pending {n} approval{}", if n == 1 { "" } else { "s" })
            }
            // Used, then revoked or expired: waiting for review, but not "checked in".
            (
                s @ (RequestState::PendingReview | RequestState::Reviewed),
                _,
                Some(c @ (EndCause::Revocation | EndCause::Expiry)),
            ) => {
                format!("{} ({})", s.as_str().replace('_', " "), c.past())
            }
            (s, _, _) => s.as_str().replace('_', " "),
        }
    }
}

/// A request with its approvals and whole history.
pub struct RequestDetail {
    pub view: RequestView,
    /// Who the caller is to the request (what they may do with it).
    pub relation: Relation,
    pub approvals: Vec<Approval>,
    pub history: Vec<HistoryEntry>,
}

pub fn parse_access_type(field: &str, s: &str) -> AppResult<AccessType> {
    AccessType::parse(s).ok_or_else(|| AppError::invalid(field, "must be password, ssh_key, ssh, rdp or telnet"))
}

pub(crate) fn check_comment(c: Option<&str>) -> AppResult<()> {
    if let Some(c) = c {
        if c.chars().count() > COMMENT_MAX {
            return Err(AppError::invalid("comment", format!("must be at most {COMMENT_MAX} characters")));
        }
        portcullis_core::validate::description("comment", c)?;
    }
    Ok(())
}

/// The refusal for using a request that is not available: names its state and what waits.
pub(crate) fn not_available(state: RequestState, what: &str) -> AppError {
    AppError::conflict(
        portcullis_store::state_code(state),
        format!("the request is {}; {what} only while it is available", state.as_str().replace('_', " ")),
    )
}

/// Approvals still needed: the rest of the current level and every later level.
fn pending_count(r: &AccessRequest, ctx: &ApprovalContext, approvals: &[Approval]) -> Option<u32> {
    if r.state != RequestState::PendingApproval {
        return None;
    }
    let have = approvals.iter().filter(|a| a.level == r.current_level && a.decision == "approve").count() as u32;
    let level = r.current_level as usize;
    let required = ctx.required_per_level.get(level).copied().unwrap_or(1);
    let later: u32 = ctx.required_per_level.iter().skip(level + 1).sum();
    Some(required.saturating_sub(have) + later)
}

pub(crate) async fn view_with(state: &App, rules: &PolicySnapshot, r: AccessRequest) -> AppResult<RequestView> {
    let pending_approvals = if r.state == RequestState::PendingApproval && rules.policy(&r.policy_id).is_some() {
        let approvals = state.store.request_approvals(&r.id).await?;
        pending_count(&r, &rules.approval(&r.policy_id), &approvals)
    } else {
        None
    };
    Ok(RequestView { request: r, pending_approvals })
}

/// A request the caller may see, with their relation to it; "not found" otherwise.
pub async fn show(state: &App, caller: &Caller, id: &str) -> AppResult<RequestDetail> {
    let rules = state.policies.get(&state.store).await?;
    let (r, relation) = access::visible_request(state, &rules, caller, id).await?;
    let approvals = state.store.request_approvals(&r.id).await?;
    let history = state.store.request_history(&r.id).await?;
    let pending_approvals = pending_count(&r, &rules.approval(&r.policy_id), &approvals);
    Ok(RequestDetail { view: RequestView { request: r, pending_approvals }, relation, approvals, history })
}

/// Requests waiting for the caller's approval at their current level (the `approvals`
/// queue, unfiltered).
pub async fn waiting_for_approval(state: &App, caller: &Caller) -> AppResult<Vec<RequestView>> {
    let all = QueueFilter { limit: 1000, ..QueueFilter::default() };
    Ok(queue(state, caller, Queue::Approvals, all).await?.into_iter().map(|i| i.view).collect())
}

/// How many of these accounts are in use at a time (R-REQ-8): the ids in use.
pub async fn accounts_in_use(state: &App, account_ids: &[String], at: i64) -> AppResult<(usize, Vec<String>)> {
    if account_ids.len() > 1000 {
        return Err(AppError::invalid("account_ids", "at most 1000 accounts"));
    }
    let mut ids = account_ids.to_vec();
    ids.sort();
    ids.dedup();
    let in_use = state.store.accounts_in_use(&ids, at).await?;
    Ok((ids.len(), in_use))
}

/// The caller's relation to a request they may see.
pub async fn relation_to(state: &App, caller: &Caller, id: &str) -> AppResult<(AccessRequest, Relation)> {
    let rules = state.policies.get(&state.store).await?;
    access::visible_request(state, &rules, caller, id).await
}
