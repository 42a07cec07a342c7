//! Requests to view recordings (R-REQ-12): when a session's access policy asks for approval,
//! whoever may replay it asks with a justification and another approver decides.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_app::recording_views as uc;
use portcullis_store::{Named, RecordingView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, Authed};
use crate::dto::{ts, IdPath};
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::labels::Labels;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_recording_view))
        .routes(routes!(list_recording_view_requests))
        .routes(routes!(approve_recording_view))
        .routes(routes!(deny_recording_view))
}

/// A request to view a session's recording.
#[derive(Serialize, ToSchema)]
pub struct RecordingViewDto {
    id: String,
    session_id: String,
    /// Who asked.
    requester: String,
    justification: String,
    /// pending, approved or denied.
    state: String,
    decided_by: Option<String>,
    decided_at: Option<String>,
    comment: Option<String>,
    created_at: String,
    /// Approved: viewing is allowed until then.
    expires_at: Option<String>,
    /// The session: whose, on what, when.
    session_user: String,
    account_name: Option<String>,
    asset_name: Option<String>,
    session_started_at: String,
}

async fn dtos(state: &AppState, views: Vec<RecordingView>) -> ApiResult<Vec<RecordingViewDto>> {
    let mut sessions = Vec::new();
    for v in &views {
        sessions.push(state.store.session(&v.session_id).await.ok());
    }
    let accounts: Vec<String> = sessions.iter().flatten().filter_map(|s| s.account_id.clone()).collect();
    let assets: Vec<String> = sessions.iter().flatten().filter_map(|s| s.asset_id.clone()).collect();
    let labels = Labels::load(state, [(Named::Account, accounts), (Named::Asset, assets)]).await?;
    Ok(views
        .into_iter()
        .zip(sessions)
        .map(|(v, s)| {
            let account = s.as_ref().and_then(|s| s.account_id.as_deref()).and_then(|a| labels.name(Named::Account, a));
            RecordingViewDto {
                id: v.id,
                session_id: v.session_id,
                requester: v.requester_name,
                justification: v.justification,
                state: v.state,
                decided_by: v.decided_by_name,
                decided_at: v.decided_at.map(ts),
                comment: v.comment,
                created_at: ts(v.created_at),
                expires_at: v.expires_at.map(ts),
                session_user: s.as_ref().map(|s| s.username.clone()).unwrap_or_default(),
                account_name: account.map(|n| n.rsplit_once('@').map_or(n.clone(), |(a, _)| a.to_owned())),
                asset_name: s.as_ref().and_then(|s| s.asset_id.as_deref()).and_then(|a| labels.name(Named::Asset, a)),
                session_started_at: s.as_ref().map(|s| ts(s.started_at)).unwrap_or_default(),
            }
        })
        .collect())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewRequestBody {
    /// Why you need to see this session (10 to 1000 characters).
    justification: String,
}

/// Asks to view a session's recording whose access policy requires approval. Someone else who
/// may replay it decides; an approval lasts 24 hours.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/view-requests", tag = "sessions", operation_id = "request_recording_view",
    params(IdPath), request_body = ViewRequestBody,
    responses((status = 201, description = "Asked", body = RecordingViewDto)))]
async fn request_recording_view(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<ViewRequestBody>,
) -> ApiResult<(StatusCode, Json<RecordingViewDto>)> {
    let v = uc::request(&state, &caller, &p.id, &b.justification).await?;
    Ok((StatusCode::CREATED, Json(dtos(&state, vec![v]).await?.remove(0))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewListQuery {
    /// true: your own requests (any state); false (default): the pending ones you may decide.
    mine: Option<bool>,
}

/// Requests to view recordings: the pending ones you may decide, or your own.
#[utoipa::path(get, path = "/api/v1/recording-view-requests", tag = "sessions", operation_id = "list_recording_view_requests",
    params(ViewListQuery), responses((status = 200, description = "Requests, newest first", body = [RecordingViewDto])))]
async fn list_recording_view_requests(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiQuery(q): ApiQuery<ViewListQuery>,
) -> ApiResult<Json<Vec<RecordingViewDto>>> {
    let list = uc::list(&state, &caller, q.mine.unwrap_or(false)).await?;
    Ok(Json(dtos(&state, list).await?))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecideViewBody {
    /// Shown to the requester; at most 1000 characters.
    comment: Option<String>,
}

/// Approves a request to view a recording (for 24 hours); never your own.
#[utoipa::path(post, path = "/api/v1/recording-view-requests/{id}/approve", tag = "sessions", operation_id = "approve_recording_view",
    params(IdPath), request_body = DecideViewBody,
    responses((status = 200, description = "Approved", body = RecordingViewDto)))]
async fn approve_recording_view(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<DecideViewBody>,
) -> ApiResult<Json<RecordingViewDto>> {
    let v = uc::decide(&state, &caller, &p.id, true, b.comment.as_deref()).await?;
    Ok(Json(dtos(&state, vec![v]).await?.remove(0)))
}

/// Denies a request to view a recording; never your own.
#[utoipa::path(post, path = "/api/v1/recording-view-requests/{id}/deny", tag = "sessions", operation_id = "deny_recording_view",
    params(IdPath), request_body = DecideViewBody,
    responses((status = 200, description = "Denied", body = RecordingViewDto)))]
async fn deny_recording_view(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<DecideViewBody>,
) -> ApiResult<Json<RecordingViewDto>> {
    let v = uc::decide(&state, &caller, &p.id, false, b.comment.as_deref()).await?;
    Ok(Json(dtos(&state, vec![v]).await?.remove(0)))
}
