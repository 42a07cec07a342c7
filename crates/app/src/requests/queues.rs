//! The work queues: each person's list of what waits for them, filtered and paged, with the
//! names they read (requester, account, asset, policy) instead of ids.
//!
//! - `mine`: the caller's requests in every state (Revoked and Expired included);
//! - `approvals`: waiting for the caller's approval at their current level;
//! - `approved`: requests the caller approved that are approved or in use, with their live
//!   sessions (so an approver can revoke or terminate from their own list);
//! - `reviews`: waiting for the caller's review;
//! - `all`: everyone's (Security Policy Administrators, Auditors, Appliance Administrators).
//!
//! Nobody's own requests appear in their approval or review queue.

use portcullis_core::request::RequestState;
use portcullis_store::{RequestNames, RequestQuery, SessionQuery};

use super::{pending_count, RequestView};
use crate::access;
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Mine,
    Approvals,
    Approved,
    Reviews,
    All,
}

impl Queue {
    pub const NAMES: &'static [&'static str] = &["mine", "approvals", "approved", "reviews", "all"];

    pub fn parse(s: &str) -> Option<Queue> {
        Some(match s {
            "mine" => Queue::Mine,
            "approvals" => Queue::Approvals,
            "approved" => Queue::Approved,
            "reviews" => Queue::Reviews,
            "all" => Queue::All,
            _ => return None,
        })
    }
}

/// Filters that narrow any queue. Objects are named by id or by name: the requester by user
/// name, the account as ACCOUNT@ASSET (or its name alone), the asset by name. An unknown name
/// matches nothing (and so tells nothing about what exists).
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub state: Option<RequestState>,
    pub account: Option<String>,
    pub asset: Option<String>,
    pub requester: Option<String>,
    pub created_from: Option<i64>,
    pub created_before: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// One request in a queue.
pub struct QueueItem {
    pub view: RequestView,
    pub names: RequestNames,
    /// Live sessions of the request (the `approved` queue only).
    pub live_sessions: Vec<String>,
}

/// A page of the caller's queue, newest first.
pub async fn queue(state: &App, caller: &Caller, queue: Queue, f: QueueFilter) -> AppResult<Vec<QueueItem>> {
    if !(1..=1000).contains(&f.limit) {
        return Err(AppError::invalid("limit", "must be 1 to 1000"));
    }
    if f.offset < 0 {
        return Err(AppError::invalid("offset", "must be 0 or more"));
    }
    let rules = state.policies.get(&state.store).await?;
    let me = &caller.user.id;
    let mut q = RequestQuery {
        states: f.state.into_iter().collect(),
        created_from: f.created_from,
        created_before: f.created_before,
        limit: f.limit,
        offset: f.offset,
        ..Default::default()
    };
    let is_id = |s: &str| uuid::Uuid::parse_str(s).is_ok();
    match f.requester.as_deref() {
        Some(r) if is_id(r) => q.requester_id = Some(r.to_owned()),
        Some(r) => q.requester_name = Some(r.to_owned()),
        None => {}
    }
    match f.account.as_deref() {
        Some(a) if is_id(a) => q.account_id = Some(a.to_owned()),
        Some(a) => match a.rsplit_once('@') {
            Some((account, asset)) => {
                q.account_name = Some(account.to_owned());
                q.asset_name = Some(asset.to_owned());
            }
            None => q.account_name = Some(a.to_owned()),
        },
        None => {}
    }
    match f.asset.as_deref() {
        Some(a) if is_id(a) => q.asset_id = Some(a.to_owned()),
        Some(a) => q.asset_name = Some(a.to_owned()),
        None => {}
    }
    let only = |q: &mut RequestQuery, s: RequestState| {
        if q.states.is_empty() || q.states.contains(&s) {
            q.states = vec![s];
            true
        } else {
            false
        }
    };
    match queue {
        Queue::Mine => {
            if q.requester_id.as_ref().is_some_and(|r| r != me)
                || q.requester_name.as_ref().is_some_and(|r| r != &caller.user.username)
            {
                return Err(AppError::invalid(
                    "requester",
                    "the queue 'mine' holds only your own requests; filter another queue by requester",
                ));
            }
            q.requester_id = Some(me.clone());
            q.hide_removed = true;
        }
        Queue::Approvals => {
            if !only(&mut q, RequestState::PendingApproval) {
                return Ok(vec![]);
            }
            q.not_requester_id = Some(me.clone());
            let mine = rules.approvals.iter().filter(|(_, c)| c.approvers_per_level.iter().any(|l| l.contains(me)));
            q.policy_ids = Some(mine.map(|(id, _)| id.clone()).collect());
        }
        Queue::Approved => {
            if q.states.is_empty() {
                q.states = vec![RequestState::Approved, RequestState::Available];
            }
            q.approved_by = Some(me.clone());
        }
        Queue::Reviews => {
            if !only(&mut q, RequestState::PendingReview) {
                return Ok(vec![]);
            }
            q.not_requester_id = Some(me.clone());
            let mine = rules.reviewers.iter().filter(|(_, r)| r.contains(me));
            q.policy_ids = Some(mine.map(|(id, _)| id.clone()).collect());
        }
        Queue::All => {
            if !access::sees_everything(caller) {
                return Err(AppError::forbidden(
                    "only Security Policy Administrators, Auditors and Appliance Administrators may list all requests; \
                     use the queues mine, approvals, approved or reviews",
                ));
            }
        }
    }
    let page = state.store.request_page(&q).await?;
    // One query for the approvals of the whole page, not one per request.
    let pending: Vec<String> =
        page.iter().filter(|(r, _)| r.state == RequestState::PendingApproval).map(|(r, _)| r.id.clone()).collect();
    let mut approvals_of = state.store.approvals_of(&pending).await?;
    let mut out = Vec::with_capacity(page.len());
    for (r, names) in page {
        let ctx = rules.approval(&r.policy_id);
        let approvals = approvals_of.remove(&r.id).unwrap_or_default();
        if queue == Queue::Approvals {
            // Waiting for *me*: I may approve at the current level and have not decided yet.
            let level = r.current_level as usize;
            let eligible = ctx.approvers_per_level.get(level).is_some_and(|l| l.contains(me));
            if !eligible || approvals.iter().any(|a| &a.approver_id == me) {
                continue;
            }
        }
        let live_sessions = if queue == Queue::Approved {
            let sq = SessionQuery {
                live: Some(true),
                request_id: Some(r.id.clone()),
                user_id: None,
                node: None,
                limit: 100,
            };
            state.store.sessions(&sq).await?.into_iter().map(|s| s.id).collect()
        } else {
            vec![]
        };
        let pending_approvals = pending_count(&r, &ctx, &approvals);
        out.push(QueueItem { view: RequestView { request: r, pending_approvals }, names, live_sessions });
    }
    Ok(out)
}

/// The names of these requests' requester, account, asset and policy, in the same order.
pub async fn names_of(state: &App, ids: &[String]) -> AppResult<Vec<RequestNames>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let q = RequestQuery { ids: Some(ids.to_vec()), limit: ids.len() as i64, ..Default::default() };
    let page = state.store.request_page(&q).await?;
    Ok(ids
        .iter()
        .map(|id| page.iter().find(|(r, _)| &r.id == id).map(|(_, n)| n.clone()).unwrap_or_default())
        .collect())
}
