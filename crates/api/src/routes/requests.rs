//! Access requests (R-REQ-1..8): create for one or more accounts with one outcome each, list,
//! show with history, approve/deny by level, cancel, revoke, check in, review, remove.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use jiff::tz::TimeZone;
use portcullis_core::policy::{PolicySet, Question, Requester, Target};
use portcullis_core::request::{self, Action, RequestState};
use portcullis_core::role::Role;
use portcullis_core::schedule::{allowed_until, local_slot};
use portcullis_store::{AccessRequest, ApprovalContext, NewRequest, Policy, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, Authed, Caller};
use crate::dto::{parse_ts, ts, IdPath};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::policies::parse_access_type;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_requests, create_requests))
        .routes(routes!(get_request))
        .routes(routes!(approve_request))
        .routes(routes!(deny_request))
        .routes(routes!(cancel_request))
        .routes(routes!(revoke_request))
        .routes(routes!(checkin_request))
        .routes(routes!(review_request))
        .routes(routes!(remove_request))
        .routes(routes!(list_approvals))
        .routes(routes!(resubmit_request))
        .routes(routes!(bulk_decision))
        .routes(routes!(availability))
}

/// The most assets one request may name (R-REQ-1).
pub const MAX_ASSETS: usize = 50;
pub const COMMENT_MAX: usize = 255;

#[derive(Serialize, ToSchema)]
pub struct RequestDto {
    id: String,
    batch_id: String,
    requester_id: String,
    account_id: String,
    asset_id: String,
    access_type: String,
    policy_id: String,
    /// pending_approval, approved, available, complete, pending_review, reviewed, revoked,
    /// expired, denied or canceled.
    state: String,
    /// For pending requests: e.g. "Pending 1 approval".
    status_text: String,
    emergency: bool,
    start_at: String,
    end_at: String,
    ticket: Option<String>,
    reason_code: Option<String>,
    comment: Option<String>,
    /// 0-based approval level now asked.
    current_level: i64,
    review_required: bool,
    created_at: String,
    updated_at: String,
}

fn to_dto(r: &AccessRequest, pending: Option<u32>) -> RequestDto {
    let status_text = match (r.state, pending) {
        (RequestState::PendingApproval, Some(n)) => format!("Pending {n} approval{}", if n == 1 { "" } else { "s" }),
        (s, _) => s.as_str().replace('_', " "),
    };
    RequestDto {
        id: r.id.clone(),
        batch_id: r.batch_id.clone(),
        requester_id: r.requester_id.clone(),
        account_id: r.account_id.clone(),
        asset_id: r.asset_id.clone(),
        access_type: r.access_type.as_str().to_owned(),
        policy_id: r.policy_id.clone(),
        state: r.state.as_str().to_owned(),
        status_text,
        emergency: r.emergency,
        start_at: ts(r.start_at),
        end_at: ts(r.end_at),
        ticket: r.ticket.clone(),
        reason_code: r.reason_code.clone(),
        comment: r.comment.clone(),
        current_level: r.current_level,
        review_required: r.review_required,
        created_at: ts(r.created_at),
        updated_at: ts(r.updated_at),
    }
}

async fn approval_context(state: &AppState, policy: &Policy) -> ApiResult<ApprovalContext> {
    let mut approvers_per_level = Vec::new();
    for l in &policy.settings.approval_levels {
        approvers_per_level.push(state.store.expand_users(&l.user_ids, &l.group_ids).await?);
    }
    Ok(ApprovalContext {
        required_per_level: policy.settings.approval_levels.iter().map(|l| l.required).collect(),
        approvers_per_level,
    })
}

async fn pending_count(state: &AppState, r: &AccessRequest, ctx: &ApprovalContext) -> ApiResult<Option<u32>> {
    if r.state != RequestState::PendingApproval {
        return Ok(None);
    }
    let have = state
        .store
        .request_approvals(&r.id)
        .await?
        .iter()
        .filter(|a| a.level == r.current_level && a.decision == "approve")
        .count() as u32;
    let level = r.current_level as usize;
    let required = ctx.required_per_level.get(level).copied().unwrap_or(1);
    let later: u32 = ctx.required_per_level.iter().skip(level + 1).sum();
    Ok(Some(required.saturating_sub(have) + later))
}

