//! The signed-in user's own profile, password, one-time-code enrolment and API tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_core::{totp, validate};
use portcullis_store::ApiToken;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::{hash_password_blocking, new_token, token_hash, verify_password_blocking, AnyUser, Authed};
use crate::dto::{double_option, parse_ts, ts, IdPath, UserDto};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, update_me))
        .routes(routes!(change_password))
        .routes(routes!(enroll_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(disable_totp))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_ssh_keys, add_ssh_key))
        .routes(routes!(ssh_key_challenge))
        .routes(routes!(remove_ssh_key))
}

#[derive(Serialize, ToSchema)]
pub struct MeDto {
    #[serde(flatten)]
    user: UserDto,
    /// Ids of the user groups the user belongs to.
    groups: Vec<String>,
    /// Their names, in the same order.
    group_names: Vec<String>,
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "me", operation_id = "get_me",
    responses((status = 200, description = "The signed-in user", body = MeDto)))]
async fn get_me(State(state): State<AppState>, caller: Authed<AnyUser>) -> ApiResult<Json<MeDto>> {
    let groups = state.store.groups_of_user(&caller.user.id).await?;
    let labels = crate::labels::Labels::load(&state, [(portcullis_store::Named::UserGroup, groups.clone())]).await?;
    let group_names = labels.names(portcullis_store::Named::UserGroup, &groups);
    Ok(Json(MeDto { user: UserDto::from(&caller.user), groups, group_names }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    display_name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    email: Option<Option<String>>,
    /// IANA time zone; refused when a User Administrator locked it.
    time_zone: Option<String>,
}

/// Changes the signed-in user's display name, e-mail or time zone.
#[utoipa::path(patch, path = "/api/v1/me", tag = "me", operation_id = "update_me",
    request_body = UpdateMeRequest,
    responses((status = 200, description = "Updated", body = UserDto)))]
async fn update_me(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiJson(req): ApiJson<UpdateMeRequest>,
) -> ApiResult<Json<UserDto>> {
    let change = portcullis_app::me::ProfileChange {
        display_name: req.display_name,
        email: req.email,
        time_zone: req.time_zone,
    };
    let user = portcullis_app::me::update(&state, &caller, change).await?;
    Ok(Json(UserDto::from(&user)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    current_password: Zeroizing<String>,
    #[schema(value_type = String, format = Password)]
    new_password: Zeroizing<String>,
}

/// Changes the signed-in user's password. Other sessions of the user end.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "me", operation_id = "change_my_password",
    request_body = ChangePasswordRequest,
    responses((status = 204, description = "Changed")))]
async fn change_password(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    validate::password("new_password", &req.new_password, state.auth.password_min_length)?;
    let login = state.store.login_state(&caller.user.username).await?.ok_or_else(|| ApiError::not_found("user"))?;
    if !verify_password_blocking(req.current_password, login.password_hash).await? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "invalid_credentials", "the current password is wrong"));
    }
    let hash = hash_password_blocking(req.new_password).await?;
    state.store.set_password(&caller.actor(), state.now(), &caller.user.id, &hash, Some(&caller.token_hash)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// Base32 secret for the authenticator app. Shown once, here only.
    secret: String,
    /// `otpauth://` URI (for a QR code).
    otpauth_uri: String,
}

/// Starts TOTP enrolment: returns a new secret; sign-in needs codes only after confirmation.
#[utoipa::path(post, path = "/api/v1/me/totp", tag = "me", operation_id = "enroll_totp",
    responses((status = 200, description = "Secret to enter in the authenticator app", body = TotpEnrolment)))]
async fn enroll_totp(State(state): State<AppState>, caller: Authed<AnyUser>) -> ApiResult<Json<TotpEnrolment>> {
    if caller.user.totp_enabled {
        return Err(ApiError::conflict(
            "totp_already_enabled",
            "one-time codes are already enabled; disable them first",
        ));
    }
    let mut secret = Zeroizing::new([0u8; 20]);
    rand::rngs::OsRng.fill_bytes(secret.as_mut());
    let encoded = totp::encode_secret(secret.as_ref());
    let sealed = portcullis_app::totp_secret::seal(&state.vault, &caller.user.id, &encoded);
    state.store.set_totp_pending(&caller.actor(), state.now(), &caller.user.id, &sealed).await?;
    let otpauth_uri = totp::otpauth_uri(&state.auth.totp_issuer, &caller.user.username, secret.as_ref());
    Ok(Json(TotpEnrolment { secret: encoded, otpauth_uri }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    /// The current six-digit code.
    code: String,
}

/// Checks a one-time code of the caller's. Once codes are on (`enforced`), wrong ones are
/// audited and count toward the account's lockout and the address's limit, as at sign-in
/// (issue 13, finding 19): a signed-in session cannot be used to guess codes. While enrolling,
/// the caller holds the key anyway, and a mistyped code is only an invalid input.
async fn check_code(state: &AppState, caller: &Authed<AnyUser>, code: &str, enforced: bool) -> ApiResult<i64> {
    let now = state.now();
    let actor = caller.actor();
    if let Some(wait) = state.throttle.source_wait(&actor.source, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many failed attempts from your address; wait {wait} seconds and try again"),
        ));
    }
    let login = state.store.login_state(&caller.user.username).await?.ok_or_else(|| ApiError::not_found("user"))?;
    if login.user.locked_until.is_some_and(|t| t > now) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_locked",
            "too many wrong codes or passwords; the account is locked for a while (a User Administrator can unlock it)",
        ));
    }
    let secret = login
        .totp_secret
        .as_deref()
        .and_then(|s| portcullis_app::totp_secret::open(&state.vault, &caller.user.id, s))
        .ok_or_else(|| ApiError::conflict("totp_not_enrolled", "start enrolment first (POST /api/v1/me/totp)"))?;
    let step = totp::verify(&secret, code, state.now().div_euclid(1_000_000), login.totp_last_step);
    match step {
        Some(step) if state.store.consume_totp_step(&caller.user.id, step).await? => Ok(step),
        _ if !enforced => Err(ApiError::invalid("code", "wrong or reused one-time code")),
        _ => {
            let reason = "wrong one-time code (signed in)";
            if portcullis_app::auth::record_failure(state, &actor, &caller.user.id, reason).await? {
                return Err(ApiError::invalid(
                    "code",
                    format!(
                        "wrong or reused one-time code; after too many the account is now locked for {} minutes",
                        state.auth.lockout_minutes
                    ),
                ));
            }
            Err(ApiError::invalid("code", "wrong or reused one-time code"))
        }
    }
}

