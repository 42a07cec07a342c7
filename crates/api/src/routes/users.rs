//! User administration (User Administrators; roles by Appliance Administrators).

use std::str::FromStr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_core::role::Role;
use portcullis_core::validate;
use portcullis_store::{NewUser, User, UserPatch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::{hash_password_blocking, ApplianceAdmins, Authed, Caller, DirectoryReaders, UserAdmins};
use crate::dto::{double_option, IdPath, PageParams, UserDto};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(set_roles))
        .routes(routes!(reset_password))
        .routes(routes!(unlock_user))
        .routes(routes!(reset_totp))
}

fn parse_roles(names: &[String]) -> ApiResult<Vec<Role>> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| Role::from_str(n).map_err(|e| ApiError::invalid(format!("roles[{i}]"), e.to_string())))
        .collect()
}

/// Loads the user `id`, refusing when the caller may not manage them (see
/// [`Caller::may_manage`]).
pub(crate) async fn managed_user(state: &AppState, caller: &Caller, id: &str) -> ApiResult<User> {
    let target = state.store.user(id).await?;
    if caller.may_manage(&target) {
        Ok(target)
    } else {
        Err(ApiError::forbidden(
            "this user holds administrative roles you do not have; an Appliance Administrator must do this",
        ))
    }
}

/// Checks the profile fields a user or a User Administrator may change.
pub(crate) fn validate_profile(
    display_name: Option<&str>,
    email: Option<&str>,
    time_zone: Option<&str>,
) -> ApiResult<()> {
    if let Some(n) = display_name {
        validate::name("display_name", n)?;
    }
    if let Some(e) = email {
        validate::email("email", e)?;
    }
    if let Some(tz) = time_zone {
        validate::time_zone("time_zone", tz)?;
    }
    Ok(())
}

/// All users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "list_users",
    params(PageParams),
    responses((status = 200, description = "Users", body = [UserDto])))]