async fn dto(state: &AppState, r: &AccessRequest) -> ApiResult<RequestDto> {
    let pending = match state.store.policy(&r.policy_id).await {
        Ok(p) => pending_count(state, r, &approval_context(state, &p).await?).await?,
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(to_dto(r, pending))
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountChoice {
    account_id: String,
    /// password, ssh_key, ssh, rdp or telnet.
    access_type: String,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequestsRequest {
    /// One or more accounts (on at most 50 assets), each with its access type.
    pub(crate) accounts: Vec<AccountChoice>,
    #[serde(default)]
    emergency: bool,
    /// Now when absent; "later": RFC 3339, or a local date-time (`2026-12-01T09:00`) in your
    /// time zone.
    start_at: Option<String>,
    /// The policy's duration when absent; the requester's choice only where the policy allows.
    duration_minutes: Option<i64>,
    ticket: Option<String>,
    reason_code: Option<String>,
    /// At most 255 characters.
    comment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AccountOutcome {
    account_id: String,
    access_type: String,
    /// The created request, when it succeeded.
    request: Option<RequestDto>,
    /// Why it failed and what to do, when it did.
    error: Option<crate::error::ErrorBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreateRequestsResponse {
    batch_id: String,
    /// One outcome per account, in the order given; failed ones can be resubmitted alone.
    outcomes: Vec<AccountOutcome>,
}

fn outcome_error(e: ApiError) -> crate::error::ErrorBody {
    crate::error::ErrorBody { code: e.code.to_owned(), message: e.message, field: e.field }
}

/// Requests access to one or more accounts. Each account gets its own request and outcome.
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", operation_id = "create_requests",
    request_body = CreateRequestsRequest,
    responses((status = 200, description = "One outcome per account", body = CreateRequestsResponse)))]
async fn create_requests(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiJson(req): ApiJson<CreateRequestsRequest>,
) -> ApiResult<Json<CreateRequestsResponse>> {
    Ok(Json(create_batch(&state, &caller, req).await?))
}

/// Validates and creates one request per account; shared by create, resubmit and favorites.
pub(crate) async fn create_batch(
    state: &AppState,
    caller: &Caller,
    req: CreateRequestsRequest,
) -> ApiResult<CreateRequestsResponse> {
    let now = state.now();
    if req.accounts.is_empty() {
        return Err(ApiError::invalid("accounts", "name at least one account"));
    }
    if req.accounts.len() > 500 {
        return Err(ApiError::invalid("accounts", "at most 500 accounts per request"));
    }
    if let Some(c) = &req.comment {
        if c.chars().count() > COMMENT_MAX {
            return Err(ApiError::invalid("comment", format!("must be at most {COMMENT_MAX} characters")));
        }
        portcullis_core::validate::description("comment", c)?;
    }
    for (field, v) in [("ticket", &req.ticket), ("reason_code", &req.reason_code)] {
        if let Some(v) = v {
            portcullis_core::validate::name(field, v)?;
        }
    }
    if let Some(code) = &req.reason_code {
        if !state.store.reason_codes().await?.iter().any(|r| &r.name == code) {
            return Err(ApiError::invalid(
                "reason_code",
                format!("'{code}' is not a reason code; see GET /api/v1/reason-codes"),
            ));
        }
    }
    let sessions_enabled = state.store.service_enabled(portcullis_store::SESSION_REQUESTS_SETTING).await?;
    let tz = TimeZone::get(&caller.user.time_zone).unwrap_or(TimeZone::UTC);
    let start = req.start_at.as_deref().map(|t| parse_local_or_ts("start_at", t, &tz)).transpose()?;
    let access_types = req
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| parse_access_type(&format!("accounts[{i}].access_type"), &a.access_type))
        .collect::<ApiResult<Vec<_>>>()?;
    let mut accounts = Vec::new();
    for a in &req.accounts {
        accounts.push(state.store.account(&a.account_id).await.ok());
    }
    let assets: HashSet<&str> = accounts.iter().flatten().map(|a| a.asset_id.as_str()).collect();
    if assets.len() > MAX_ASSETS {
        return Err(ApiError::invalid(
            "accounts",
            format!("a request may name accounts on at most {MAX_ASSETS} assets (found {})", assets.len()),
        ));
    }

    // Resolve the governing policy of every account first: a detail one policy requires is
    // required for all (R-REQ-1).
    let groups = state.store.groups_of_user(&caller.user.id).await?;
    let (ents, pols) = state.store.policy_rules().await?;
    let ent_windows: HashMap<String, portcullis_core::schedule::TimeRestrictions> =
        ents.iter().map(|e| (e.id.clone(), e.windows.clone())).collect();
    let set = PolicySet::new(ents, pols);
    let at = jiff::Timestamp::from_microsecond(start.unwrap_or(now))
        .map_err(|_| ApiError::invalid("start_at", "out of range"))?;
    let mut governing: Vec<Result<Policy, ApiError>> = Vec::new();
    for (i, a) in accounts.iter().enumerate() {
        let Some(account) = a else {
            governing.push(Err(ApiError::not_found("account")));
            continue;
        };
        let (account_groups, asset_groups) = state.store.target_groups(&account.id, &account.asset_id).await?;
        let q = Question {
            requester: Requester { user_id: &caller.user.id, group_ids: &groups, time_zone: &tz },
            target: Target {
                account_id: &account.id,
                asset_id: &account.asset_id,
                account_group_ids: &account_groups,
                asset_group_ids: &asset_groups,
            },
            access_type: access_types[i],
            at,
            emergency: req.emergency,
        };
        let r = set.resolve(&q);
        governing.push(match r.governing {
            Some(id) => Ok(state.store.policy(&id).await?),
            None => {
                let why = r.verdicts.iter().filter_map(|v| v.eliminated).min().map(|e| e.describe()).unwrap_or("no policy covers this account for you");
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "no_governing_policy",
                    format!("you may not request {} access to this account {}: {why}; ask a Security Policy Administrator, or choose another time", access_types[i].as_str(), if req.emergency { "as an emergency" } else { "now" }),
                ))
            }
        });
    }
    let needs = |f: fn(&Policy) -> bool| governing.iter().flatten().any(f);
    if needs(|p| p.settings.ticket_required) && req.ticket.is_none() {
        return Err(ApiError::invalid("ticket", "a ticket number is required by the policy of one of the accounts"));
    }
    if needs(|p| p.settings.reason_required) && req.reason_code.is_none() {
        return Err(ApiError::invalid("reason_code", "a reason is required by the policy of one of the accounts"));
    }
    if needs(|p| p.settings.comment_required) && req.comment.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("comment", "a comment is required by the policy of one of the accounts"));
    }

    let batch_id = uuid::Uuid::new_v4().to_string();
    let mut outcomes = Vec::new();
    for (i, choice) in req.accounts.iter().enumerate() {
        let result: ApiResult<RequestDto> = async {
            if access_types[i].is_session() && !sessions_enabled {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "service_disabled",
                    "session requests are switched off by an Appliance Administrator; request password access, or ask them to switch sessions on",
                ));
            }
            let policy = governing[i].as_ref().map_err(|e| ApiError::new(e.status, e.code, e.message.clone()))?;
            let account = accounts[i].as_ref().ok_or_else(|| ApiError::not_found("account"))?;
            let s = &policy.settings;
            let (start_at, mut end_at) = request::period(
                now,
                start,
                req.duration_minutes,
                s.default_duration_minutes,
                s.max_duration_minutes,
                s.duration_changeable,
            )?;
            // Access is only usable inside the windows' overlap: clip the end (see core::policy).
            let ent_w = ent_windows.get(&policy.entitlement_id).cloned().unwrap_or_default();
            if !(ent_w.is_unrestricted() && policy.windows.is_unrestricted()) {
                let from = jiff::Timestamp::from_microsecond(start_at)
                    .map_err(|_| ApiError::invalid("start_at", "out of range"))?;
                let until = jiff::Timestamp::from_microsecond(end_at)
                    .map_err(|_| ApiError::invalid("duration_minutes", "out of range"))?;
                debug_assert!(ent_w.permits_slot(local_slot(from, &tz)));
                end_at = allowed_until(from, until, &tz, |slot| {
                    ent_w.permits_slot(slot) && policy.windows.permits_slot(slot)
                })
                .as_microsecond();
            }
            let ctx = approval_context(state, policy).await?;
            let notify = if req.emergency {
                ctx.approvers_per_level.concat()
            } else {
                ctx.approvers_per_level.first().cloned().unwrap_or_default()
            };
            let new = NewRequest {
                batch_id: batch_id.clone(),
                requester_id: caller.user.id.clone(),
                account_id: account.id.clone(),
                asset_id: account.asset_id.clone(),
                access_type: access_types[i],
                policy_id: policy.id.clone(),
                emergency: req.emergency,
                start_at,
                end_at,
                ticket: req.ticket.clone(),
                reason_code: req.reason_code.clone(),
                comment: req.comment.clone(),
                review_required: s.review_required,
                approved_at_once: s.auto_approve || req.emergency,
                simultaneous_access: s.simultaneous_access,
                notify,
            };
            let created = state.store.create_request(&caller.actor(), now, new).await?;
            dto(state, &created).await
        }
        .await;
        let (request, error) = match result {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(outcome_error(e))),
        };
        outcomes.push(AccountOutcome {
            account_id: choice.account_id.clone(),
            access_type: choice.access_type.clone(),
            request,
            error,
        });
    }
    Ok(CreateRequestsResponse { batch_id, outcomes })
}