/// Confirms enrolment with a current code; from now on sign-in needs a code.
#[utoipa::path(post, path = "/api/v1/me/totp/confirm", tag = "me", operation_id = "confirm_totp",
    request_body = TotpCode,
    responses((status = 204, description = "One-time codes enabled")))]
async fn confirm_totp(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiJson(req): ApiJson<TotpCode>,
) -> ApiResult<StatusCode> {
    if caller.user.totp_enabled {
        return Err(ApiError::conflict("totp_already_enabled", "one-time codes are already enabled"));
    }
    let step = check_code(&state, &caller, &req.code, false).await?;
    state.store.set_totp_enabled(&caller.actor(), state.now(), &caller.user.id, true, Some(step)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turns one-time codes off; needs a current code.
#[utoipa::path(post, path = "/api/v1/me/totp/disable", tag = "me", operation_id = "disable_totp",
    request_body = TotpCode,
    responses((status = 204, description = "One-time codes disabled")))]
async fn disable_totp(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiJson(req): ApiJson<TotpCode>,
) -> ApiResult<StatusCode> {
    if !caller.user.totp_enabled {
        return Err(ApiError::conflict("totp_not_enabled", "one-time codes are not enabled"));
    }
    let step = check_code(&state, &caller, &req.code, true).await?;
    state.store.set_totp_enabled(&caller.actor(), state.now(), &caller.user.id, false, Some(step)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ApiTokenDto {
    id: String,
    name: String,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

impl From<&ApiToken> for ApiTokenDto {
    fn from(t: &ApiToken) -> Self {
        ApiTokenDto {
            id: t.id.clone(),
            name: t.name.clone(),
            created_at: ts(t.created_at),
            expires_at: t.expires_at.map(ts),
            last_used_at: t.last_used_at.map(ts),
            revoked_at: t.revoked_at.map(ts),
        }
    }
}

/// The signed-in user's API tokens (never their values).
#[utoipa::path(get, path = "/api/v1/me/tokens", tag = "me", operation_id = "list_tokens",
    responses((status = 200, description = "Tokens", body = [ApiTokenDto])))]
async fn list_tokens(State(state): State<AppState>, caller: Authed<AnyUser>) -> ApiResult<Json<Vec<ApiTokenDto>>> {
    let tokens = state.store.api_tokens(&caller.user.id).await?;
    Ok(Json(tokens.iter().map(ApiTokenDto::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    name: String,
    /// RFC 3339 expiry; none means until revoked.
    expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    token: ApiTokenDto,
    /// The token value. Shown once; only its hash is kept.
    secret: String,
}

/// Creates a long-lived API token for scripts. Its value is shown once.
#[utoipa::path(post, path = "/api/v1/me/tokens", tag = "me", operation_id = "create_token",
    request_body = CreateTokenRequest,
    responses((status = 201, description = "Created", body = CreatedToken)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let now = state.now();
    let expires_at = req.expires_at.as_deref().map(|t| parse_ts("expires_at", t)).transpose()?;
    if expires_at.is_some_and(|t| t <= now) {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    let secret = new_token("pct_");
    let token = state
        .store
        .create_api_token(&caller.actor(), now, &caller.user.id, &req.name, &token_hash(&secret), expires_at)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token: ApiTokenDto::from(&token), secret: secret.to_string() })))
}

/// Revokes one of the signed-in user's API tokens.
#[utoipa::path(delete, path = "/api/v1/me/tokens/{id}", tag = "me", operation_id = "revoke_token",
    params(IdPath),
    responses((status = 200, description = "Revoked", body = ApiTokenDto)))]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<ApiTokenDto>> {
    let token = state.store.revoke_api_token(&caller.actor(), state.now(), &caller.user.id, &p.id).await?;
    Ok(Json(ApiTokenDto::from(&token)))
}

