//! Password profiles (R-VAULT-2): what generated passwords look like, per platform
//! (`platform:linux`) or per asset (`asset:<id>`). The asset's profile wins over its
//! platform's, which wins over the built-in default (24 characters of all four classes).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_core::inventory::Platform;
use portcullis_vault::PasswordProfile;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AssetAdmins, Authed, InventoryReaders};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_profiles)).routes(routes!(put_profile, delete_profile))
}

#[derive(Serialize, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProfileDto {
    /// 8 to 256.
    pub length: usize,
    pub lowercase: bool,
    pub uppercase: bool,
    pub digits: bool,
    pub symbols: bool,
    /// Characters never used.
    #[serde(default)]
    pub excluded: String,
}

impl From<ProfileDto> for PasswordProfile {
    fn from(d: ProfileDto) -> Self {
        PasswordProfile {
            length: d.length,
            lowercase: d.lowercase,
            uppercase: d.uppercase,
            digits: d.digits,
            symbols: d.symbols,
            excluded: d.excluded,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ScopedProfile {
    /// `platform:<platform>` or `asset:<asset id>`.
    scope: String,
    profile: ProfileDto,
}

#[derive(Deserialize, IntoParams)]
pub struct ScopePath {
    /// `platform:<platform>` (linux, unix, windows, network_device, directory, other) or `asset:<asset id>`.
    scope: String,
}

async fn check_scope(state: &AppState, scope: &str) -> ApiResult<()> {
    if let Some(p) = scope.strip_prefix("platform:") {
        if Platform::parse(p).is_none() {
            return Err(ApiError::invalid(
                "scope",
                "unknown platform; use linux, unix, windows, network_device, directory or other",
            ));
        }
        return Ok(());
    }
    if let Some(id) = scope.strip_prefix("asset:") {
        state.store.asset(id).await?;
        return Ok(());
    }
    Err(ApiError::invalid("scope", "must be platform:<platform> or asset:<asset id>"))
}

/// Every password profile.
#[utoipa::path(get, path = "/api/v1/password-profiles", tag = "credentials", operation_id = "list_password_profiles",
    responses((status = 200, description = "Profiles", body = [ScopedProfile])))]
async fn list_profiles(
    State(state): State<AppState>,
    _c: Authed<InventoryReaders>,
) -> ApiResult<Json<Vec<ScopedProfile>>> {
    let rows = state.store.password_profiles().await?;
    Ok(Json(
        rows.into_iter()
            .filter_map(|(scope, text)| {
                serde_json::from_str(&text).ok().map(|profile| ScopedProfile { scope, profile })
            })
            .collect(),
    ))
}

/// Sets the password profile of a platform or an asset.
#[utoipa::path(put, path = "/api/v1/password-profiles/{scope}", tag = "credentials", operation_id = "put_password_profile",
    params(ScopePath), request_body = ProfileDto, responses((status = 200, description = "Stored", body = ScopedProfile)))]
async fn put_profile(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<ScopePath>,
    ApiJson(body): ApiJson<ProfileDto>,
) -> ApiResult<Json<ScopedProfile>> {
    check_scope(&state, &p.scope).await?;
    PasswordProfile::from(body.clone()).validate().map_err(|e| ApiError::invalid("profile", e.to_string()))?;
    let text = serde_json::to_string(&body).map_err(|_| ApiError::internal())?;
    state.store.put_password_profile(&c.actor(), state.now(), &p.scope, &text).await?;
    Ok(Json(ScopedProfile { scope: p.scope, profile: body }))
}

/// Removes a profile (the next broader one applies again).
#[utoipa::path(delete, path = "/api/v1/password-profiles/{scope}", tag = "credentials", operation_id = "delete_password_profile",
    params(ScopePath), responses((status = 204, description = "Removed")))]
async fn delete_profile(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<ScopePath>,
) -> ApiResult<StatusCode> {
    state.store.delete_password_profile(&c.actor(), state.now(), &p.scope).await?;
    Ok(StatusCode::NO_CONTENT)
}