/// A start time: RFC 3339 with an offset, or a local date-time (`2026-12-01T09:00`) in the
/// requester's time zone (R-REQ-1).
fn parse_local_or_ts(field: &str, text: &str, tz: &TimeZone) -> ApiResult<i64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    text.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(tz.clone()).ok())
        .map(|z| z.timestamp().as_microsecond())
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("'{text}' is neither an RFC 3339 time nor a local date-time such as 2026-12-01T09:00"),
            )
        })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `mine` (default) or `all` (Security Policy Administrators, Auditors).
    scope: Option<String>,
    /// Only requests in this state.
    state: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Your requests (or all, for Security Policy Administrators and Auditors), newest first.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", operation_id = "list_requests",
    params(ListParams), responses((status = 200, description = "Requests", body = [RequestDto])))]
async fn list_requests(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Vec<RequestDto>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let filter_state = q
        .state
        .as_deref()
        .map(|s| RequestState::parse(s).ok_or_else(|| ApiError::invalid("state", "not a request state")))
        .transpose()?;
    let requester = match q.scope.as_deref().unwrap_or("mine") {
        "mine" => Some(caller.user.id.as_str()),
        "all" if [Role::SecurityPolicyAdmin, Role::Auditor, Role::ApplianceAdmin].iter().any(|r| caller.has(*r)) => {
            None
        }
        "all" => {
            return Err(ApiError::forbidden("only Security Policy Administrators and Auditors may list all requests"))
        }
        _ => return Err(ApiError::invalid("scope", "must be mine or all")),
    };
    let list = state.store.requests(requester, filter_state, limit).await?;
    let mut out = Vec::with_capacity(list.len());
    for r in &list {
        out.push(dto(&state, r).await?);
    }
    Ok(Json(out))
}

