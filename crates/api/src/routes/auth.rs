//! Signing in and out, and the one-time bootstrap of the first administrator.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_core::role::Role;
use portcullis_core::validate;
use portcullis_store::{Actor, NewEvent, NewUser, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::{hash_password_blocking, token_hash, AnyUser, Authed, Source};
use crate::dto::{ts, UserDto};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bootstrap))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(set_password_by_link))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    /// The one-time secret the server printed on its first start.
    #[schema(value_type = String, format = Password)]
    secret: Zeroizing<String>,
    username: String,
    #[schema(value_type = String, format = Password)]
    password: Zeroizing<String>,
    display_name: Option<String>,
    /// IANA time zone; UTC when absent.
    time_zone: Option<String>,
}

/// Creates the first administrator with every administrative role, using the one-time
/// bootstrap secret. Works once.
#[utoipa::path(post, path = "/api/v1/bootstrap", tag = "auth", operation_id = "bootstrap",
    request_body = BootstrapRequest,
    responses((status = 201, description = "The first administrator", body = UserDto)))]
async fn bootstrap(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<BootstrapRequest>,
) -> ApiResult<(StatusCode, Json<UserDto>)> {
    if state.store.user_count().await? > 0 {
        return Err(ApiError::conflict(
            "already_bootstrapped",
            "the first administrator exists already; sign in instead",
        ));
    }
    validate::username("username", &req.username)?;
    validate::password("password", &req.password, state.auth.password_min_length)?;
    let display_name = req.display_name.clone().unwrap_or_else(|| req.username.clone());
    validate::name("display_name", &display_name)?;
    let time_zone = req.time_zone.clone().unwrap_or_else(|| "UTC".into());
    validate::time_zone("time_zone", &time_zone)?;
    let now = state.now();
    let password_hash = hash_password_blocking(req.password).await?;
    let new = NewUser {
        username: req.username.clone(),
        display_name,
        email: None,
        password_hash,
        roles: Role::ALL.to_vec(),
        time_zone,
        time_zone_locked: false,
    };
    match state.store.bootstrap_admin(&source, now, &token_hash(&req.secret), new).await? {
        Some(user) => Ok((StatusCode::CREATED, Json(UserDto::from(&user)))),
        None => {
            let actor = Actor { id: String::new(), name: req.username.clone(), source };
            state
                .store
                .record(&actor, now, NewEvent::success("system.bootstrap", "user", "").with_outcome(Outcome::Failure))
                .await?;
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_bootstrap_secret",
                "the bootstrap secret is wrong or was used already",
            ))
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    #[schema(value_type = String, format = Password)]
    password: Zeroizing<String>,
    /// The current six-digit code, for users enrolled in TOTP.
    totp_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: String,
    pub user: UserDto,
}

/// Signs in with username, password and (when enrolled) a TOTP code; returns a session token.
/// Repeated failures lock the account for a while.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", operation_id = "login",
    request_body = LoginRequest,
    responses((status = 200, description = "Signed in", body = LoginResponse)))]
async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let s =
        portcullis_app::auth::sign_in(&state, &source, &req.username, req.password, req.totp_code.as_deref()).await?;
    Ok(Json(LoginResponse { token: s.token.to_string(), expires_at: ts(s.expires_at), user: UserDto::from(&s.user) }))
}

/// Ends the current login session. (API tokens are revoked through `/api/v1/me/tokens`.)
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", operation_id = "logout",
    responses((status = 204, description = "Signed out")))]
async fn logout(State(state): State<AppState>, caller: Authed<AnyUser>) -> ApiResult<StatusCode> {
    state.store.end_login_session(&caller.actor(), state.now(), &caller.token_hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordRequest {
    /// The token of the set-password link the user was mailed (the last part of the link).
    #[schema(value_type = String, format = Password)]
    token: Zeroizing<String>,
    #[schema(value_type = String, format = Password)]
    new_password: Zeroizing<String>,
}

/// Sets a password with the one-time link an administrator's reset or an invitation mailed
/// to the user (valid 24 hours, once). The user then signs in with it.
#[utoipa::path(post, path = "/api/v1/auth/set-password", tag = "auth", operation_id = "set_password_by_link",
    request_body = SetPasswordRequest,
    responses((status = 200, description = "Password set", body = UserDto)))]
async fn set_password_by_link(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<SetPasswordRequest>,
) -> ApiResult<Json<UserDto>> {
    let user = portcullis_app::password_reset::set_password(&state, &source, &req.token, req.new_password).await?;
    Ok(Json(UserDto::from(&user)))
}
