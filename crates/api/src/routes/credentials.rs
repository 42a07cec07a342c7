//! Credentials (R-VAULT-2, R-VAULT-3): Asset Administrators set or generate an account's
//! password and see its version history, never the secret; the requester of an available
//! password request checks it out (Show or Copy), each time audited.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_store::{CredentialChange, SecretVersion};
use portcullis_vault::{generate_password, seal, PasswordProfile, SecretContext};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::{AnyUser, AssetAdmins, Authed, InventoryReaders};
use crate::dto::{ts, IdPath};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use portcullis_app::credentials;
use portcullis_app::credentials::{self as service, row};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_credentials))
        .routes(routes!(set_password))
        .routes(routes!(generate))
        .routes(routes!(import_key))
        .routes(routes!(generate_key))
        .routes(routes!(checkout))
        .routes(routes!(check_credential))
        .routes(routes!(change_credential))
        .routes(routes!(list_changes))
}

#[derive(Serialize, ToSchema)]
pub struct CredentialVersionDto {
    account_id: String,
    /// password or ssh_key.
    kind: String,
    version: i64,
    public_key: Option<String>,
    /// manual, generated, rotation, check-in…
    reason: String,
    set_by: String,
    created_at: String,
    /// active (the highest active version is current), staged (a change under way) or
    /// failed (a change that did not verify on the target).
    status: String,
    /// Why a failed version failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<SecretVersion> for CredentialVersionDto {
    fn from(v: SecretVersion) -> Self {
        CredentialVersionDto {
            account_id: v.account_id,
            kind: v.kind,
            version: v.version,
            public_key: v.public_key,
            reason: v.reason,
            set_by: v.set_by,
            created_at: ts(v.created_at),
            status: v.status,
            error: v.error,
        }
    }
}

/// Seals `secret` as the next version of the account's credential of `kind`.
async fn store_secret(
    state: &AppState,
    caller: &crate::auth::Caller,
    account_id: &str,
    kind: &'static str,
    secret: &[u8],
    reason: &str,
    public_key: Option<&str>,
) -> ApiResult<SecretVersion> {
    let ring = state.vault.clone();
    let account = account_id.to_owned();
    let secret = Zeroizing::new(secret.to_vec());
    let v = state
        .store
        .add_secret_version(&caller.actor(), state.now(), account_id, kind, reason, public_key, move |version| {
            row(seal(&ring, &SecretContext { account_id: account, kind: kind.into(), version }, &secret))
        })
        .await?;
    Ok(v)
}

async fn store_password(
    state: &AppState,
    caller: &crate::auth::Caller,
    account_id: &str,
    password: &[u8],
    reason: &str,
) -> ApiResult<SecretVersion> {
    store_secret(state, caller, account_id, "password", password, reason, None).await
}

/// An account's credential versions: who set them, when and why. Never the secrets.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/credentials", tag = "credentials", operation_id = "list_credentials",
    params(IdPath), responses((status = 200, description = "Versions, newest first", body = [CredentialVersionDto])))]
