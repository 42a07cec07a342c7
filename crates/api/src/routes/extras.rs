//! Reason codes (managed by Security Policy Administrators), favorites (each user's own) and
//! the service switch for session requests (Appliance Administrators).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_store::{Favorite, Named};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, ApplianceAdmins, Authed, PolicyAdmins};
use crate::dto::{ts, IdPath};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::labels::Labels;
use crate::routes::requests::{batch_dto, CreateRequestsRequest, CreateRequestsResponse};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reason_codes, create_reason_code))
        .routes(routes!(delete_reason_code))
        .routes(routes!(list_favorites, create_favorite))
        .routes(routes!(replace_favorite, delete_favorite))
        .routes(routes!(submit_favorite))
        .routes(routes!(get_services, set_services))
}

#[derive(Serialize, ToSchema)]
pub struct ReasonCodeDto {
    id: String,
    name: String,
    description: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonCodeRequest {
    name: String,
    #[serde(default)]
    description: String,
}

/// The reason codes requesters choose from.
#[utoipa::path(get, path = "/api/v1/reason-codes", tag = "requests", operation_id = "list_reason_codes",
    responses((status = 200, description = "Reason codes", body = [ReasonCodeDto])))]
async fn list_reason_codes(State(state): State<AppState>, _c: Authed<AnyUser>) -> ApiResult<Json<Vec<ReasonCodeDto>>> {
    Ok(Json(
        state
            .store
            .reason_codes()
            .await?
            .into_iter()
            .map(|r| ReasonCodeDto { id: r.id, name: r.name, description: r.description })
            .collect(),
    ))
}

/// Adds a reason code.
#[utoipa::path(post, path = "/api/v1/reason-codes", tag = "requests", operation_id = "create_reason_code",
    request_body = ReasonCodeRequest, responses((status = 201, description = "Created", body = ReasonCodeDto)))]
async fn create_reason_code(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiJson(req): ApiJson<ReasonCodeRequest>,
) -> ApiResult<(StatusCode, Json<ReasonCodeDto>)> {
    let r = state.store.create_reason_code(&c.actor(), state.now(), &req.name, &req.description).await?;
    Ok((StatusCode::CREATED, Json(ReasonCodeDto { id: r.id, name: r.name, description: r.description })))
}

/// Deletes a reason code (requests that used it keep its name).
#[utoipa::path(delete, path = "/api/v1/reason-codes/{id}", tag = "requests", operation_id = "delete_reason_code",
    params(IdPath), responses((status = 204, description = "Deleted")))]
async fn delete_reason_code(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    state.store.delete_reason_code(&c.actor(), state.now(), &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct FavoriteDto {
    id: String,
    name: String,
    description: String,
    /// `#RRGGBB`.
    colour: String,
    request: CreateRequestsRequest,
    /// The saved accounts as ACCOUNT@ASSET:ACCESS_TYPE (an id where the account is gone).
    accounts: Vec<String>,
    created_at: String,
    updated_at: String,
}

/// DTOs that name their accounts.
async fn favorite_dtos(state: &AppState, list: Vec<Favorite>) -> ApiResult<Vec<FavoriteDto>> {
    let parsed = list
        .into_iter()
        .map(|f| {
            let request: CreateRequestsRequest = serde_json::from_str(&f.body).map_err(|_| ApiError::internal())?;
            Ok((f, request))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let ids = parsed.iter().flat_map(|(_, r)| r.accounts.iter().map(|a| a.account_id.clone())).collect();
    let labels = Labels::load(state, [(Named::Account, ids)]).await?;
    Ok(parsed
        .into_iter()
        .map(|(f, request)| FavoriteDto {
            accounts: request
                .accounts
                .iter()
                .map(|a| {
                    let name = labels.name(Named::Account, &a.account_id).unwrap_or_else(|| a.account_id.clone());
                    format!("{name}:{}", a.access_type)
                })
                .collect(),
            id: f.id,
            name: f.name,
            description: f.description,
            colour: f.colour,
            request,
            created_at: ts(f.created_at),
            updated_at: ts(f.updated_at),
        })
        .collect())
}

async fn favorite_dto(state: &AppState, f: Favorite) -> ApiResult<FavoriteDto> {
    Ok(favorite_dtos(state, vec![f]).await?.remove(0))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FavoriteRequest {
    name: String,
    #[serde(default)]
    description: String,
    /// `#RRGGBB`; default `#4a6fa5`.
    colour: Option<String>,
    /// The request to save, as for `POST /api/v1/requests`.
    request: CreateRequestsRequest,
}

fn colour(c: Option<&str>) -> ApiResult<String> {
    let c = c.unwrap_or("#4a6fa5");
    let ok = c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit());
    if !ok {
        return Err(ApiError::invalid("colour", "must be #RRGGBB"));
    }
    Ok(c.to_ascii_lowercase())
}

fn body(req: &FavoriteRequest) -> ApiResult<String> {
    if req.request.accounts.is_empty() {
        return Err(ApiError::invalid("request.accounts", "name at least one account"));
    }
    serde_json::to_string(&req.request).map_err(|_| ApiError::internal())
}

/// Your saved requests.
#[utoipa::path(get, path = "/api/v1/favorites", tag = "requests", operation_id = "list_favorites",
    responses((status = 200, description = "Favorites", body = [FavoriteDto])))]
async fn list_favorites(State(state): State<AppState>, c: Authed<AnyUser>) -> ApiResult<Json<Vec<FavoriteDto>>> {
    Ok(Json(favorite_dtos(&state, state.store.favorites(&c.user.id).await?).await?))
}

/// Saves a request as a favorite.
#[utoipa::path(post, path = "/api/v1/favorites", tag = "requests", operation_id = "create_favorite",
    request_body = FavoriteRequest, responses((status = 201, description = "Saved", body = FavoriteDto)))]
