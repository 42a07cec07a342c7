//! User groups, asset groups and account groups: one implementation, three route sets that
//! differ only in their paths and the roles they admit.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_store::{Group, GroupKind, Named};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{Authed, Caller};
use crate::dto::{ts, IdPath, MemberPath, PageParams};
use crate::error::ApiResult;
use crate::labels::Labels;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct GroupDto {
    id: String,
    name: String,
    description: String,
    /// Member ids (users, assets or accounts, by the kind of group).
    members: Vec<String>,
    /// The members' names, in the same order (accounts as ACCOUNT@ASSET).
    member_names: Vec<String>,
    created_at: String,
}

fn member_kind(kind: GroupKind) -> Named {
    match kind {
        GroupKind::User => Named::User,
        GroupKind::Asset => Named::Asset,
        GroupKind::Account => Named::Account,
    }
}

/// DTOs with their members' names.
async fn dtos(state: &AppState, kind: GroupKind, list: Vec<Group>) -> ApiResult<Vec<GroupDto>> {
    let member = member_kind(kind);
    let ids = list.iter().flat_map(|g| g.members.clone()).collect();
    let labels = Labels::load(state, [(member, ids)]).await?;
    Ok(list.into_iter().map(|g| GroupDto { member_names: labels.names(member, &g.members), ..g.into() }).collect())
}

async fn dto(state: &AppState, kind: GroupKind, g: Group) -> ApiResult<GroupDto> {
    Ok(dtos(state, kind, vec![g]).await?.remove(0))
}

impl From<Group> for GroupDto {
    fn from(g: Group) -> Self {
        GroupDto {
            id: g.id,
            name: g.name,
            description: g.description,
            members: g.members,
            member_names: vec![],
            created_at: ts(g.created_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupRequest {
    name: Option<String>,
    description: Option<String>,
}

async fn list(state: &AppState, kind: GroupKind, page: &PageParams) -> ApiResult<Json<Vec<GroupDto>>> {
    Ok(Json(dtos(state, kind, state.store.groups(kind, page.page()?).await?).await?))
}

async fn create(
    state: &AppState,
    caller: &Caller,
    kind: GroupKind,
    req: CreateGroupRequest,
) -> ApiResult<(StatusCode, Json<GroupDto>)> {
    let g = state.store.create_group(&caller.actor(), state.now(), kind, &req.name, &req.description).await?;
    Ok((StatusCode::CREATED, Json(dto(state, kind, g).await?)))
}

async fn update(
    state: &AppState,
    caller: &Caller,
    kind: GroupKind,
    id: &str,
    req: UpdateGroupRequest,
) -> ApiResult<Json<GroupDto>> {
    let g = state
        .store
        .update_group(&caller.actor(), state.now(), kind, id, req.name.as_deref(), req.description.as_deref())
        .await?;
    Ok(Json(dto(state, kind, g).await?))
}

async fn set_member(
    state: &AppState,
    caller: &Caller,
    kind: GroupKind,
    p: &MemberPath,
    add: bool,
) -> ApiResult<Json<GroupDto>> {
    let g = state.store.set_group_member(&caller.actor(), state.now(), kind, &p.id, &p.member_id, add).await?;
    Ok(Json(dto(state, kind, g).await?))
}

macro_rules! group_routes {
    (
        $module:ident, $kind:expr, $tag:literal, $noun:literal, $snake:literal,
        read: $read:ty, write: $write:ty,
        collection: $coll:literal, item: $item:literal, member: $member:literal
    ) => {
        pub mod $module {
            use super::*;
            use crate::extract::{ApiJson, ApiPath, ApiQuery};
            use utoipa_axum::routes;

            pub fn routes() -> OpenApiRouter<AppState> {
                OpenApiRouter::new()
                    .routes(routes!(list_groups, create_group))
                    .routes(routes!(get_group, update_group, delete_group))
                    .routes(routes!(add_member, remove_member))
            }

            #[doc = concat!("All ", $noun, "s.")]
            #[utoipa::path(get, path = $coll, tag = $tag, operation_id = concat!("list_", $snake, "s"), params(PageParams),
                responses((status = 200, description = "Groups", body = [GroupDto])))]
            async fn list_groups(State(state): State<AppState>, _c: Authed<$read>, ApiQuery(page): ApiQuery<PageParams>) -> ApiResult<Json<Vec<GroupDto>>> {
                list(&state, $kind, &page).await
            }

            #[doc = concat!("Creates a ", $noun, ".")]
            #[utoipa::path(post, path = $coll, tag = $tag, operation_id = concat!("create_", $snake, ""), request_body = CreateGroupRequest,
                responses((status = 201, description = "Created", body = GroupDto)))]
            async fn create_group(State(state): State<AppState>, c: Authed<$write>, ApiJson(req): ApiJson<CreateGroupRequest>) -> ApiResult<(StatusCode, Json<GroupDto>)> {
                create(&state, &c, $kind, req).await
            }

            #[doc = concat!("One ", $noun, " with its members.")]
            #[utoipa::path(get, path = $item, tag = $tag, operation_id = concat!("get_", $snake, ""), params(IdPath),
                responses((status = 200, description = "The group", body = GroupDto)))]
            async fn get_group(State(state): State<AppState>, _c: Authed<$read>, ApiPath(p): ApiPath<IdPath>) -> ApiResult<Json<GroupDto>> {
                Ok(Json(dto(&state, $kind, state.store.group($kind, &p.id).await?).await?))
            }

