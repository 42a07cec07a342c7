//! Assets and accounts (R-VAULT-1). Readable by administrators who need the inventory,
//! changed by Asset Administrators.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_core::inventory::{AccountKind, Platform, Protocol};
use portcullis_core::validate;
use portcullis_store::{Account, AccountPatch, Asset, AssetPatch, Named, NewAccount, NewAsset, ProtocolPort};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AssetAdmins, Authed, InventoryReaders};
use crate::dto::{double_option, ts, IdPath, PageParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::labels::Labels;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_assets, create_asset))
        .routes(routes!(get_asset, update_asset, delete_asset))
        .routes(routes!(confirm_asset_identity))
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(get_account, update_account, delete_account))
}

#[derive(Serialize, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProtocolPortDto {
    /// ssh, rdp or telnet.
    protocol: String,
    /// Defaults to the protocol's standard port.
    #[schema(minimum = 1, maximum = 65535)]
    port: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AssetDto {
    id: String,
    name: String,
    /// IP address or DNS name.
    address: String,
    /// linux, unix, windows, network_device, directory (named like a `[directories.NAME]` connection) or other.
    platform: String,
    description: String,
    protocols: Vec<ProtocolPortDto>,
    /// The pinned SSH host key (OpenSSH format), if set.
    host_key: Option<String>,
    /// The pinned TLS certificate of the RDP service (`sha256:HEX`), if set.
    tls_fingerprint: Option<String>,
    /// The account that changes other accounts' credentials on this asset (root, or sudo
    /// without a password for `chpasswd`); none: each account changes its own.
    service_account_id: Option<String>,
    /// The service account's name.
    service_account_name: Option<String>,
    /// False while a change of the address, ports or host key waits for another Asset
    /// Administrator to confirm it: until then no vaulted credential is sent to the asset.
    identity_confirmed: bool,
    /// Who changed the identity since it was last confirmed (user names).
    identity_changed_by: Vec<String>,
    /// When it was last changed, while unconfirmed.
    identity_changed_at: Option<String>,
    created_at: String,
    updated_at: String,
}

/// DTOs with the names of their service accounts.
async fn asset_dtos(state: &AppState, list: &[Asset]) -> ApiResult<Vec<AssetDto>> {
    let ids = list.iter().filter_map(|a| a.service_account_id.clone()).collect();
    let changers = list.iter().flat_map(|a| a.identity_changed_by.clone()).collect();
    let labels = Labels::load(state, [(Named::Account, ids), (Named::User, changers)]).await?;
    Ok(list
        .iter()
        .map(|a| {
            let name = a.service_account_id.as_deref().and_then(|id| labels.name(Named::Account, id));
            let service_account_name = name.map(|n| n.rsplit_once('@').map_or(n.clone(), |(a, _)| a.to_owned()));
            let identity_changed_by = labels.names(Named::User, &a.identity_changed_by);
            AssetDto { service_account_name, identity_changed_by, ..AssetDto::from(a) }
        })
        .collect())
}

async fn asset_dto(state: &AppState, a: &Asset) -> ApiResult<AssetDto> {
    Ok(asset_dtos(state, std::slice::from_ref(a)).await?.remove(0))
}

impl From<&Asset> for AssetDto {
    fn from(a: &Asset) -> Self {
        AssetDto {
            id: a.id.clone(),
            name: a.name.clone(),
            address: a.address.clone(),
            platform: a.platform.to_string(),
            description: a.description.clone(),
            protocols: a
                .protocols
                .iter()
                .map(|p| ProtocolPortDto { protocol: p.protocol.to_string(), port: Some(p.port.into()) })
                .collect(),
            host_key: a.host_key.clone(),
            tls_fingerprint: a.tls_fingerprint.clone(),
            service_account_id: a.service_account_id.clone(),
            service_account_name: None,
            identity_confirmed: !a.identity_unconfirmed(),
            identity_changed_by: Vec::new(),
            identity_changed_at: a.identity_changed_at.map(ts),
            created_at: ts(a.created_at),
            updated_at: ts(a.updated_at),
        }
    }
}

fn parse_platform(s: &str) -> ApiResult<Platform> {
    Platform::parse(s).ok_or_else(|| {
        ApiError::invalid("platform", "must be one of linux, unix, windows, network_device, directory, other")
    })
}

fn parse_protocols(list: &[ProtocolPortDto]) -> ApiResult<Vec<ProtocolPort>> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let protocol = Protocol::parse(&p.protocol)
                .ok_or_else(|| ApiError::invalid(format!("protocols[{i}].protocol"), "must be ssh, rdp or telnet"))?;
            let port = match p.port {
                Some(n) => validate::port(&format!("protocols[{i}].port"), n)?,
                None => protocol.default_port(),
            };
            Ok(ProtocolPort { protocol, port })
        })
        .collect()
}