async fn create_favorite(
    State(state): State<AppState>,
    c: Authed<AnyUser>,
    ApiJson(req): ApiJson<FavoriteRequest>,
) -> ApiResult<(StatusCode, Json<FavoriteDto>)> {
    let colour = colour(req.colour.as_deref())?;
    let f = state
        .store
        .put_favorite(&c.actor(), state.now(), &c.user.id, None, &req.name, &req.description, &colour, &body(&req)?)
        .await?;
    Ok((StatusCode::CREATED, Json(favorite_dto(&state, f).await?)))
}

/// Replaces one of your favorites.
#[utoipa::path(put, path = "/api/v1/favorites/{id}", tag = "requests", operation_id = "replace_favorite",
    params(IdPath), request_body = FavoriteRequest, responses((status = 200, description = "Saved", body = FavoriteDto)))]
async fn replace_favorite(
    State(state): State<AppState>,
    c: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<FavoriteRequest>,
) -> ApiResult<Json<FavoriteDto>> {
    let colour = colour(req.colour.as_deref())?;
    let f = state
        .store
        .put_favorite(
            &c.actor(),
            state.now(),
            &c.user.id,
            Some(&p.id),
            &req.name,
            &req.description,
            &colour,
            &body(&req)?,
        )
        .await?;
    Ok(Json(favorite_dto(&state, f).await?))
}

/// Deletes one of your favorites.
#[utoipa::path(delete, path = "/api/v1/favorites/{id}", tag = "requests", operation_id = "delete_favorite",
    params(IdPath), responses((status = 204, description = "Deleted")))]
async fn delete_favorite(
    State(state): State<AppState>,
    c: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    state.store.delete_favorite(&c.actor(), state.now(), &c.user.id, &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Submits a favorite as a new request.
#[utoipa::path(post, path = "/api/v1/favorites/{id}/submit", tag = "requests", operation_id = "submit_favorite",
    params(IdPath), responses((status = 200, description = "One outcome per account", body = CreateRequestsResponse)))]
async fn submit_favorite(
    State(state): State<AppState>,
    c: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<CreateRequestsResponse>> {
    let f = state.store.favorite(&c.user.id, &p.id).await?;
    let req: CreateRequestsRequest = serde_json::from_str(&f.body).map_err(|_| ApiError::internal())?;
    Ok(Json(batch_dto(&state, portcullis_app::requests::create(&state, &c, req.into()).await?).await?))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Whether SSH, RDP and Telnet session requests may be made.
    session_requests: bool,
}

/// Which request services are on.
#[utoipa::path(get, path = "/api/v1/services", tag = "requests", operation_id = "get_services",
    responses((status = 200, description = "Services", body = Services)))]
async fn get_services(State(state): State<AppState>, _c: Authed<AnyUser>) -> ApiResult<Json<Services>> {
    Ok(Json(Services { session_requests: portcullis_app::services::session_requests(&state).await? }))
}

/// Switches request services on or off (Appliance Administrators).
#[utoipa::path(put, path = "/api/v1/services", tag = "requests", operation_id = "set_services",
    request_body = Services, responses((status = 200, description = "Services", body = Services)))]
async fn set_services(
    State(state): State<AppState>,
    c: Authed<ApplianceAdmins>,
    ApiJson(req): ApiJson<Services>,
) -> ApiResult<Json<Services>> {
    let on = portcullis_app::services::set_session_requests(&state, &c, req.session_requests).await?;
    Ok(Json(Services { session_requests: on }))
}
