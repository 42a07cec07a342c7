//! Looking up ids by name, so scripts and the CLI can name users, groups, assets, accounts
//! (`ACCOUNT@ASSET`), entitlements, policies and reason codes instead of quoting ids.

use axum::extract::State;
use axum::Json;
use portcullis_store::Named;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, Authed};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(lookup))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KindPath {
    /// user, user_group, asset_group, account_group, asset, account, entitlement, policy or
    /// reason_code.
    kind: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NameQuery {
    /// The name; accounts as ACCOUNT@ASSET (ACCOUNT alone matches it on every asset).
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct NamedDto {
    id: String,
    name: String,
}

/// The objects of a kind with this name: an empty list when there is none, several when the
/// name is ambiguous. Needs the roles that may list that kind.
#[utoipa::path(get, path = "/api/v1/names/{kind}", tag = "names", operation_id = "lookup_name",
    params(KindPath, NameQuery),
    responses((status = 200, description = "Matches, best first (at most 20)", body = [NamedDto])))]
async fn lookup(
    State(state): State<AppState>,
    c: Authed<AnyUser>,
    ApiPath(p): ApiPath<KindPath>,
    ApiQuery(q): ApiQuery<NameQuery>,
) -> ApiResult<Json<Vec<NamedDto>>> {
    let kind = Named::parse(&p.kind).ok_or_else(|| {
        let kinds: Vec<&str> = Named::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::invalid("kind", format!("must be one of {}", kinds.join(", ")))
    })?;
    let found = portcullis_app::names::lookup(&state, &c, kind, &q.name).await?;
    Ok(Json(found.into_iter().map(|(id, name)| NamedDto { id, name }).collect()))
}