async fn list_credentials(
    State(state): State<AppState>,
    _c: Authed<InventoryReaders>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<Vec<CredentialVersionDto>>> {
    state.store.account(&p.id).await?;
    Ok(Json(state.store.secret_versions(&p.id).await?.into_iter().map(CredentialVersionDto::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordRequest {
    /// The account's current password on the target.
    #[schema(value_type = String, format = Password)]
    password: Zeroizing<String>,
}

/// Stores the account's password (a new version). The response never contains it.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/password", tag = "credentials", operation_id = "set_account_password",
    params(IdPath), request_body = SetPasswordRequest, responses((status = 201, description = "Stored", body = CredentialVersionDto)))]
async fn set_password(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<SetPasswordRequest>,
) -> ApiResult<(StatusCode, Json<CredentialVersionDto>)> {
    if req.password.is_empty() || req.password.len() > 4096 {
        return Err(ApiError::invalid("password", "must be 1 to 4096 bytes"));
    }
    if req.password.contains('\0') {
        // Targets cut a password at NUL: the stored one would not be the one they check.
        return Err(ApiError::invalid("password", "must not contain the NUL character"));
    }
    let v = store_password(&state, &c, &p.id, req.password.as_bytes(), "manual").await?;
    Ok((StatusCode::CREATED, Json(v.into())))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// 8 to 256 (default 24).
    length: Option<usize>,
    lowercase: Option<bool>,
    uppercase: Option<bool>,
    digits: Option<bool>,
    symbols: Option<bool>,
    /// Characters never to use.
    excluded: Option<String>,
}

/// Generates a new password from a profile and stores it as a new version (the target is not
/// changed by this call). The response never contains it.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/password/generate", tag = "credentials", operation_id = "generate_account_password",
    params(IdPath), request_body = GenerateRequest, responses((status = 201, description = "Stored", body = CredentialVersionDto)))]
async fn generate(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<GenerateRequest>,
) -> ApiResult<(StatusCode, Json<CredentialVersionDto>)> {
    let account = state.store.account(&p.id).await?;
    let asset = state.store.asset(&account.asset_id).await?;
    let d = service::profile_for(&state, &asset).await?;
    let profile = PasswordProfile {
        length: req.length.unwrap_or(d.length),
        lowercase: req.lowercase.unwrap_or(d.lowercase),
        uppercase: req.uppercase.unwrap_or(d.uppercase),
        digits: req.digits.unwrap_or(d.digits),
        symbols: req.symbols.unwrap_or(d.symbols),
        excluded: req.excluded.unwrap_or(d.excluded),
    };
    let password = generate_password(&profile).map_err(|e| ApiError::invalid("profile", e.to_string()))?;
    let v = store_password(&state, &c, &p.id, password.as_bytes(), "generated").await?;
    Ok((StatusCode::CREATED, Json(v.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKeyRequest {
    /// An unencrypted OpenSSH private key (Ed25519, or RSA of 2048 bits or more).
    #[schema(value_type = String, format = Password)]
    private_key: Zeroizing<String>,
}

/// Stores the account's SSH private key (a new version); the response shows only the public key.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/ssh-key", tag = "credentials", operation_id = "import_account_ssh_key",
    params(IdPath), request_body = ImportKeyRequest, responses((status = 201, description = "Stored", body = CredentialVersionDto)))]
async fn import_key(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<ImportKeyRequest>,
) -> ApiResult<(StatusCode, Json<CredentialVersionDto>)> {
    if req.private_key.len() > 16 * 1024 {
        return Err(ApiError::invalid("private_key", "must be at most 16 KiB"));
    }
    let pair = portcullis_vault::import_ssh_key(req.private_key.as_bytes())
        .map_err(|e| ApiError::invalid("private_key", e.to_string()))?;
    let v =
        store_secret(&state, &c, &p.id, "ssh_key", pair.private_openssh.expose(), "manual", Some(&pair.public_openssh))
            .await?;
    Ok((StatusCode::CREATED, Json(v.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateKeyRequest {
    /// ed25519 (default), rsa-3072 or rsa-4096.
    algorithm: Option<String>,
}

/// Generates a new SSH key pair for the account (a new version); the response shows the
/// public key, to install on the target.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/ssh-key/generate", tag = "credentials", operation_id = "generate_account_ssh_key",
    params(IdPath), request_body = GenerateKeyRequest, responses((status = 201, description = "Stored", body = CredentialVersionDto)))]
async fn generate_key(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<GenerateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CredentialVersionDto>)> {
    use portcullis_vault::KeyAlgorithm;
    let algorithm = match req.algorithm.as_deref().unwrap_or("ed25519") {
        "ed25519" => KeyAlgorithm::Ed25519,
        "rsa-3072" => KeyAlgorithm::Rsa(3072),
        "rsa-4096" => KeyAlgorithm::Rsa(4096),
        _ => return Err(ApiError::invalid("algorithm", "must be ed25519, rsa-3072 or rsa-4096")),
    };
    let account = state.store.account(&p.id).await?;
    let comment = format!("{}@portcullis", account.name);
    let pair = tokio::task::spawn_blocking(move || portcullis_vault::generate_ssh_key(algorithm, &comment))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| ApiError::invalid("algorithm", e.to_string()))?;
    let v = store_secret(
        &state,
        &c,
        &p.id,
        "ssh_key",
        pair.private_openssh.expose(),
        "generated",
        Some(&pair.public_openssh),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(v.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// show or copy (both return the secret; the audit log records which).
    action: String,
}

#[derive(Serialize, ToSchema)]
pub struct CheckoutResponse {
    request_id: String,
    account_id: String,
    version: i64,
    /// The account's current password (password requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Password)]
    password: Option<String>,
    /// The account's current SSH private key, OpenSSH format (SSH key requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Password)]
    private_key: Option<String>,
}

/// Show or Copy the password of an available password request (the requester only). Every
/// call is an audit event; after a rotation during the request it returns the new password.
#[utoipa::path(post, path = "/api/v1/requests/{id}/checkout", tag = "credentials", operation_id = "checkout_password",
    params(IdPath), request_body = CheckoutRequest, responses((status = 200, description = "The credential", body = CheckoutResponse)))]
async fn checkout(
    State(state): State<AppState>,
    c: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<CheckoutRequest>,
) -> ApiResult<Json<CheckoutResponse>> {
    let out = credentials::checkout(&state, &c, &p.id, &req.action).await?;
    let secret = String::from_utf8(out.secret.expose().to_vec()).map_err(|_| ApiError::internal())?;
    let (password, private_key) = if out.kind == "password" { (Some(secret), None) } else { (None, Some(secret)) };
    Ok(Json(CheckoutResponse {
        request_id: out.request_id,
        account_id: out.account_id,
        version: out.version,
        password,
        private_key,
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct KindRequest {
    /// password or ssh_key (default: the password if the account has one, else the key).
    kind: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CheckResponse {
    account_id: String,
    kind: String,
    version: i64,
    /// Whether the stored credential logged in to the target.
    ok: bool,
    /// Why not: target_unreachable, target_timeout, host_key_mismatch,
    /// target_authentication_failed, bad_credential, target_protocol_error.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// Check credential: logs in to the target with the stored credential and reports whether it
/// works (audited). Never returns the secret.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/credentials/check", tag = "credentials", operation_id = "check_account_credential",
    params(IdPath), request_body = KindRequest, responses((status = 200, description = "The check ran", body = CheckResponse)))]
async fn check_credential(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<KindRequest>,
) -> ApiResult<Json<CheckResponse>> {
    state.store.account(&p.id).await?;
    let kind = service::default_kind(&state, &p.id, req.kind.as_deref()).await?;
    let r = service::check(&state, &c.actor(), &p.id, kind).await?;
    Ok(Json(CheckResponse {
        account_id: p.id,
        kind: kind.into(),
        version: r.version,
        ok: r.error.is_none(),
        code: r.error.as_ref().map(|e| e.code().to_owned()),
        message: r.error.map(|e| e.to_string()),
    }))
}

/// Change now: generates a new password (from the asset's password profile) or SSH key,
/// changes it on the target, verifies that it logs in, and only then makes it current. On
/// failure the old credential stays current, the attempt is recorded as a failed version, and
/// Asset Administrators are notified. Never returns the secret.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/credentials/change", tag = "credentials", operation_id = "change_account_credential",
    params(IdPath), request_body = KindRequest, responses((status = 200, description = "Changed and verified", body = CredentialVersionDto)))]
async fn change_credential(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<KindRequest>,
) -> ApiResult<Json<CredentialVersionDto>> {
    let kind = service::default_kind(&state, &p.id, req.kind.as_deref()).await?;
    Ok(Json(service::change_now(&state, &c.actor(), &p.id, kind).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct CredentialChangeDto {
    id: String,
    account_id: String,
    kind: String,
    /// check-in, expiry or revocation.
    reason: String,
    request_id: Option<String>,
    /// pending, running, succeeded or failed.
    state: String,
    attempts: i64,
    due_at: String,
    last_error: Option<String>,
    /// The version that became current.
    version: Option<i64>,
    created_at: String,
    updated_at: String,
}

impl From<CredentialChange> for CredentialChangeDto {
    fn from(c: CredentialChange) -> Self {
        CredentialChangeDto {
            id: c.id,
            account_id: c.account_id,
            kind: c.kind,
            reason: c.reason,
            request_id: c.request_id,
            state: c.state,
            attempts: c.attempts,
            due_at: ts(c.due_at),
            last_error: c.last_error,
            version: c.version,
            created_at: ts(c.created_at),
            updated_at: ts(c.updated_at),
        }
    }
}

/// The account's automatic credential changes (after check-in, expiry, revocation), newest first.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/credential-changes", tag = "credentials", operation_id = "list_credential_changes",
    params(IdPath), responses((status = 200, description = "Changes", body = [CredentialChangeDto])))]
async fn list_changes(
    State(state): State<AppState>,
    _c: Authed<InventoryReaders>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<Vec<CredentialChangeDto>>> {
    state.store.account(&p.id).await?;
    Ok(Json(state.store.credential_changes(&p.id).await?.into_iter().map(CredentialChangeDto::from).collect()))
}
