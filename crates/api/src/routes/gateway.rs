//! Connection policies (R-SES-2, 3, 5, 6): the ordered list every proxied connection is
//! matched against, and "which policy would this connection get, and why not the others".
//! Security Policy Administrators change them; Auditors and Appliance Administrators read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_app::gateway as uc;
use portcullis_core::gateway::ConnectionPolicySpec;
use portcullis_store::Named;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authed, PolicyAdmins, PolicyReaders};
use crate::dto::{ts, IdPath};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::labels::Labels;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, replace, delete))
        .routes(routes!(explain))
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionPolicyDto {
    id: String,
    name: String,
    /// 1 is tried first.
    position: i64,
    #[serde(flatten)]
    spec: ConnectionPolicySpec,
    /// The names of the groups the channel rules and four-eyes name, by id.
    group_names: std::collections::BTreeMap<String, String>,
    created_at: String,
    updated_at: String,
}

async fn dtos(state: &AppState, list: Vec<uc::PolicyView>) -> ApiResult<Vec<ConnectionPolicyDto>> {
    let ids = |s: &ConnectionPolicySpec| -> Vec<String> {
        s.channels.iter().flat_map(|c| c.groups.iter()).chain(s.four_eyes_groups.iter()).cloned().collect()
    };
    let groups: Vec<String> = list.iter().flat_map(|v| ids(&v.spec)).collect();
    let labels = Labels::load(state, [(Named::UserGroup, groups)]).await?;
    Ok(list
        .into_iter()
        .map(|v| {
            let group_names =
                ids(&v.spec).into_iter().filter_map(|g| labels.name(Named::UserGroup, &g).map(|n| (g, n))).collect();
            ConnectionPolicyDto {
                id: v.stored.id,
                name: v.stored.name,
                position: v.stored.position,
                spec: v.spec,
                group_names,
                created_at: ts(v.stored.created_at),
                updated_at: ts(v.stored.updated_at),
            }
        })
        .collect())
}

/// The body, with any field it does not know refused by name (the document's own fields plus
/// `name` and `position`).
fn body(raw: serde_json::Value) -> ApiResult<ConnectionPolicyBody> {
    if let Some(map) = raw.as_object() {
        let known = |k: &str| k == "name" || k == "position" || portcullis_core::gateway::SPEC_FIELDS.contains(&k);
        if let Some(k) = map.keys().find(|k| !known(k)) {
            let expected = ["name", "position"].iter().chain(portcullis_core::gateway::SPEC_FIELDS).copied();
            return Err(ApiError::invalid(
                k.as_str(),
                format!("unknown field; expected one of {}", expected.collect::<Vec<_>>().join(", ")),
            ));
        }
    }
    let mut raw = raw;
    let (name, position) = match raw.as_object_mut() {
        Some(map) => (map.remove("name"), map.remove("position")),
        None => return Err(ApiError::invalid("body", "expected a JSON object")),
    };
    let name = match name {
        Some(serde_json::Value::String(n)) => n,
        Some(_) => return Err(ApiError::invalid("name", "expected a string")),
        None => return Err(ApiError::invalid("name", "missing; name the policy")),
    };
    let position = match position {
        None | Some(serde_json::Value::Null) => None,
        Some(p) => Some(p.as_i64().ok_or_else(|| ApiError::invalid("position", "expected a whole number, 1 or more"))?),
    };
    let spec = serde_path_to_error::deserialize(raw).map_err(|e| {
        // Values the client sent are not echoed (they could be anything, a secret included).
        let message = crate::extract::redact_values(&e.inner().to_string());
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the request body does not fit: {}: {message}", e.path()),
        )
    })?;
    Ok(ConnectionPolicyBody { name, position, spec })
}

async fn dto(state: &AppState, v: uc::PolicyView) -> ApiResult<ConnectionPolicyDto> {
    Ok(dtos(state, vec![v]).await?.remove(0))
}

/// A connection policy: its name, where it goes in the order, and its rules.
#[derive(Deserialize, ToSchema)]
pub struct ConnectionPolicyBody {
    name: String,
    /// 1 is tried first; absent: last (when created) or where it is (when replaced).
    #[serde(default)]
    position: Option<i64>,
    #[serde(flatten)]
    spec: ConnectionPolicySpec,
}

/// Connection policies in the order they are tried.
#[utoipa::path(get, path = "/api/v1/connection-policies", tag = "connection-policies", operation_id = "list_connection_policies",
    responses((status = 200, description = "Policies, first tried first", body = [ConnectionPolicyDto])))]
async fn list(
    State(state): State<AppState>,
    caller: Authed<PolicyReaders>,
) -> ApiResult<Json<Vec<ConnectionPolicyDto>>> {
    let list = uc::list(&state, &caller).await?;
    Ok(Json(dtos(&state, list).await?))
}

