//! Directory connections (`[directories.NAME]` in the configuration file): their state and
//! last synchronisation, and a synchronisation on demand.

use axum::extract::State;
use axum::Json;
use portcullis_app::directory::{DirectoryStatus, SyncReport};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authed, DirectoryAdmins, DirectoryReaders, DirectoryWatchers, UserAdmins};
use crate::dto::{ts, IdPath, MemberPath};
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_directories))
        .routes(routes!(sync_directory))
        .routes(routes!(list_linked_accounts))
        .routes(routes!(link_account, unlink_account))
}

#[derive(Serialize, ToSchema)]
pub struct DirectoryDto {
    /// The connection's name (`[directories.NAME]`).
    name: String,
    url: String,
    /// Seconds between scheduled synchronisations; 0: at sign-in and on demand only.
    sync_interval_seconds: u64,
    /// The last synchronisation attempt.
    last_attempt_at: Option<String>,
    last_success_at: Option<String>,
    /// Why the last attempt failed (nothing was changed by it).
    last_error: Option<String>,
    /// Users and groups read by the last successful synchronisation.
    users: i64,
    groups: i64,
    summary: String,
}

impl From<DirectoryStatus> for DirectoryDto {
    fn from(d: DirectoryStatus) -> Self {
        let last = d.last;
        DirectoryDto {
            name: d.name,
            url: d.url,
            sync_interval_seconds: d.sync_interval.as_secs(),
            last_attempt_at: last.as_ref().map(|l| ts(l.attempted_at)),
            last_success_at: last.as_ref().and_then(|l| l.succeeded_at).map(ts),
            last_error: last.as_ref().and_then(|l| l.error.clone()),
            users: last.as_ref().map_or(0, |l| l.users),
            groups: last.as_ref().map_or(0, |l| l.groups),
            summary: last.map(|l| l.summary).unwrap_or_default(),
        }
    }
}

/// The configured directories and how their last synchronisation went.
#[utoipa::path(get, path = "/api/v1/directories", tag = "users", operation_id = "list_directories",
    responses((status = 200, description = "Directories", body = Vec<DirectoryDto>)))]
async fn list_directories(
    State(state): State<AppState>,
    c: Authed<DirectoryWatchers>,
) -> ApiResult<Json<Vec<DirectoryDto>>> {
    let list = portcullis_app::directory::list(&state, &c).await?;
    Ok(Json(list.into_iter().map(DirectoryDto::from).collect()))
}

#[derive(Deserialize, IntoParams)]
pub struct NamePath {
    /// The directory's name.
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SyncDto {
    directory: String,
    users: usize,
    groups: usize,
    created: Vec<String>,
    updated: usize,
    /// User names disabled (disabled in the directory, or gone from it); their live sessions end.
    disabled: Vec<String>,
    enabled: Vec<String>,
    groups_created: Vec<String>,
    groups_emptied: Vec<String>,
    members_added: usize,
    members_removed: usize,
    /// Entries left out, with why.
    skipped: Vec<String>,
    summary: String,
}

impl From<SyncReport> for SyncDto {
    fn from(r: SyncReport) -> Self {
        let summary = r.summary();
        let c = r.changes;
        SyncDto {
            directory: r.directory,
            users: r.users,
            groups: r.groups,
            created: c.created,
            updated: c.updated,
            disabled: c.disabled.into_iter().map(|(_, n)| n).collect(),
            enabled: c.enabled,
            groups_created: c.groups_created,
            groups_emptied: c.groups_emptied,
            members_added: c.members_added,
            members_removed: c.members_removed,
            skipped: c.skipped,
            summary,
        }
    }
}

/// Reads the whole directory now and applies it (all or nothing).
#[utoipa::path(post, path = "/api/v1/directories/{name}/sync", tag = "users", operation_id = "sync_directory",
    params(NamePath),
    responses((status = 200, description = "Synchronised", body = SyncDto)))]
async fn sync_directory(
    State(state): State<AppState>,
    c: Authed<DirectoryAdmins>,
    ApiPath(p): ApiPath<NamePath>,
) -> ApiResult<Json<SyncDto>> {
    Ok(Json(portcullis_app::directory::sync_now(&state, &c, &p.name).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct LinkedAccountDto {
    account_id: String,
    /// ACCOUNT@DIRECTORY.
    account_name: String,
}

/// A user's linked directory accounts (their own accounts in a directory, which sessions of
/// policies in Linked Account mode log in with).
#[utoipa::path(get, path = "/api/v1/users/{id}/linked-accounts", tag = "users", operation_id = "list_linked_accounts",
    params(IdPath),
    responses((status = 200, description = "Linked accounts", body = Vec<LinkedAccountDto>)))]
async fn list_linked_accounts(
    State(state): State<AppState>,
    _c: Authed<DirectoryReaders>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<Vec<LinkedAccountDto>>> {
    state.store.user(&p.id).await?;
    let ids = state.store.linked_accounts(&p.id).await?;
    let names = state.store.names_for(portcullis_store::Named::Account, &ids).await?;
    Ok(Json(
        ids.into_iter()
            .map(|id| LinkedAccountDto { account_name: names.get(&id).cloned().unwrap_or_default(), account_id: id })
            .collect(),
    ))
}

/// Links a directory account to a user (User Administrators).
#[utoipa::path(put, path = "/api/v1/users/{id}/linked-accounts/{member_id}", tag = "users", operation_id = "link_account",
    params(MemberPath),
    responses((status = 204, description = "Linked")))]
async fn link_account(
    State(state): State<AppState>,
    c: Authed<UserAdmins>,
    ApiPath(p): ApiPath<MemberPath>,
) -> ApiResult<axum::http::StatusCode> {
    crate::routes::users::managed_user(&state, &c, &p.id).await?;
    state.store.link_account(&c.actor(), state.now(), &p.id, &p.member_id, true).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Unlinks a directory account from a user (User Administrators).
#[utoipa::path(delete, path = "/api/v1/users/{id}/linked-accounts/{member_id}", tag = "users", operation_id = "unlink_account",
    params(MemberPath),
    responses((status = 204, description = "Unlinked")))]
async fn unlink_account(
    State(state): State<AppState>,
    c: Authed<UserAdmins>,
    ApiPath(p): ApiPath<MemberPath>,
) -> ApiResult<axum::http::StatusCode> {
    crate::routes::users::managed_user(&state, &c, &p.id).await?;
    state.store.link_account(&c.actor(), state.now(), &p.id, &p.member_id, false).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
