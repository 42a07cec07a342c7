//! Legal holds (R-SES-13): a session under hold is never deleted by its policy's retention.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authed, HoldKeepers};
use crate::dto::IdPath;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(hold_session, release_session))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Why it is kept (e.g. the case), 1 to 500 characters.
    reason: String,
}

/// Puts a session under legal hold: its recording, search entries and metadata are kept
/// whatever its policy's retention says (Security Policy Administrators, Auditors). Audited.
#[utoipa::path(put, path = "/api/v1/sessions/{id}/legal-hold", tag = "sessions", operation_id = "hold_session",
    params(IdPath), request_body = HoldBody, responses((status = 204, description = "Held")))]
async fn hold_session(
    State(state): State<AppState>,
    caller: Authed<HoldKeepers>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<HoldBody>,
) -> ApiResult<StatusCode> {
    portcullis_app::retention::hold(&state, &caller, &p.id, Some(&b.reason)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Releases a session's legal hold: its policy's retention applies again. Audited.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}/legal-hold", tag = "sessions", operation_id = "release_session",
    params(IdPath), responses((status = 204, description = "Released")))]
async fn release_session(
    State(state): State<AppState>,
    caller: Authed<HoldKeepers>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    portcullis_app::retention::hold(&state, &caller, &p.id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