#[derive(Serialize, ToSchema)]
pub struct HistoryDto {
    at: String,
    actor_id: String,
    actor_name: String,
    action: String,
    from_state: Option<String>,
    to_state: String,
    comment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApprovalDto {
    approver_id: String,
    level: i64,
    /// approve or deny.
    decision: String,
    comment: Option<String>,
    at: String,
}

#[derive(Serialize, ToSchema)]
pub struct RequestDetail {
    #[serde(flatten)]
    request: RequestDto,
    approvals: Vec<ApprovalDto>,
    /// Every transition: who, when, with what comment.
    history: Vec<HistoryDto>,
}

/// Who may see a request and act on it as what.
pub(crate) struct Relation {
    pub requester: bool,
    pub approver: bool,
    pub reviewer: bool,
    pub admin: bool,
    pub auditor: bool,
}

pub(crate) async fn relation(state: &AppState, caller: &Caller, r: &AccessRequest) -> ApiResult<Relation> {
    let (approver, reviewer) = match state.store.policy(&r.policy_id).await {
        Ok(p) => {
            let ctx = approval_context(state, &p).await?;
            let reviewers =
                state.store.expand_users(&p.settings.reviewer_user_ids, &p.settings.reviewer_group_ids).await?;
            (ctx.approvers_per_level.iter().any(|l| l.contains(&caller.user.id)), reviewers.contains(&caller.user.id))
        }
        Err(StoreError::NotFound(_)) => (false, false),
        Err(e) => return Err(e.into()),
    };
    Ok(Relation {
        requester: r.requester_id == caller.user.id,
        approver,
        reviewer,
        admin: caller.has(Role::SecurityPolicyAdmin),
        auditor: caller.has(Role::Auditor) || caller.has(Role::ApplianceAdmin),
    })
}

pub(crate) async fn load_visible(state: &AppState, caller: &Caller, id: &str) -> ApiResult<(AccessRequest, Relation)> {
    let r = state.store.request(id).await?;
    let rel = relation(state, caller, &r).await?;
    if !(rel.requester || rel.approver || rel.reviewer || rel.admin || rel.auditor) {
        // Not yours to see: indistinguishable from a missing request.
        return Err(ApiError::not_found("request"));
    }
    Ok((r, rel))
}

/// One request with its approvals and whole workflow history.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests", operation_id = "get_request",
    params(IdPath), responses((status = 200, description = "The request", body = RequestDetail)))]