/// Adds a connection policy (Security Policy Administrators).
#[utoipa::path(post, path = "/api/v1/connection-policies", tag = "connection-policies", operation_id = "create_connection_policy",
    request_body = ConnectionPolicyBody, responses((status = 201, description = "Created", body = ConnectionPolicyDto)))]
async fn create(
    State(state): State<AppState>,
    caller: Authed<PolicyAdmins>,
    ApiJson(raw): ApiJson<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<ConnectionPolicyDto>)> {
    let body = body(raw)?;
    let v = uc::create(&state, &caller, &body.name, &body.spec, body.position).await?;
    Ok((StatusCode::CREATED, Json(dto(&state, v).await?)))
}

/// One connection policy.
#[utoipa::path(get, path = "/api/v1/connection-policies/{id}", tag = "connection-policies", operation_id = "get_connection_policy",
    params(IdPath), responses((status = 200, description = "The policy", body = ConnectionPolicyDto)))]
async fn get_one(
    State(state): State<AppState>,
    caller: Authed<PolicyReaders>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<ConnectionPolicyDto>> {
    let v = uc::get(&state, &caller, &p.id).await?;
    Ok(Json(dto(&state, v).await?))
}

/// Replaces a connection policy's name and rules, and moves it if `position` is given.
#[utoipa::path(put, path = "/api/v1/connection-policies/{id}", tag = "connection-policies", operation_id = "replace_connection_policy",
    params(IdPath), request_body = ConnectionPolicyBody, responses((status = 200, description = "Replaced", body = ConnectionPolicyDto)))]
async fn replace(
    State(state): State<AppState>,
    caller: Authed<PolicyAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(raw): ApiJson<serde_json::Value>,
) -> ApiResult<Json<ConnectionPolicyDto>> {
    let body = body(raw)?;
    let v = uc::replace(&state, &caller, &p.id, &body.name, &body.spec, body.position).await?;
    Ok(Json(dto(&state, v).await?))
}

/// Deletes a connection policy. Connections it admitted are refused from then on unless a
/// later policy admits them; live sessions go on.
#[utoipa::path(delete, path = "/api/v1/connection-policies/{id}", tag = "connection-policies", operation_id = "delete_connection_policy",
    params(IdPath), responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    caller: Authed<PolicyAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    uc::delete(&state, &caller, &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionExplainRequest {
    /// `ssh`, `telnet` or `rdp`.
    protocol: String,
    /// The client's IP address.
    client: String,
    /// The asset's name.
    asset: String,
    /// The proxy port the client connects to; absent: the protocol's proxy port.
    #[serde(default)]
    listen_port: Option<u16>,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionVerdictDto {
    policy_id: String,
    policy_name: String,
    position: usize,
    /// `applies`, or what did not match: `disabled`, `protocol`, `client`, `listen_port`, `target`.
    outcome: String,
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionExplainResponse {
    /// The policy that applies; absent: the connection would be refused.
    policy_id: Option<String>,
    policy_name: Option<String>,
    /// Where the target leg would go, after address translation (`host:port`).
    destination: Option<String>,
    /// The source address of the target leg (SNAT), if the policy sets one.
    source_address: Option<String>,
    /// The policies tried, in order, up to the one that applies.
    verdicts: Vec<ConnectionVerdictDto>,
    /// Policies after the one that applies (never consulted).
    not_consulted: usize,
}

/// Which connection policy a client at this address, connecting to this asset, would get,
/// and why each policy before it did not apply.
#[utoipa::path(post, path = "/api/v1/connection-policies/explain", tag = "connection-policies", operation_id = "explain_connection_policy",
    request_body = ConnectionExplainRequest, responses((status = 200, description = "The decision and its reasons", body = ConnectionExplainResponse)))]
async fn explain(
    State(state): State<AppState>,
    caller: Authed<PolicyReaders>,
    ApiJson(req): ApiJson<ConnectionExplainRequest>,
) -> ApiResult<Json<ConnectionExplainResponse>> {
    let e = uc::explain(&state, &caller, &req.protocol, &req.client, req.listen_port, &req.asset).await?;
    Ok(Json(ConnectionExplainResponse {
        policy_id: e.applies.as_ref().map(|(id, _)| id.clone()),
        policy_name: e.applies.map(|(_, n)| n),
        destination: e
            .destination
            .map(|(h, p)| if h.contains(':') { format!("[{h}]:{p}") } else { format!("{h}:{p}") }),
        source_address: e.source_address,
        verdicts: e
            .verdicts
            .into_iter()
            .map(|v| ConnectionVerdictDto {
                policy_id: v.policy_id,
                policy_name: v.policy_name,
                position: v.position,
                outcome: v.outcome.to_owned(),
                reason: v.reason,
            })
            .collect(),
        not_consulted: e.not_consulted,
    }))
}
