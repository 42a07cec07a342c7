//! The Portcullis nodes on this database (several nodes behind a load balancer).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuditReaders, Authed};
use crate::dto::ts;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_nodes))
}

#[derive(Serialize, ToSchema)]
pub struct NodeDto {
    name: String,
    /// `up`; `lost` (stopped heartbeating: the others ended its sessions); `stopped` (shut
    /// down cleanly).
    state: String,
    started_at: String,
    last_heartbeat_at: String,
    version: String,
    lost_at: Option<String>,
    live_sessions: i64,
    /// The node that answered this call.
    this_node: bool,
}

/// The nodes that share this database, their heartbeats and live sessions (Auditors and
/// Appliance Administrators).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "system", operation_id = "list_nodes",
    responses((status = 200, description = "The nodes, by name", body = [NodeDto])))]
async fn list_nodes(State(state): State<AppState>, c: Authed<AuditReaders>) -> ApiResult<Json<Vec<NodeDto>>> {
    let nodes = portcullis_app::cluster::nodes(&state, &c.caller).await?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|v| NodeDto {
                name: v.node.name,
                state: v.node.state,
                started_at: ts(v.node.started_at),
                last_heartbeat_at: ts(v.node.heartbeat_at),
                version: v.node.version,
                lost_at: v.node.lost_at.map(ts),
                live_sessions: v.live_sessions,
                this_node: v.this_node,
            })
            .collect(),
    ))
}