async fn get_request(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<RequestDetail>> {
    let (r, _) = load_visible(&state, &caller, &p.id).await?;
    let approvals = state.store.request_approvals(&r.id).await?;
    let history = state.store.request_history(&r.id).await?;
    Ok(Json(RequestDetail {
        request: dto(&state, &r).await?,
        approvals: approvals
            .into_iter()
            .map(|a| ApprovalDto {
                approver_id: a.approver_id,
                level: a.level,
                decision: a.decision,
                comment: a.comment,
                at: ts(a.at),
            })
            .collect(),
        history: history
            .into_iter()
            .map(|h| HistoryDto {
                at: ts(h.at),
                actor_id: h.actor_id,
                actor_name: h.actor_name,
                action: h.action,
                from_state: h.from_state,
                to_state: h.to_state,
                comment: h.comment,
            })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// At most 255 characters.
    comment: Option<String>,
    /// Approvers may change the access window (RFC 3339).
    start_at: Option<String>,
    end_at: Option<String>,
}

fn check_comment(c: &Option<String>) -> ApiResult<()> {
    if let Some(c) = c {
        if c.chars().count() > COMMENT_MAX {
            return Err(ApiError::invalid("comment", format!("must be at most {COMMENT_MAX} characters")));
        }
        portcullis_core::validate::description("comment", c)?;
    }
    Ok(())
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    id: &str,
    approve: bool,
    body: DecisionRequest,
) -> ApiResult<Json<RequestDto>> {
    check_comment(&body.comment)?;
    let (r, _) = load_visible(state, caller, id).await?;
    let policy = state.store.policy(&r.policy_id).await?;
    let ctx = approval_context(state, &policy).await?;
    let window = match (body.start_at.as_deref(), body.end_at.as_deref()) {
        (None, None) => None,
        (s, e) => {
            let s = s.map(|t| parse_ts("start_at", t)).transpose()?.unwrap_or(r.start_at);
            let e = e.map(|t| parse_ts("end_at", t)).transpose()?.unwrap_or(r.end_at);
            if e <= s {
                return Err(ApiError::invalid("end_at", "must be after start_at"));
            }
            if (e - s) / 60_000_000 > policy.settings.max_duration_minutes {
                return Err(ApiError::invalid(
                    "end_at",
                    format!("the window may be at most {} minutes", policy.settings.max_duration_minutes),
                ));
            }
            Some((s, e))
        }
    };
    let me = caller.user.id.clone();
    let eligible = |level: usize| ctx.approvers_per_level.get(level).is_some_and(|l| l.contains(&me));
    let (updated, _) = state
        .store
        .decide_request(
            &caller.actor(),
            state.now(),
            id,
            approve,
            &ctx,
            &eligible,
            body.comment.as_deref(),
            window,
            policy.settings.simultaneous_access,
        )
        .await?;
    if updated.state != r.state {
        state.publish([portcullis_store::Transition {
            request_id: updated.id.clone(),
            from: r.state,
            to: updated.state,
        }]);
    }
    Ok(Json(dto(state, &updated).await?))
}

/// Approves at the current level; the last level's approval makes the request approved (or
/// available, if its time has come). Nobody approves their own request.
#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", tag = "requests", operation_id = "approve_request",
    params(IdPath), request_body = DecisionRequest, responses((status = 200, description = "The request", body = RequestDto)))]
async fn approve_request(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(body): ApiJson<DecisionRequest>,
) -> ApiResult<Json<RequestDto>> {
    decide(&state, &caller, &p.id, true, body).await
}

/// Denies a pending request.
#[utoipa::path(post, path = "/api/v1/requests/{id}/deny", tag = "requests", operation_id = "deny_request",
    params(IdPath), request_body = DecisionRequest, responses((status = 200, description = "The request", body = RequestDto)))]