#[derive(Serialize, ToSchema)]
pub struct SshKeyDto {
    id: String,
    name: String,
    /// algorithm and base64, no comment.
    public_key: String,
    /// SHA256:… as `ssh-keygen -l` prints it.
    fingerprint: String,
    created_at: String,
    last_used_at: Option<String>,
}

impl From<portcullis_store::UserKey> for SshKeyDto {
    fn from(k: portcullis_store::UserKey) -> Self {
        SshKeyDto {
            id: k.id,
            name: k.name,
            public_key: k.public_key,
            fingerprint: k.fingerprint,
            created_at: ts(k.created_at),
            last_used_at: k.last_used_at.map(ts),
        }
    }
}

/// The signed-in user's SSH public keys (for signing in to the SSH proxy).
#[utoipa::path(get, path = "/api/v1/me/ssh-keys", tag = "me", operation_id = "list_ssh_keys",
    responses((status = 200, description = "Keys", body = [SshKeyDto])))]
async fn list_ssh_keys(State(state): State<AppState>, caller: Authed<AnyUser>) -> ApiResult<Json<Vec<SshKeyDto>>> {
    Ok(Json(state.store.user_keys(&caller.user.id).await?.into_iter().map(SshKeyDto::from).collect()))
}

#[derive(Serialize, ToSchema)]
pub struct SshKeyChallenge {
    /// The exact text to sign (ends with a newline).
    challenge: String,
    /// The signature namespace: `portcullis`.
    namespace: String,
    /// A command that signs it with a key file (or, given the .pub file, with ssh-agent).
    command: String,
}

/// The text to sign with the private key of an SSH key you register, proving you hold it.
#[utoipa::path(get, path = "/api/v1/me/ssh-keys/challenge", tag = "me", operation_id = "ssh_key_challenge",
    responses((status = 200, description = "The challenge", body = SshKeyChallenge)))]
async fn ssh_key_challenge(State(_state): State<AppState>, caller: Authed<AnyUser>) -> Json<SshKeyChallenge> {
    let challenge = portcullis_app::me::ssh_key_challenge(&caller.user);
    let command = portcullis_app::me::ssh_key_sign_command(&caller.user);
    Json(SshKeyChallenge { challenge, namespace: portcullis_vault::SIGNATURE_NAMESPACE.into(), command })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSshKeyRequest {
    /// A label, e.g. "laptop".
    name: String,
    /// An OpenSSH public key line (Ed25519, ECDSA, or RSA of 2048 bits or more).
    public_key: String,
    /// The text of `GET /api/v1/me/ssh-keys/challenge` signed with this key's private half
    /// (`ssh-keygen -Y sign -n portcullis`): the armored `SSH SIGNATURE`.
    signature: Option<String>,
}

/// Registers an SSH public key: the proxy then accepts it for this user. Needs a signature
/// of the caller's challenge made with the key, so nobody registers a key they do not hold.
#[utoipa::path(post, path = "/api/v1/me/ssh-keys", tag = "me", operation_id = "add_ssh_key",
    request_body = AddSshKeyRequest, responses((status = 201, description = "Registered", body = SshKeyDto)))]
async fn add_ssh_key(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiJson(req): ApiJson<AddSshKeyRequest>,
) -> ApiResult<(StatusCode, Json<SshKeyDto>)> {
    validate::name("name", &req.name)?;
    if req.public_key.len() > 16 * 1024 {
        return Err(ApiError::invalid("public_key", "must be at most 16 KiB"));
    }
    let (line, fingerprint) = portcullis_vault::parse_public_key(&req.public_key)
        .map_err(|e| ApiError::invalid("public_key", e.to_string()))?;
    let challenge = portcullis_app::me::ssh_key_challenge(&caller.user);
    let Some(signature) = req.signature.as_deref().filter(|s| !s.trim().is_empty()) else {
        return Err(ApiError::invalid(
            "signature",
            "prove you hold the key: sign the text of GET /api/v1/me/ssh-keys/challenge with \
             `ssh-keygen -Y sign -n portcullis -f KEY` and send the signature (`portcullis ssh-key add` does it for you)",
        ));
    };
    if signature.len() > 64 * 1024 {
        return Err(ApiError::invalid("signature", "must be at most 64 KiB"));
    }
    portcullis_vault::verify_possession(&line, challenge.as_bytes(), signature).map_err(|e| {
        ApiError::invalid("signature", e.to_string().trim_start_matches("invalid key material: ").to_owned())
    })?;
    let key =
        state.store.add_user_key(&caller.actor(), state.now(), &caller.user.id, &req.name, &line, &fingerprint).await?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

/// Removes one of the signed-in user's SSH keys.
#[utoipa::path(delete, path = "/api/v1/me/ssh-keys/{id}", tag = "me", operation_id = "remove_ssh_key",
    params(IdPath), responses((status = 204, description = "Removed")))]
async fn remove_ssh_key(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    state.store.delete_user_key(&caller.actor(), state.now(), &caller.user.id, &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