            #[doc = concat!("Renames or redescribes a ", $noun, ".")]
            #[utoipa::path(patch, path = $item, tag = $tag, operation_id = concat!("update_", $snake, ""), params(IdPath), request_body = UpdateGroupRequest,
                responses((status = 200, description = "Updated", body = GroupDto)))]
            async fn update_group(State(state): State<AppState>, c: Authed<$write>, ApiPath(p): ApiPath<IdPath>, ApiJson(req): ApiJson<UpdateGroupRequest>) -> ApiResult<Json<GroupDto>> {
                update(&state, &c, $kind, &p.id, req).await
            }

            #[doc = concat!("Deletes a ", $noun, " (its members stay).")]
            #[utoipa::path(delete, path = $item, tag = $tag, operation_id = concat!("delete_", $snake, ""), params(IdPath),
                responses((status = 204, description = "Deleted")))]
            async fn delete_group(State(state): State<AppState>, c: Authed<$write>, ApiPath(p): ApiPath<IdPath>) -> ApiResult<StatusCode> {
                state.store.delete_group(&c.actor(), state.now(), $kind, &p.id).await?;
                Ok(StatusCode::NO_CONTENT)
            }

            #[doc = concat!("Adds a member to a ", $noun, "; adding a member twice changes nothing.")]
            #[utoipa::path(put, path = $member, tag = $tag, operation_id = concat!("add_", $snake, "_member"), params(MemberPath),
                responses((status = 200, description = "The group", body = GroupDto)))]
            async fn add_member(State(state): State<AppState>, c: Authed<$write>, ApiPath(p): ApiPath<MemberPath>) -> ApiResult<Json<GroupDto>> {
                set_member(&state, &c, $kind, &p, true).await
            }

            #[doc = concat!("Removes a member from a ", $noun, ".")]
            #[utoipa::path(delete, path = $member, tag = $tag, operation_id = concat!("remove_", $snake, "_member"), params(MemberPath),
                responses((status = 200, description = "The group", body = GroupDto)))]
            async fn remove_member(State(state): State<AppState>, c: Authed<$write>, ApiPath(p): ApiPath<MemberPath>) -> ApiResult<Json<GroupDto>> {
                set_member(&state, &c, $kind, &p, false).await
            }
        }
    };
}

group_routes!(user_groups, GroupKind::User, "user-groups", "user group", "user_group",
    read: crate::auth::DirectoryReaders, write: crate::auth::UserAdmins,
    collection: "/api/v1/user-groups", item: "/api/v1/user-groups/{id}", member: "/api/v1/user-groups/{id}/members/{member_id}");
group_routes!(asset_groups, GroupKind::Asset, "asset-groups", "asset group", "asset_group",
    read: crate::auth::InventoryReaders, write: crate::auth::AssetAdmins,
    collection: "/api/v1/asset-groups", item: "/api/v1/asset-groups/{id}", member: "/api/v1/asset-groups/{id}/members/{member_id}");
group_routes!(account_groups, GroupKind::Account, "account-groups", "account group", "account_group",
    read: crate::auth::InventoryReaders, write: crate::auth::AssetAdmins,
    collection: "/api/v1/account-groups", item: "/api/v1/account-groups/{id}", member: "/api/v1/account-groups/{id}/members/{member_id}");