async fn list_users(
    State(state): State<AppState>,
    _caller: Authed<DirectoryReaders>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Vec<UserDto>>> {
    let users = state.store.users(page.page()?).await?;
    Ok(Json(users.iter().map(UserDto::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    username: String,
    display_name: Option<String>,
    email: Option<String>,
    /// The initial password, which the administrator then knows until the user changes it.
    /// Absent: the user is mailed an invitation, a one-time link to set their own (needs
    /// `email` and e-mail configured on the server).
    #[schema(value_type = Option<String>, format = Password)]
    password: Option<Zeroizing<String>>,
    /// IANA time zone; UTC when absent.
    time_zone: Option<String>,
    #[serde(default)]
    time_zone_locked: bool,
    /// Administrative roles; only an Appliance Administrator may grant them.
    #[serde(default)]
    roles: Vec<String>,
}

/// Creates a local user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", operation_id = "create_user",
    request_body = CreateUserRequest,
    responses((status = 201, description = "Created", body = UserDto)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Authed<UserAdmins>,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserDto>)> {
    validate::username("username", &req.username)?;
    let display_name = req.display_name.clone().unwrap_or_else(|| req.username.clone());
    validate::name("display_name", &display_name)?;
    if let Some(e) = &req.email {
        validate::email("email", e)?;
    }
    if let Some(password) = &req.password {
        validate::password("password", password, state.auth.password_min_length)?;
    } else if req.email.is_none() {
        return Err(validate::ValidationError::new(
            "email",
            "needed to invite the user (a set-password link is mailed there); or give an initial password",
        )
        .into());
    } else if !state.mail {
        return Err(validate::ValidationError::new(
            "password",
            "e-mail is not configured on this server, so no invitation can be sent; give an initial password",
        )
        .into());
    }
    let time_zone = req.time_zone.clone().unwrap_or_else(|| "UTC".into());
    validate::time_zone("time_zone", &time_zone)?;
    let roles = parse_roles(&req.roles)?;
    if !roles.is_empty() && !caller.has(Role::ApplianceAdmin) {
        return Err(ApiError::forbidden("only an Appliance Administrator may grant administrative roles"));
    }
    let invite = req.password.is_none();
    let password = req.password.unwrap_or_else(|| portcullis_app::auth::new_token("unusable_"));
    let password_hash = hash_password_blocking(password).await?;
    let new = NewUser {
        username: req.username,
        display_name,
        email: req.email,
        password_hash,
        roles,
        time_zone,
        time_zone_locked: req.time_zone_locked,
    };
    let user = state.store.create_user(&caller.actor(), state.now(), new).await?;
    if invite {
        portcullis_app::password_reset::reset(&state, &caller, &user, true).await?;
    }
    Ok((StatusCode::CREATED, Json(UserDto::from(&user))))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", operation_id = "get_user",
    params(IdPath),
    responses((status = 200, description = "The user", body = UserDto)))]
async fn get_user(
    State(state): State<AppState>,
    _caller: Authed<DirectoryReaders>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<UserDto>> {
    Ok(Json(UserDto::from(&state.store.user(&p.id).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    display_name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    email: Option<Option<String>>,
    time_zone: Option<String>,
    /// Forbid the user to change their own time zone.
    time_zone_locked: Option<bool>,
    /// A disabled user cannot sign in; their sessions end.
    disabled: Option<bool>,
}

/// Changes a user's profile, time-zone rule or disabled flag.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", operation_id = "update_user",
    params(IdPath), request_body = UpdateUserRequest,
    responses((status = 200, description = "Updated", body = UserDto)))]
async fn update_user(
    State(state): State<AppState>,
    caller: Authed<UserAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> ApiResult<Json<UserDto>> {
    validate_profile(
        req.display_name.as_deref(),
        req.email.as_ref().and_then(|e| e.as_deref()),
        req.time_zone.as_deref(),
    )?;
    let target = managed_user(&state, &caller, &p.id).await?;
    if req.disabled == Some(true) && target.id == caller.user.id {
        return Err(ApiError::conflict("cannot_disable_self", "you cannot disable your own account"));
    }
    let patch = UserPatch {
        display_name: req.display_name,
        email: req.email,
        time_zone: req.time_zone,
        time_zone_locked: req.time_zone_locked,
        disabled: req.disabled,
    };
    let user = state.store.update_user(&caller.actor(), state.now(), &p.id, patch).await?;
    Ok(Json(UserDto::from(&user)))
}

/// Deletes a user. Their audit events stay.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", operation_id = "delete_user",
    params(IdPath),
    responses((status = 204, description = "Deleted")))]
async fn delete_user(
    State(state): State<AppState>,
    caller: Authed<UserAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    let target = managed_user(&state, &caller, &p.id).await?;
    if target.id == caller.user.id {
        return Err(ApiError::conflict("cannot_delete_self", "you cannot delete your own account"));
    }
    state.store.delete_user(&caller.actor(), state.now(), &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRolesRequest {
    /// The complete new set of administrative roles.
    roles: Vec<String>,
}

/// Replaces a user's administrative roles. The last Appliance Administrator keeps the role.
#[utoipa::path(put, path = "/api/v1/users/{id}/roles", tag = "users", operation_id = "set_user_roles",
    params(IdPath), request_body = SetRolesRequest,
    responses((status = 200, description = "Updated", body = UserDto)))]
async fn set_roles(
    State(state): State<AppState>,
    caller: Authed<ApplianceAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<SetRolesRequest>,
) -> ApiResult<Json<UserDto>> {
    let roles = parse_roles(&req.roles)?;
    let target = state.store.user(&p.id).await?;
    if target.roles.contains(&Role::ApplianceAdmin) && !roles.contains(&Role::ApplianceAdmin) {
        let admins = state
            .store
            .users(portcullis_store::Page { limit: i64::MAX, offset: 0 })
            .await?
            .iter()
            .filter(|u| u.roles.contains(&Role::ApplianceAdmin) && !u.disabled)
            .count();
        if admins <= 1 {
            return Err(ApiError::conflict(
                "last_appliance_admin",
                "this is the last Appliance Administrator; grant the role to someone else first",
            ));
        }
    }
    let user = state.store.set_roles(&caller.actor(), state.now(), &p.id, &roles).await?;
    Ok(Json(UserDto::from(&user)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// Not accepted: administrators do not choose users' passwords (the user is mailed a link).
    #[schema(value_type = Option<String>, format = Password)]
    new_password: Option<Zeroizing<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ResetPasswordResponse {
    /// The user's address the set-password link went to, masked.
    sent_to: String,
    /// How long the link works.
    link_hours: i64,
    message: String,
}

/// Resets a user's password: the old one stops working, their sessions and API tokens end,
/// and they are mailed a one-time set-password link that the administrator never sees.
/// Refused when e-mail is not configured, the user has no address, or the caller set that
/// address themself (another User Administrator must send the link).
#[utoipa::path(post, path = "/api/v1/users/{id}/password", tag = "users", operation_id = "reset_user_password",
    params(IdPath), request_body = ResetPasswordRequest,
    responses((status = 202, description = "Link sent", body = ResetPasswordResponse)))]
async fn reset_password(
    State(state): State<AppState>,
    caller: Authed<UserAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<ResetPasswordResponse>)> {
    // No body, or `{}`: what the reset needs is only whose.
    let req: ResetPasswordRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResetPasswordRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the request body does not fit: send no body, or {}",
            )
        })?
    };
    if req.new_password.is_some() {
        return Err(validate::ValidationError::new(
            "new_password",
            "administrators do not choose users' passwords; send no body: the user is mailed a set-password link",
        )
        .into());
    }
    let user = managed_user(&state, &caller, &p.id).await?;
    let sent = portcullis_app::password_reset::reset(&state, &caller, &user, false).await?;
    let message = format!(
        "{}'s password no longer works and their sessions ended; a set-password link was sent to {} (valid {} hours)",
        user.username, sent.sent_to, sent.link_hours
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(ResetPasswordResponse { sent_to: sent.sent_to, link_hours: sent.link_hours, message }),
    ))
}

/// Lifts a lockout after failed sign-ins.
#[utoipa::path(post, path = "/api/v1/users/{id}/unlock", tag = "users", operation_id = "unlock_user",
    params(IdPath),
    responses((status = 200, description = "Unlocked", body = UserDto)))]
async fn unlock_user(
    State(state): State<AppState>,
    caller: Authed<UserAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<UserDto>> {
    managed_user(&state, &caller, &p.id).await?;
    Ok(Json(UserDto::from(&state.store.unlock_user(&caller.actor(), state.now(), &p.id).await?)))
}

/// Removes a user's one-time-code enrolment (lost phone); they can enrol again.
#[utoipa::path(post, path = "/api/v1/users/{id}/totp/reset", tag = "users", operation_id = "reset_user_totp",
    params(IdPath),
    responses((status = 204, description = "Enrolment removed")))]
async fn reset_totp(
    State(state): State<AppState>,
    caller: Authed<UserAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    managed_user(&state, &caller, &p.id).await?;
    state.store.set_totp_enabled(&caller.actor(), state.now(), &p.id, false, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
