//! Access requests (R-REQ-1..8) over HTTP: create for one or more accounts with one outcome
//! each, list, show with history, approve/deny by level, cancel, revoke, check in, review,
//! remove. Every rule lives in `portcullis_app::requests`; this module maps JSON to it.

use axum::extract::State;
use axum::Json;
use portcullis_app::requests::{self as uc, Decision, NewRequests, Queue, QueueFilter, RequestView};
use portcullis_app::App;
use portcullis_core::request::{Action, RequestState};
use portcullis_store::{Named, RequestNames};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, Authed};
use crate::dto::{parse_ts, ts, IdPath};
use crate::error::{error_body, ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
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
    /// The state in words, e.g. "Pending 1 approval", or "pending review (revoked)".
    status_text: String,
    /// How access ended, once it has: check_in, expiry or revocation (kept through review).
    ended_by: Option<String>,
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
    /// The requester's user name.
    requester_name: Option<String>,
    /// The account's name (the request is for ACCOUNT@ASSET).
    account_name: Option<String>,
    asset_name: Option<String>,
    /// The governing policy's name.
    policy_name: Option<String>,
    /// Live sessions of the request (in the `approved` queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    live_sessions: Option<Vec<String>>,
}

impl RequestDto {
    fn named(mut self, n: RequestNames) -> RequestDto {
        self.requester_name = n.requester;
        self.account_name = n.account;
        self.asset_name = n.asset;
        self.policy_name = n.policy;
        self
    }
}

/// DTOs with the names of their requester, account, asset and policy.
pub(crate) async fn named(state: &App, views: Vec<RequestView>) -> ApiResult<Vec<RequestDto>> {
    let ids: Vec<String> = views.iter().map(|v| v.request.id.clone()).collect();
    let names = uc::names_of(state, &ids).await?;
    Ok(views.into_iter().zip(names).map(|(v, n)| to_dto(v).named(n)).collect())
}

async fn named_one(state: &App, view: RequestView) -> ApiResult<RequestDto> {
    Ok(named(state, vec![view]).await?.remove(0))
}

