//! "What may I request?" (R-REQ-1): the accounts and access types the caller's entitlements
//! cover, each with its governing policy's terms at the asked time.

use axum::extract::State;
use axum::Json;
use portcullis_app::requests::{self as uc, OptionFilter, RequestOption};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, Authed};
use crate::dto::ts;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(request_options))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OptionParams {
    /// A part of the asset's or the account's name (case does not matter).
    search: Option<String>,
    /// Only this asset: its id or name.
    asset: Option<String>,
    /// Only this account: its id or ACCOUNT@ASSET.
    account: Option<String>,
    /// password, ssh_key, ssh, rdp or telnet.
    access_type: Option<String>,
    /// When the access would start: RFC 3339, or a local date-time in your time zone such as
    /// 2026-12-01T09:00 (default: now).
    at: Option<String>,
    /// Ask about emergency requests.
    emergency: Option<bool>,
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TermsDto {
    policy_id: String,
    policy_name: String,
    /// Approved without anyone's approval.
    auto_approve: bool,
    /// Approvals needed over all levels.
    approvals_required: u32,
    default_duration_minutes: i64,
    max_duration_minutes: i64,
    /// The requester may choose a duration up to the maximum.
    duration_changeable: bool,
    ticket_required: bool,
    reason_required: bool,
    comment_required: bool,
    /// A reviewer reviews the request after use.
    review_required: bool,
    /// Sessions are recorded.
    recorded: bool,
}

#[derive(Serialize, ToSchema)]
pub struct RequestOptionDto {
    account_id: String,
    account_name: String,
    asset_id: String,
    asset_name: String,
    /// password, ssh_key, ssh, rdp or telnet.
    access_type: String,
    /// What the governing policy asks at that time; absent when none governs then.
    terms: Option<TermsDto>,
    /// Why this cannot be requested at that time (outside a time window, switched off…).
    not_now: Option<String>,
    /// An emergency request would be governed at that time.
    emergency_allowed: bool,
    /// Another request holds the account at that time; a new request waits or is refused.
    in_use: bool,
}

#[derive(Serialize, ToSchema)]
pub struct RequestOptionsDto {
    /// The time asked about.
    at: String,
    /// Your time zone, in which time windows were evaluated.
    time_zone: String,
    /// Options matching the filter in all; `items` holds one page.
    total: usize,
    items: Vec<RequestOptionDto>,
}

fn dto(o: RequestOption) -> RequestOptionDto {
    RequestOptionDto {
        account_id: o.account_id,
        account_name: o.account_name,
        asset_id: o.asset_id,
        asset_name: o.asset_name,
        access_type: o.access_type.as_str().to_owned(),
        terms: o.terms.map(|t| TermsDto {
            policy_id: t.policy_id,
            policy_name: t.policy_name,
            auto_approve: t.auto_approve,
            approvals_required: t.approvals_required,
            default_duration_minutes: t.default_duration_minutes,
            max_duration_minutes: t.max_duration_minutes,
            duration_changeable: t.duration_changeable,
            ticket_required: t.ticket_required,
            reason_required: t.reason_required,
            comment_required: t.comment_required,
            review_required: t.review_required,
            recorded: t.recorded,
        }),
        not_now: o.not_now,
        emergency_allowed: o.emergency_allowed,
        in_use: o.in_use,
    }
}

/// What you may request: every account and access type your entitlements cover, with what
/// the governing policy asks at the given time, or why nothing governs then. Sorted by asset,
/// account and access type.
#[utoipa::path(get, path = "/api/v1/request-options", tag = "requests", operation_id = "request_options",
    params(OptionParams),
    responses((status = 200, description = "Your options", body = RequestOptionsDto)))]
async fn request_options(
    State(state): State<AppState>,
    c: Authed<AnyUser>,
    ApiQuery(q): ApiQuery<OptionParams>,
) -> ApiResult<Json<RequestOptionsDto>> {
    let f = OptionFilter {
        search: q.search,
        asset: q.asset,
        account: q.account,
        access_type: q.access_type,
        at: q.at,
        emergency: q.emergency.unwrap_or(false),
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
    };
    let o = uc::options(&state, &c, f).await?;
    Ok(Json(RequestOptionsDto {
        at: ts(o.at),
        time_zone: o.time_zone,
        total: o.total,
        items: o.items.into_iter().map(dto).collect(),
    }))
}