async fn deny_request(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(body): ApiJson<DecisionRequest>,
) -> ApiResult<Json<RequestDto>> {
    decide(&state, &caller, &p.id, false, body).await
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    /// At most 255 characters.
    comment: Option<String>,
}

async fn act(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
    comment: Option<String>,
) -> ApiResult<Json<RequestDto>> {
    check_comment(&comment)?;
    let (r, rel) = load_visible(state, caller, id).await?;
    let permitted = match action {
        Action::Cancel | Action::CheckIn | Action::Remove => rel.requester,
        Action::Revoke => rel.approver || rel.admin,
        Action::Review => rel.reviewer,
        _ => false,
    };
    if !permitted {
        let who = match action {
            Action::Cancel | Action::CheckIn | Action::Remove => "the requester",
            Action::Revoke => "an approver of the request or a Security Policy Administrator",
            _ => "a reviewer named by the policy",
        };
        return Err(ApiError::forbidden(format!("only {who} may {} this request", action.as_str().replace('_', " "))));
    }
    let (updated, transition) =
        state.store.act_on_request(&caller.actor(), state.now(), &r.id, action, comment.as_deref()).await?;
    state.publish(transition);
    Ok(Json(dto(state, &updated).await?))
}

macro_rules! action_route {
    ($name:ident, $path:literal, $op:literal, $action:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "requests", operation_id = $op,
            params(IdPath), request_body = CommentRequest, responses((status = 200, description = "The request", body = RequestDto)))]
        async fn $name(State(state): State<AppState>, caller: Authed<AnyUser>, ApiPath(p): ApiPath<IdPath>, ApiJson(body): ApiJson<CommentRequest>) -> ApiResult<Json<RequestDto>> {
            act(&state, &caller, &p.id, $action, body.comment).await
        }
    };
}

action_route!(
    cancel_request,
    "/api/v1/requests/{id}/cancel",
    "cancel_request",
    Action::Cancel,
    "Cancels a pending or approved request (the requester)."
);
action_route!(
    revoke_request,
    "/api/v1/requests/{id}/revoke",
    "revoke_request",
    Action::Revoke,
    "Revokes access at once (any approver of the request, or a Security Policy Administrator); live sessions end."
);
action_route!(
    checkin_request,
    "/api/v1/requests/{id}/checkin",
    "checkin_request",
    Action::CheckIn,
    "Checks an available request in: the use ends (the requester)."
);
action_route!(
    review_request,
    "/api/v1/requests/{id}/review",
    "review_request",
    Action::Review,
    "Marks a completed request reviewed (a reviewer named by the policy)."
);
action_route!(
    remove_request,
    "/api/v1/requests/{id}/remove",
    "remove_request",
    Action::Remove,
    "Removes a finished request from your list; the audit log keeps it."
);

/// Requests waiting for your approval at their current level.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "requests", operation_id = "list_approvals",
    responses((status = 200, description = "Requests you can approve now", body = [RequestDto])))]
async fn list_approvals(State(state): State<AppState>, caller: Authed<AnyUser>) -> ApiResult<Json<Vec<RequestDto>>> {
    let pending = state.store.requests(None, Some(RequestState::PendingApproval), 1000).await?;
    let mut out = Vec::new();
    let mut cache: HashMap<String, ApprovalContext> = HashMap::new();
    for r in pending {
        if r.requester_id == caller.user.id {
            continue;
        }
        if !cache.contains_key(&r.policy_id) {
            let Ok(p) = state.store.policy(&r.policy_id).await else { continue };
            cache.insert(r.policy_id.clone(), approval_context(&state, &p).await?);
        }
        let ctx = &cache[&r.policy_id];
        let level = r.current_level as usize;
        let already = state.store.request_approvals(&r.id).await?.iter().any(|a| a.approver_id == caller.user.id);
        if !already && ctx.approvers_per_level.get(level).is_some_and(|l| l.contains(&caller.user.id)) {
            out.push(to_dto(&r, pending_count(&state, &r, ctx).await?));
        }
    }
    Ok(Json(out))
}