/// All assets.
#[utoipa::path(get, path = "/api/v1/assets", tag = "assets", operation_id = "list_assets",
    params(PageParams),
    responses((status = 200, description = "Assets", body = [AssetDto])))]
async fn list_assets(
    State(state): State<AppState>,
    _c: Authed<InventoryReaders>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Vec<AssetDto>>> {
    Ok(Json(asset_dtos(&state, &state.store.assets(page.page()?).await?).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAssetRequest {
    name: String,
    address: String,
    platform: String,
    #[serde(default)]
    description: String,
    /// Defaults to SSH on port 22.
    protocols: Option<Vec<ProtocolPortDto>>,
    host_key: Option<String>,
}

/// Adds an asset.
#[utoipa::path(post, path = "/api/v1/assets", tag = "assets", operation_id = "create_asset",
    request_body = CreateAssetRequest,
    responses((status = 201, description = "Created", body = AssetDto)))]
async fn create_asset(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiJson(req): ApiJson<CreateAssetRequest>,
) -> ApiResult<(StatusCode, Json<AssetDto>)> {
    let protocols = match &req.protocols {
        Some(p) => parse_protocols(p)?,
        None => vec![ProtocolPort { protocol: Protocol::Ssh, port: 22 }],
    };
    let new = NewAsset {
        name: req.name,
        address: req.address,
        platform: parse_platform(&req.platform)?,
        description: req.description,
        protocols,
        host_key: req.host_key,
    };
    let asset = state.store.create_asset(&c.actor(), state.now(), new).await?;
    Ok((StatusCode::CREATED, Json(asset_dto(&state, &asset).await?)))
}

/// One asset.
#[utoipa::path(get, path = "/api/v1/assets/{id}", tag = "assets", operation_id = "get_asset",
    params(IdPath),
    responses((status = 200, description = "The asset", body = AssetDto)))]
async fn get_asset(
    State(state): State<AppState>,
    _c: Authed<InventoryReaders>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<AssetDto>> {
    Ok(Json(asset_dto(&state, &state.store.asset(&p.id).await?).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAssetRequest {
    name: Option<String>,
    address: Option<String>,
    platform: Option<String>,
    description: Option<String>,
    protocols: Option<Vec<ProtocolPortDto>>,
    /// `null` unpins the host key.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    host_key: Option<Option<String>>,
    /// `null` unpins the RDP certificate (the next connection pins the one it sees).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    tls_fingerprint: Option<Option<String>>,
    /// An account of this asset; `null` removes the service account.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    service_account_id: Option<Option<String>>,
}

/// Changes an asset.
#[utoipa::path(patch, path = "/api/v1/assets/{id}", tag = "assets", operation_id = "update_asset",
    params(IdPath), request_body = UpdateAssetRequest,
    responses((status = 200, description = "Updated", body = AssetDto)))]
async fn update_asset(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<UpdateAssetRequest>,
) -> ApiResult<Json<AssetDto>> {
    let patch = AssetPatch {
        name: req.name,
        address: req.address,
        platform: req.platform.as_deref().map(parse_platform).transpose()?,
        description: req.description,
        protocols: req.protocols.as_deref().map(parse_protocols).transpose()?,
        host_key: req.host_key,
        tls_fingerprint: req.tls_fingerprint,
        service_account_id: req.service_account_id,
    };
    let asset = state.store.update_asset(&c.actor(), state.now(), &p.id, patch).await?;
    Ok(Json(asset_dto(&state, &asset).await?))
}

/// Confirms a changed address, ports or host key of an asset, so that its vaulted
/// credentials may be sent to it again (credential checks and changes, sessions). Only an
/// Asset Administrator who did not make the change since the last confirmation may.
#[utoipa::path(post, path = "/api/v1/assets/{id}/confirm-identity", tag = "assets",
    operation_id = "confirm_asset_identity", params(IdPath),
    responses((status = 200, description = "Confirmed", body = AssetDto),
        (status = 403, description = "The caller made the change (code own_change)"),
        (status = 409, description = "Nothing to confirm (code identity_confirmed), or changed again meanwhile")))]
async fn confirm_asset_identity(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<AssetDto>> {
    let asset = state.store.confirm_asset_identity(&c.actor(), state.now(), &p.id).await?;
    Ok(Json(asset_dto(&state, &asset).await?))
}

/// Deletes an asset with its accounts.
#[utoipa::path(delete, path = "/api/v1/assets/{id}", tag = "assets", operation_id = "delete_asset",
    params(IdPath),
    responses((status = 204, description = "Deleted")))]
