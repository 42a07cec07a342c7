//! The audit log for Auditors: query with filters and paging, and verify the chain.

use axum::extract::State;
use axum::Json;
use portcullis_store::{AuditEvent, AuditQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuditReaders, Authed};
use crate::dto::{parse_ts, ts};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events)).routes(routes!(verify_chain))
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventDto {
    seq: i64,
    at: String,
    actor_id: String,
    actor_name: String,
    action: String,
    object_type: String,
    object_id: String,
    source: String,
    /// success, failure or denied.
    outcome: String,
    details: serde_json::Value,
    link: String,
}

impl From<AuditEvent> for AuditEventDto {
    fn from(e: AuditEvent) -> Self {
        AuditEventDto {
            seq: e.seq,
            at: ts(e.at),
            details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::String(e.details)),
            actor_id: e.actor_id,
            actor_name: e.actor_name,
            action: e.action,
            object_type: e.object_type,
            object_id: e.object_id,
            source: e.source,
            outcome: e.outcome,
            link: e.link,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// RFC 3339; events at or after.
    from: Option<String>,
    /// RFC 3339; events before.
    to: Option<String>,
    /// Actor username.
    actor: Option<String>,
    /// e.g. `auth.login`, `asset.create`.
    action: Option<String>,
    object_type: Option<String>,
    object_id: Option<String>,
    /// Paging cursor: the `seq` of the last event of the previous page.
    #[param(minimum = 0)]
    after: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    events: Vec<AuditEventDto>,
    /// Pass as `after` to get the next page; absent on the last page.
    next_after: Option<i64>,
}

/// Audit events in sequence order, filtered and paged.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", operation_id = "list_audit_events",
    params(EventQuery),
    responses((status = 200, description = "A page of events", body = EventPage)))]
async fn list_events(
    State(state): State<AppState>,
    c: Authed<AuditReaders>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<EventPage>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    if q.after.is_some_and(|a| a < 0) {
        return Err(ApiError::invalid("after", "must not be negative"));
    }
    let from = q.from.as_deref().map(|t| parse_ts("from", t)).transpose()?;
    let to = q.to.as_deref().map(|t| parse_ts("to", t)).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if t < f {
            return Err(ApiError::invalid("to", "must not be before 'from'"));
        }
    }
    let query = AuditQuery {
        from,
        to,
        actor: q.actor,
        action: q.action,
        object_type: q.object_type,
        object_id: q.object_id,
        after_seq: q.after,
        limit,
    };
    let events = portcullis_app::audit::events(&state, &c, &query).await?;
    let next_after = if events.len() as i64 == limit { events.last().map(|e| e.seq) } else { None };
    Ok(Json(EventPage { events: events.into_iter().map(AuditEventDto::from).collect(), next_after }))
}

#[derive(Serialize, ToSchema)]
pub struct ChainReportDto {
    /// True when every event is intact and in place.
    ok: bool,
    /// Events checked (when intact).
    checked: u64,
    /// The last sequence number according to the chain head.
    head_seq: i64,
    /// The first broken link, if any.
    first_broken_seq: Option<i64>,
    reason: Option<String>,
}

/// Verifies the whole hash chain and reports the first broken link.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", operation_id = "verify_audit_chain",
    responses((status = 200, description = "The verification report", body = ChainReportDto)))]
async fn verify_chain(State(state): State<AppState>, c: Authed<AuditReaders>) -> ApiResult<Json<ChainReportDto>> {
    let r = portcullis_app::audit::verify(&state, &c).await?;
    Ok(Json(ChainReportDto {
        ok: r.broken.is_none(),
        checked: r.checked,
        head_seq: r.head_seq,
        first_broken_seq: r.broken.as_ref().map(|b| b.seq),
        reason: r.broken.as_ref().map(|b| b.reason.describe().to_owned()),
    }))
}