pub(crate) fn to_dto(v: RequestView) -> RequestDto {
    let status_text = v.status_text();
    let r = v.request;
    RequestDto {
        id: r.id,
        batch_id: r.batch_id,
        requester_id: r.requester_id,
        account_id: r.account_id,
        asset_id: r.asset_id,
        access_type: r.access_type.as_str().to_owned(),
        policy_id: r.policy_id,
        state: r.state.as_str().to_owned(),
        status_text,
        ended_by: r.ended_by.map(|c| c.as_str().to_owned()),
        emergency: r.emergency,
        start_at: ts(r.start_at),
        end_at: ts(r.end_at),
        ticket: r.ticket,
        reason_code: r.reason_code,
        comment: r.comment,
        current_level: r.current_level,
        review_required: r.review_required,
        created_at: ts(r.created_at),
        updated_at: ts(r.updated_at),
        requester_name: None,
        account_name: None,
        asset_name: None,
        policy_name: None,
        live_sessions: None,
    }
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountChoice {
    pub(crate) account_id: String,
    /// password, ssh_key, ssh, rdp or telnet.
    pub(crate) access_type: String,
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
    /// The account as ACCOUNT@ASSET, when it exists.
    account_name: Option<String>,
    access_type: String,
    /// The created request, when it succeeded.
    request: Option<RequestDto>,
    /// Why it failed and what to do, when it did.
    error: Option<ErrorBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreateRequestsResponse {
    batch_id: String,
    /// One outcome per account, in the order given; failed ones can be resubmitted alone.
    outcomes: Vec<AccountOutcome>,
}

impl From<CreateRequestsRequest> for NewRequests {
    fn from(r: CreateRequestsRequest) -> Self {
        NewRequests {
            accounts: r
                .accounts
                .into_iter()
                .map(|a| uc::AccountChoice { account_id: a.account_id, access_type: a.access_type })
                .collect(),
            emergency: r.emergency,
            start_at: r.start_at,
            duration_minutes: r.duration_minutes,
            ticket: r.ticket,
            reason_code: r.reason_code,
            comment: r.comment,
        }
    }
}

pub(crate) async fn batch_dto(state: &App, b: uc::Batch) -> ApiResult<CreateRequestsResponse> {
    let created: Vec<RequestView> = b.outcomes.iter().filter_map(|o| o.result.as_ref().ok().cloned()).collect();
    let mut dtos = named(state, created).await?.into_iter();
    let ids = b.outcomes.iter().map(|o| o.account_id.clone()).collect();
    let labels = crate::labels::Labels::load(state, [(Named::Account, ids)]).await?;
    let outcomes = b
        .outcomes
        .into_iter()
        .map(|o| {
            let (request, error) = match o.result {
                Ok(_) => (dtos.next(), None),
                Err(e) => (None, Some(error_body(e))),
            };
            let account_name = labels.name(Named::Account, &o.account_id);
            AccountOutcome { account_id: o.account_id, account_name, access_type: o.access_type, request, error }
        })
        .collect();
    Ok(CreateRequestsResponse { batch_id: b.batch_id, outcomes })
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
    Ok(Json(batch_dto(&state, uc::create(&state, &caller, req.into()).await?).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Which work queue: `mine` (default; every state, revoked and expired included),
    /// `approvals` (waiting for your approval), `approved` (approved by you, approved or in
    /// use, with live sessions), `reviews` (waiting for your review), `all` (Security Policy
    /// Administrators, Auditors, Appliance Administrators).
    queue: Option<String>,
    /// Former name of `queue` (`mine` or `all`).
    scope: Option<String>,
    /// Only requests in this state.
    state: Option<String>,
    /// Only requests for this account: its id, or ACCOUNT@ASSET (e.g. `root@db1`).
    account: Option<String>,
    /// Only requests for accounts on this asset: its id or name.
    asset: Option<String>,
    /// Only requests by this user: id or user name.
    requester: Option<String>,
    /// Only requests made at or after this time (RFC 3339).
    created_from: Option<String>,
    /// Only requests made before this time (RFC 3339).
    created_before: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// How many to skip (paging).
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// A work queue, newest first: your requests, or those waiting for your approval or review,
/// or those you approved; all of them for Security Policy Administrators and Auditors.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", operation_id = "list_requests",
    params(ListParams), responses((status = 200, description = "Requests", body = [RequestDto])))]
async fn list_requests(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Vec<RequestDto>>> {
    let filter_state = q
        .state
        .as_deref()
        .map(|s| RequestState::parse(s).ok_or_else(|| ApiError::invalid("state", "not a request state")))
        .transpose()?;
    let (field, name) = match (&q.queue, &q.scope) {
        (Some(v), _) => ("queue", v.as_str()),
        (None, Some(v)) => ("scope", v.as_str()),
        (None, None) => ("queue", "mine"),
    };
    let queue = Queue::parse(name)
        .ok_or_else(|| ApiError::invalid(field, format!("must be one of: {}", Queue::NAMES.join(", "))))?;
    let time = |field: &str, v: &Option<String>| v.as_deref().map(|t| parse_ts(field, t)).transpose();
    let filter = QueueFilter {
        state: filter_state,
        account: q.account,
        asset: q.asset,
        requester: q.requester,
        created_from: time("created_from", &q.created_from)?,
        created_before: time("created_before", &q.created_before)?,
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
    };
    let items = uc::queue(&state, &caller, queue, filter).await?;
    Ok(Json(
        items
            .into_iter()
            .map(|i| {
                let live = (queue == Queue::Approved).then_some(i.live_sessions);
                RequestDto { live_sessions: live, ..to_dto(i.view).named(i.names) }
            })
            .collect(),
    ))
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

/// One request with its approvals and whole workflow history.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests", operation_id = "get_request",
    params(IdPath), responses((status = 200, description = "The request", body = RequestDetail)))]
async fn get_request(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<RequestDetail>> {
    let d = uc::show(&state, &caller, &p.id).await?;
    Ok(Json(RequestDetail {
        request: named_one(&state, d.view).await?,
        approvals: d
            .approvals
            .into_iter()
            .map(|a| ApprovalDto {
                approver_id: a.approver_id,
                level: a.level,
                decision: a.decision,
                comment: a.comment,
                at: ts(a.at),
            })
            .collect(),
        history: d
            .history
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

async fn decide(
    state: &AppState,
    caller: &crate::auth::Caller,
    id: &str,
    approve: bool,
    body: DecisionRequest,
) -> ApiResult<Json<RequestDto>> {
    let d = Decision {
        approve,
        comment: body.comment,
        start_at: body.start_at.as_deref().map(|t| parse_ts("start_at", t)).transpose()?,
        end_at: body.end_at.as_deref().map(|t| parse_ts("end_at", t)).transpose()?,
    };
    Ok(Json(named_one(state, uc::decide(state, caller, id, d).await?).await?))
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
    caller: &crate::auth::Caller,
    id: &str,
    action: Action,
    comment: Option<String>,
) -> ApiResult<Json<RequestDto>> {
    Ok(Json(named_one(state, uc::act(state, caller, id, action, comment.as_deref()).await?).await?))
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
    Ok(Json(named(&state, uc::waiting_for_approval(&state, &caller).await?).await?))
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
    Ok(Json(batch_dto(&state, uc::resubmit(&state, &caller, &p.id).await?).await?))
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
    error: Option<ErrorBody>,
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
    let outcomes = uc::bulk_decide(&state, &caller, req.ids, approve, req.comment).await?;
    let decided: Vec<RequestView> = outcomes.iter().filter_map(|o| o.result.as_ref().ok().cloned()).collect();
    let mut dtos = named(&state, decided).await?.into_iter();
    Ok(Json(
        outcomes
            .into_iter()
            .map(|o| {
                let (request, error) = match o.result {
                    Ok(_) => (dtos.next(), None),
                    Err(e) => (None, Some(error_body(e))),
                };
                BulkOutcome { id: o.id, request, error }
            })
            .collect(),
    ))
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
    let at = match req.at.as_deref() {
        Some(t) => parse_ts("at", t)?,
        None => state.now(),
    };
    let (total, in_use) = uc::accounts_in_use(&state, &req.account_ids, at).await?;
    Ok(Json(AvailabilityResponse {
        summary: format!("{} of {} accounts in use", in_use.len(), total),
        total,
        in_use: in_use.len(),
        accounts_in_use: in_use,
    }))
}