async fn delete_asset(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    state.store.delete_asset(&c.actor(), state.now(), &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct AccountDto {
    id: String,
    asset_id: String,
    name: String,
    /// local or directory.
    kind: String,
    description: String,
    created_at: String,
    updated_at: String,
    /// The asset's name (the account is ACCOUNT@ASSET).
    asset_name: Option<String>,
}

/// DTOs with the names of their assets.
async fn account_dtos(state: &AppState, list: &[Account]) -> ApiResult<Vec<AccountDto>> {
    let ids = list.iter().map(|a| a.asset_id.clone()).collect();
    let labels = Labels::load(state, [(Named::Asset, ids)]).await?;
    Ok(list
        .iter()
        .map(|a| AccountDto { asset_name: labels.name(Named::Asset, &a.asset_id), ..AccountDto::from(a) })
        .collect())
}

async fn account_dto(state: &AppState, a: &Account) -> ApiResult<AccountDto> {
    Ok(account_dtos(state, std::slice::from_ref(a)).await?.remove(0))
}

impl From<&Account> for AccountDto {
    fn from(a: &Account) -> Self {
        AccountDto {
            id: a.id.clone(),
            asset_id: a.asset_id.clone(),
            name: a.name.clone(),
            kind: a.kind.to_string(),
            description: a.description.clone(),
            created_at: ts(a.created_at),
            updated_at: ts(a.updated_at),
            asset_name: None,
        }
    }
}

fn parse_kind(s: &str) -> ApiResult<AccountKind> {
    AccountKind::parse(s).ok_or_else(|| ApiError::invalid("kind", "must be local or directory"))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountListParams {
    /// Only the accounts of this asset.
    asset_id: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// Accounts, optionally of one asset.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", operation_id = "list_accounts",
    params(AccountListParams),
    responses((status = 200, description = "Accounts", body = [AccountDto])))]
async fn list_accounts(
    State(state): State<AppState>,
    _c: Authed<InventoryReaders>,
    ApiQuery(q): ApiQuery<AccountListParams>,
) -> ApiResult<Json<Vec<AccountDto>>> {
    let page = PageParams { limit: q.limit, offset: q.offset }.page()?;
    let accounts = state.store.accounts(q.asset_id.as_deref(), page).await?;
    Ok(Json(account_dtos(&state, &accounts).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    asset_id: String,
    name: String,
    /// local (default) or directory.
    kind: Option<String>,
    #[serde(default)]
    description: String,
}

/// Adds an account to an asset.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", operation_id = "create_account",
    request_body = CreateAccountRequest,
    responses((status = 201, description = "Created", body = AccountDto)))]
async fn create_account(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiJson(req): ApiJson<CreateAccountRequest>,
) -> ApiResult<(StatusCode, Json<AccountDto>)> {
    let kind = req.kind.as_deref().map(parse_kind).transpose()?.unwrap_or(AccountKind::Local);
    let new = NewAccount { asset_id: req.asset_id, name: req.name, kind, description: req.description };
    let account = state.store.create_account(&c.actor(), state.now(), new).await?;
    Ok((StatusCode::CREATED, Json(account_dto(&state, &account).await?)))
}

/// One account.
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts", operation_id = "get_account",
    params(IdPath),
    responses((status = 200, description = "The account", body = AccountDto)))]
async fn get_account(
    State(state): State<AppState>,
    _c: Authed<InventoryReaders>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<AccountDto>> {
    Ok(Json(account_dto(&state, &state.store.account(&p.id).await?).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountRequest {
    name: Option<String>,
    kind: Option<String>,
    description: Option<String>,
}

/// Changes an account.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts", operation_id = "update_account",
    params(IdPath), request_body = UpdateAccountRequest,
    responses((status = 200, description = "Updated", body = AccountDto)))]
async fn update_account(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<UpdateAccountRequest>,
) -> ApiResult<Json<AccountDto>> {
    let patch = AccountPatch {
        name: req.name,
        kind: req.kind.as_deref().map(parse_kind).transpose()?,
        description: req.description,
    };
    let account = state.store.update_account(&c.actor(), state.now(), &p.id, patch).await?;
    Ok(Json(account_dto(&state, &account).await?))
}

/// Deletes an account.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}", tag = "accounts", operation_id = "delete_account",
    params(IdPath),
    responses((status = 204, description = "Deleted")))]
async fn delete_account(
    State(state): State<AppState>,
    c: Authed<AssetAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    state.store.delete_account(&c.actor(), state.now(), &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