/// Submits a revoked or denied request again, with the same account and details, starting
/// now; the requester only. The old request stays as it is.
#[utoipa::path(post, path = "/api/v1/requests/{id}/resubmit", tag = "requests", operation_id = "resubmit_request",
    params(IdPath), responses((status = 200, description = "The outcome of the new request", body = CreateRequestsResponse)))]
async fn resubmit_request(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<CreateRequestsResponse>> {
    let (r, rel) = load_visible(&state, &caller, &p.id).await?;
    if !rel.requester {
        return Err(ApiError::forbidden("only the requester may resubmit this request"));
    }
    request::check(r.state, Action::Resubmit)
        .map_err(|e| ApiError::conflict(portcullis_store::state_code(r.state), e.to_string()))?;
    let minutes = (r.end_at - r.start_at) / 60_000_000;
    let again = CreateRequestsRequest {
        accounts: vec![AccountChoice {
            account_id: r.account_id.clone(),
            access_type: r.access_type.as_str().to_owned(),
        }],
        emergency: r.emergency,
        start_at: None,
        duration_minutes: Some(minutes.max(1)),
        ticket: r.ticket.clone(),
        reason_code: r.reason_code.clone(),
        comment: r.comment.clone(),
    };
    Ok(Json(create_batch(&state, &caller, again).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDecisionRequest {
    /// Request ids (at most 100).
    ids: Vec<String>,
    /// approve or deny.
    decision: String,
    comment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkOutcome {
    id: String,
    request: Option<RequestDto>,
    error: Option<crate::error::ErrorBody>,
}

/// Approves or denies many requests with one comment; one outcome per request.
#[utoipa::path(post, path = "/api/v1/requests/bulk-decision", tag = "requests", operation_id = "bulk_decision",
    request_body = BulkDecisionRequest, responses((status = 200, description = "One outcome per request", body = [BulkOutcome])))]
async fn bulk_decision(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiJson(req): ApiJson<BulkDecisionRequest>,
) -> ApiResult<Json<Vec<BulkOutcome>>> {
    let approve = match req.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return Err(ApiError::invalid("decision", "must be approve or deny")),
    };
    if req.ids.is_empty() || req.ids.len() > 100 {
        return Err(ApiError::invalid("ids", "name 1 to 100 requests"));
    }
    check_comment(&req.comment)?;
    let mut out = Vec::new();
    for id in req.ids {
        let body = DecisionRequest { comment: req.comment.clone(), ..Default::default() };
        let (request, error) = match decide(&state, &caller, &id, approve, body).await {
            Ok(Json(r)) => (Some(r), None),
            Err(e) => (None, Some(outcome_error(e))),
        };
        out.push(BulkOutcome { id, request, error });
    }
    Ok(Json(out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityRequest {
    account_ids: Vec<String>,
    /// RFC 3339; now when absent.
    at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AvailabilityResponse {
    /// "X of Y accounts in use".
    summary: String,
    total: usize,
    in_use: usize,
    accounts_in_use: Vec<String>,
}

/// How many of these accounts are in use at a time (R-REQ-8).
#[utoipa::path(post, path = "/api/v1/requests/availability", tag = "requests", operation_id = "account_availability",
    request_body = AvailabilityRequest, responses((status = 200, description = "Availability", body = AvailabilityResponse)))]
async fn availability(
    State(state): State<AppState>,
    _caller: Authed<AnyUser>,
    ApiJson(req): ApiJson<AvailabilityRequest>,
) -> ApiResult<Json<AvailabilityResponse>> {
    if req.account_ids.len() > 1000 {
        return Err(ApiError::invalid("account_ids", "at most 1000 accounts"));
    }
    let at = match req.at.as_deref() {
        Some(t) => parse_ts("at", t)?,
        None => state.now(),
    };
    let mut ids = req.account_ids.clone();
    ids.sort();
    ids.dedup();
    let in_use = state.store.accounts_in_use(&ids, at).await?;
    Ok(Json(AvailabilityResponse {
        summary: format!("{} of {} accounts in use", in_use.len(), ids.len()),
        total: ids.len(),
        in_use: in_use.len(),
        accounts_in_use: in_use,
    }))
}
