//! Entitlements and access request policies (R-POL-1, R-POL-2), and "which policy would
//! govern this request, and why not the others" (R-POL-5). Changed by Security Policy
//! Administrators.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_core::policy::{AccessType, AccountMode, ApprovalLevel, PolicySettings, Scope};
use portcullis_core::schedule::{format_hhmm, parse_hhmm, TimeRestrictions, Weekdays, Window};
use portcullis_store::{Entitlement, EntitlementSpec, Named, Policy, PolicySpec};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authed, PolicyAdmins, PolicyReaders};
use crate::dto::{parse_ts, ts, IdPath};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::labels::Labels;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_entitlements, create_entitlement))
        .routes(routes!(get_entitlement, replace_entitlement, delete_entitlement))
        .routes(routes!(confirm_entitlement))
        .routes(routes!(confirm_policy))
        .routes(routes!(list_policies, create_policy))
        .routes(routes!(get_policy, replace_policy, delete_policy))
        .routes(routes!(explain))
}

/// A weekly time window in the requester's time zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowDto {
    /// Days, e.g. `["mon-fri"]` or `["sat", "sun"]`.
    days: Vec<String>,
    /// `HH:MM`, inclusive.
    start: String,
    /// `HH:MM`, exclusive; `24:00` for the end of the day.
    end: String,
}

/// The most time windows one entitlement or policy may have.
const MAX_WINDOWS: usize = 64;

/// An expiry, which must lie ahead: an entitlement or policy that expired when it was made is
/// a mistake (a year typed wrong), not a rule.
fn future_expiry(text: Option<&str>, now: i64) -> ApiResult<Option<i64>> {
    let Some(t) = text else { return Ok(None) };
    let at = parse_ts("expires_at", t)?;
    if at <= now {
        return Err(ApiError::invalid("expires_at", format!("'{t}' is in the past; give a later time, or none")));
    }
    Ok(Some(at))
}

fn parse_windows(field: &str, list: &[WindowDto]) -> ApiResult<TimeRestrictions> {
    if list.len() > MAX_WINDOWS {
        return Err(ApiError::invalid(field, format!("at most {MAX_WINDOWS} time windows (found {})", list.len())));
    }
    let windows = list
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let days = Weekdays::parse(&format!("{field}[{i}].days"), &w.days)?;
            let start = parse_hhmm(&format!("{field}[{i}].start"), &w.start)?;
            let end = parse_hhmm(&format!("{field}[{i}].end"), &w.end)?;
            Window::new(days, start, end).map_err(|e| ApiError::invalid(format!("{field}[{i}].end"), e.message))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(TimeRestrictions { windows })
}

fn windows_dto(t: &TimeRestrictions) -> Vec<WindowDto> {
    t.windows
        .iter()
        .map(|w| WindowDto {
            days: w.days.names().into_iter().map(str::to_owned).collect(),
            start: format_hhmm(w.start_minute),
            end: format_hhmm(w.end_minute),
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
pub struct EntitlementDto {
    id: String,
    name: String,
    description: String,
    /// 1 is the best.
    priority: i64,
    /// Empty: no time restrictions.
    windows: Vec<WindowDto>,
    expires_at: Option<String>,
    user_ids: Vec<String>,
    group_ids: Vec<String>,
    /// The user names of `user_ids`, in the same order.
    user_names: Vec<String>,
    /// The names of `group_ids`, in the same order.
    group_names: Vec<String>,
    /// Who changed it since another Security Policy Administrator confirmed it (user names):
    /// it grants them nothing until then.
    unconfirmed_by: Vec<String>,
    created_at: String,
    updated_at: String,
}

/// DTOs with the names of their users and groups.
async fn entitlement_dtos(state: &AppState, list: Vec<Entitlement>) -> ApiResult<Vec<EntitlementDto>> {
    let users = list.iter().flat_map(|e| e.user_ids.iter().chain(&e.unconfirmed_by).cloned()).collect();
    let groups = list.iter().flat_map(|e| e.group_ids.clone()).collect();
    let labels = Labels::load(state, [(Named::User, users), (Named::UserGroup, groups)]).await?;
    Ok(list
        .into_iter()
        .map(|e| {
            let user_names = labels.names(Named::User, &e.user_ids);
            let group_names = labels.names(Named::UserGroup, &e.group_ids);
            let unconfirmed_by = labels.names(Named::User, &e.unconfirmed_by);
            EntitlementDto { user_names, group_names, unconfirmed_by, ..e.into() }
        })
        .collect())
}

async fn entitlement_dto(state: &AppState, e: Entitlement) -> ApiResult<EntitlementDto> {
    Ok(entitlement_dtos(state, vec![e]).await?.remove(0))
}

impl From<Entitlement> for EntitlementDto {
    fn from(e: Entitlement) -> Self {
        EntitlementDto {
            windows: windows_dto(&e.windows),
            expires_at: e.expires_at.map(ts),
            created_at: ts(e.created_at),
            updated_at: ts(e.updated_at),
            id: e.id,
            name: e.name,
            description: e.description,
            priority: e.priority,
            user_ids: e.user_ids,
            group_ids: e.group_ids,
            user_names: vec![],
            group_names: vec![],
            unconfirmed_by: vec![],
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitlementRequest {
    name: String,
    #[serde(default)]
    description: String,
    /// 1 (best) to 1000.
    priority: i64,
    /// Weekly windows in the requester's time zone; empty or absent: no restriction.
    #[serde(default)]
    windows: Vec<WindowDto>,
    /// RFC 3339; its policies stop applying then.
    expires_at: Option<String>,
    /// Users who may request.
    #[serde(default)]
    user_ids: Vec<String>,
    /// User groups whose members may request.
    #[serde(default)]
    group_ids: Vec<String>,
}

impl EntitlementRequest {
    fn spec(self, now: i64) -> ApiResult<EntitlementSpec> {
        Ok(EntitlementSpec {
            windows: parse_windows("windows", &self.windows)?,
            expires_at: future_expiry(self.expires_at.as_deref(), now)?,
            name: self.name,
            description: self.description,
            priority: self.priority,
            user_ids: self.user_ids,
            group_ids: self.group_ids,
        })
    }
}

/// All entitlements, best priority first.
#[utoipa::path(get, path = "/api/v1/entitlements", tag = "policies", operation_id = "list_entitlements",
    responses((status = 200, description = "Entitlements", body = [EntitlementDto])))]
async fn list_entitlements(
    State(state): State<AppState>,
    _c: Authed<PolicyReaders>,
) -> ApiResult<Json<Vec<EntitlementDto>>> {
    Ok(Json(entitlement_dtos(&state, state.store.entitlements().await?).await?))
}

/// Creates an entitlement.
#[utoipa::path(post, path = "/api/v1/entitlements", tag = "policies", operation_id = "create_entitlement",
    request_body = EntitlementRequest,
    responses((status = 201, description = "Created", body = EntitlementDto)))]
async fn create_entitlement(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiJson(req): ApiJson<EntitlementRequest>,
) -> ApiResult<(StatusCode, Json<EntitlementDto>)> {
    let e = state.store.put_entitlement(&c.actor(), state.now(), None, req.spec(state.now())?).await?;
    Ok((StatusCode::CREATED, Json(entitlement_dto(&state, e).await?)))
}

/// One entitlement.
#[utoipa::path(get, path = "/api/v1/entitlements/{id}", tag = "policies", operation_id = "get_entitlement",
    params(IdPath), responses((status = 200, description = "The entitlement", body = EntitlementDto)))]
async fn get_entitlement(
    State(state): State<AppState>,
    _c: Authed<PolicyReaders>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<EntitlementDto>> {
    Ok(Json(entitlement_dto(&state, state.store.entitlement(&p.id).await?).await?))
}

/// Replaces an entitlement's definition.
#[utoipa::path(put, path = "/api/v1/entitlements/{id}", tag = "policies", operation_id = "replace_entitlement",
    params(IdPath), request_body = EntitlementRequest,
    responses((status = 200, description = "Replaced", body = EntitlementDto)))]
async fn replace_entitlement(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<EntitlementRequest>,
) -> ApiResult<Json<EntitlementDto>> {
    let e = state.store.put_entitlement(&c.actor(), state.now(), Some(&p.id), req.spec(state.now())?).await?;
    Ok(Json(entitlement_dto(&state, e).await?))
}

/// Confirms an entitlement as it is: those who changed it get access through it again. By a
/// Security Policy Administrator who made none of the changes since the last confirmation.
#[utoipa::path(post, path = "/api/v1/entitlements/{id}/confirm", tag = "policies", operation_id = "confirm_entitlement",
    params(IdPath), responses((status = 200, description = "Confirmed", body = EntitlementDto)))]
async fn confirm_entitlement(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<EntitlementDto>> {
    portcullis_app::policies::confirm(&state, &c, "entitlement", &p.id).await?;
    Ok(Json(entitlement_dto(&state, state.store.entitlement(&p.id).await?).await?))
}

/// Confirms a policy as it is (see `confirm_entitlement`).
#[utoipa::path(post, path = "/api/v1/policies/{id}/confirm", tag = "policies", operation_id = "confirm_policy",
    params(IdPath), responses((status = 200, description = "Confirmed", body = PolicyDto)))]
async fn confirm_policy(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<PolicyDto>> {
    portcullis_app::policies::confirm(&state, &c, "policy", &p.id).await?;
    Ok(Json(policy_dto(&state, state.store.policy(&p.id).await?).await?))
}

/// Deletes an entitlement and all its policies.
#[utoipa::path(delete, path = "/api/v1/entitlements/{id}", tag = "policies", operation_id = "delete_entitlement",
    params(IdPath), responses((status = 204, description = "Deleted with its policies")))]
async fn delete_entitlement(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    state.store.delete_entitlement(&c.actor(), state.now(), &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeDto {
    #[serde(default)]
    assets: Vec<String>,
    #[serde(default)]
    asset_groups: Vec<String>,
    #[serde(default)]
    accounts: Vec<String>,
    #[serde(default)]
    account_groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalLevelDto {
    /// Approvals needed at this level (1 to 10).
    required: u32,
    #[serde(default)]
    user_ids: Vec<String>,
    #[serde(default)]
    group_ids: Vec<String>,
}

/// Every policy setting (R-POL-2); absent fields take their defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsDto {
    ticket_required: Option<bool>,
    reason_required: Option<bool>,
    comment_required: Option<bool>,
    /// The requester may pick a duration up to the maximum.
    duration_changeable: Option<bool>,
    default_duration_minutes: Option<i64>,
    max_duration_minutes: Option<i64>,
    /// Approve without people.
    auto_approve: Option<bool>,
    /// Asked in order; each level needs its approvals before the next is asked.
    approval_levels: Option<Vec<ApprovalLevelDto>>,
    review_required: Option<bool>,
    reviewer_user_ids: Option<Vec<String>>,
    reviewer_group_ids: Option<Vec<String>>,
    /// none, user_supplied, linked_account or directory_account.
    account_mode: Option<String>,
    directory_account_ids: Option<Vec<String>>,
    /// Record sessions.
    recording: Option<bool>,
    connection_policy: Option<String>,
    idle_timeout_minutes: Option<i64>,
    /// Allow overlapping use of one account.
    simultaneous_access: Option<bool>,
    change_password_after_checkin: Option<bool>,
    /// Allow `ssh -L` (direct TCP/IP forwarding) through the proxy. Default false.
    port_forwarding: Option<bool>,
    /// Viewing or exporting these sessions' recordings needs an approved request with a
    /// justification (decided by someone other than the asker). Default false.
    recording_view_approval: Option<bool>,
    /// Delete these sessions (recording, search entries, metadata) this many days after they
    /// end, unless under legal hold; 0 (default) keeps them.
    recording_retention_days: Option<i64>,
}

impl SettingsDto {
    fn settings(self) -> ApiResult<PolicySettings> {
        let d = PolicySettings::default();
        Ok(PolicySettings {
            ticket_required: self.ticket_required.unwrap_or(d.ticket_required),
            reason_required: self.reason_required.unwrap_or(d.reason_required),
            comment_required: self.comment_required.unwrap_or(d.comment_required),
            duration_changeable: self.duration_changeable.unwrap_or(d.duration_changeable),
            default_duration_minutes: self.default_duration_minutes.unwrap_or(d.default_duration_minutes),
            max_duration_minutes: self.max_duration_minutes.unwrap_or(d.max_duration_minutes),
            auto_approve: self.auto_approve.unwrap_or(d.auto_approve),
            approval_levels: self
                .approval_levels
                .unwrap_or_default()
                .into_iter()
                .map(|l| ApprovalLevel { required: l.required, user_ids: l.user_ids, group_ids: l.group_ids })
                .collect(),
            review_required: self.review_required.unwrap_or(d.review_required),
            reviewer_user_ids: self.reviewer_user_ids.unwrap_or_default(),
            reviewer_group_ids: self.reviewer_group_ids.unwrap_or_default(),
            account_mode: match self.account_mode.as_deref() {
                None => d.account_mode,
                Some(m) => AccountMode::parse(m).ok_or_else(|| {
                    ApiError::invalid(
                        "settings.account_mode",
                        "must be none, user_supplied, linked_account or directory_account",
                    )
                })?,
            },
            directory_account_ids: self.directory_account_ids.unwrap_or_default(),
            recording: self.recording.unwrap_or(d.recording),
            connection_policy: self.connection_policy,
            idle_timeout_minutes: self.idle_timeout_minutes.unwrap_or(d.idle_timeout_minutes),
            simultaneous_access: self.simultaneous_access.unwrap_or(d.simultaneous_access),
            change_password_after_checkin: self
                .change_password_after_checkin
                .unwrap_or(d.change_password_after_checkin),
            port_forwarding: self.port_forwarding.unwrap_or(d.port_forwarding),
            recording_view_approval: self.recording_view_approval.unwrap_or(d.recording_view_approval),
            recording_retention_days: self.recording_retention_days.unwrap_or(d.recording_retention_days),
        })
    }

    fn from_settings(s: &PolicySettings) -> SettingsDto {
        SettingsDto {
            ticket_required: Some(s.ticket_required),
            reason_required: Some(s.reason_required),
            comment_required: Some(s.comment_required),
            duration_changeable: Some(s.duration_changeable),
            default_duration_minutes: Some(s.default_duration_minutes),
            max_duration_minutes: Some(s.max_duration_minutes),
            auto_approve: Some(s.auto_approve),
            approval_levels: Some(
                s.approval_levels
                    .iter()
                    .map(|l| ApprovalLevelDto {
                        required: l.required,
                        user_ids: l.user_ids.clone(),
                        group_ids: l.group_ids.clone(),
                    })
                    .collect(),
            ),
            review_required: Some(s.review_required),
            reviewer_user_ids: Some(s.reviewer_user_ids.clone()),
            reviewer_group_ids: Some(s.reviewer_group_ids.clone()),
            account_mode: Some(s.account_mode.as_str().to_owned()),
            directory_account_ids: Some(s.directory_account_ids.clone()),
            recording: Some(s.recording),
            connection_policy: s.connection_policy.clone(),
            idle_timeout_minutes: Some(s.idle_timeout_minutes),
            simultaneous_access: Some(s.simultaneous_access),
            change_password_after_checkin: Some(s.change_password_after_checkin),
            port_forwarding: Some(s.port_forwarding),
            recording_view_approval: Some(s.recording_view_approval),
            recording_retention_days: Some(s.recording_retention_days),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PolicyDto {
    id: String,
    entitlement_id: String,
    name: String,
    description: String,
    priority: i64,
    /// password, ssh_key, ssh, rdp or telnet.
    access_type: String,
    scope: ScopeDto,
    windows: Vec<WindowDto>,
    emergency_allowed: bool,
    expires_at: Option<String>,
    settings: SettingsDto,
    created_at: String,
    updated_at: String,
    entitlement_name: Option<String>,
    /// The name of every id this policy refers to (scope, approvers, reviewers, directory
    /// accounts); accounts as ACCOUNT@ASSET.
    names: std::collections::BTreeMap<String, String>,
    /// Who changed it since another Security Policy Administrator confirmed it (user names):
    /// it grants them nothing until then.
    unconfirmed_by: Vec<String>,
}

/// DTOs with the names of everything they refer to.
async fn policy_dtos(state: &AppState, list: Vec<Policy>) -> ApiResult<Vec<PolicyDto>> {
    let mut wanted: Vec<(Named, Vec<String>)> = Vec::new();
    for p in &list {
        let s = &p.settings;
        wanted.push((Named::Entitlement, vec![p.entitlement_id.clone()]));
        wanted.push((Named::User, p.unconfirmed_by.clone()));
        wanted.push((Named::Asset, p.scope.assets.clone()));
        wanted.push((Named::AssetGroup, p.scope.asset_groups.clone()));
        wanted.push((Named::Account, p.scope.accounts.clone()));
        wanted.push((Named::AccountGroup, p.scope.account_groups.clone()));
        wanted.push((Named::Account, s.directory_account_ids.clone()));
        wanted.push((Named::User, s.reviewer_user_ids.clone()));
        wanted.push((Named::UserGroup, s.reviewer_group_ids.clone()));
        for l in &s.approval_levels {
            wanted.push((Named::User, l.user_ids.clone()));
            wanted.push((Named::UserGroup, l.group_ids.clone()));
        }
    }
    let labels = Labels::load(state, wanted.clone()).await?;
    Ok(list
        .into_iter()
        .map(|p| {
            let s = &p.settings;
            let mut names = std::collections::BTreeMap::new();
            let mut add = |kind: Named, ids: &[String]| {
                for id in ids {
                    if let Some(n) = labels.name(kind, id) {
                        names.insert(id.clone(), n);
                    }
                }
            };
            add(Named::Asset, &p.scope.assets);
            add(Named::AssetGroup, &p.scope.asset_groups);
            add(Named::Account, &p.scope.accounts);
            add(Named::AccountGroup, &p.scope.account_groups);
            add(Named::Account, &s.directory_account_ids);
            add(Named::User, &s.reviewer_user_ids);
            add(Named::UserGroup, &s.reviewer_group_ids);
            for l in &s.approval_levels {
                add(Named::User, &l.user_ids);
                add(Named::UserGroup, &l.group_ids);
            }
            let entitlement_name = labels.name(Named::Entitlement, &p.entitlement_id);
            let unconfirmed_by = labels.names(Named::User, &p.unconfirmed_by);
            PolicyDto { entitlement_name, names, unconfirmed_by, ..p.into() }
        })
        .collect())
}

async fn policy_dto(state: &AppState, p: Policy) -> ApiResult<PolicyDto> {
    Ok(policy_dtos(state, vec![p]).await?.remove(0))
}

impl From<Policy> for PolicyDto {
    fn from(p: Policy) -> Self {
        PolicyDto {
            access_type: p.access_type.as_str().to_owned(),
            scope: ScopeDto {
                assets: p.scope.assets,
                asset_groups: p.scope.asset_groups,
                accounts: p.scope.accounts,
                account_groups: p.scope.account_groups,
            },
            windows: windows_dto(&p.windows),
            expires_at: p.expires_at.map(ts),
            settings: SettingsDto::from_settings(&p.settings),
            created_at: ts(p.created_at),
            updated_at: ts(p.updated_at),
            id: p.id,
            entitlement_id: p.entitlement_id,
            name: p.name,
            description: p.description,
            priority: p.priority,
            emergency_allowed: p.emergency_allowed,
            entitlement_name: None,
            names: Default::default(),
            unconfirmed_by: vec![],
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    entitlement_id: String,
    name: String,
    #[serde(default)]
    description: String,
    /// 1 (best) to 1000, within the entitlement.
    priority: i64,
    /// password, ssh_key, ssh, rdp or telnet.
    access_type: String,
    scope: ScopeDto,
    #[serde(default)]
    windows: Vec<WindowDto>,
    #[serde(default)]
    emergency_allowed: bool,
    expires_at: Option<String>,
    #[serde(default)]
    settings: SettingsDto,
}

pub(crate) fn parse_access_type(field: &str, s: &str) -> ApiResult<AccessType> {
    Ok(portcullis_app::requests::parse_access_type(field, s)?)
}

impl PolicyRequest {
    fn spec(self, now: i64) -> ApiResult<PolicySpec> {
        Ok(PolicySpec {
            access_type: parse_access_type("access_type", &self.access_type)?,
            windows: parse_windows("windows", &self.windows)?,
            expires_at: future_expiry(self.expires_at.as_deref(), now)?,
            settings: self.settings.settings()?,
            scope: Scope {
                assets: self.scope.assets,
                asset_groups: self.scope.asset_groups,
                accounts: self.scope.accounts,
                account_groups: self.scope.account_groups,
            },
            entitlement_id: self.entitlement_id,
            name: self.name,
            description: self.description,
            priority: self.priority,
            emergency_allowed: self.emergency_allowed,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PolicyListParams {
    /// Only the policies of this entitlement.
    entitlement_id: Option<String>,
}

/// Access request policies, optionally of one entitlement.
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", operation_id = "list_policies",
    params(PolicyListParams), responses((status = 200, description = "Policies", body = [PolicyDto])))]
async fn list_policies(
    State(state): State<AppState>,
    _c: Authed<PolicyReaders>,
    ApiQuery(q): ApiQuery<PolicyListParams>,
) -> ApiResult<Json<Vec<PolicyDto>>> {
    Ok(Json(policy_dtos(&state, state.store.policies(q.entitlement_id.as_deref()).await?).await?))
}

/// Creates an access request policy in an entitlement.
#[utoipa::path(post, path = "/api/v1/policies", tag = "policies", operation_id = "create_policy",
    request_body = PolicyRequest, responses((status = 201, description = "Created", body = PolicyDto)))]
async fn create_policy(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> ApiResult<(StatusCode, Json<PolicyDto>)> {
    let p = state.store.put_policy(&c.actor(), state.now(), None, req.spec(state.now())?).await?;
    Ok((StatusCode::CREATED, Json(policy_dto(&state, p).await?)))
}

/// One policy.
#[utoipa::path(get, path = "/api/v1/policies/{id}", tag = "policies", operation_id = "get_policy",
    params(IdPath), responses((status = 200, description = "The policy", body = PolicyDto)))]
async fn get_policy(
    State(state): State<AppState>,
    _c: Authed<PolicyReaders>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<PolicyDto>> {
    Ok(Json(policy_dto(&state, state.store.policy(&p.id).await?).await?))
}

/// Replaces a policy's definition.
#[utoipa::path(put, path = "/api/v1/policies/{id}", tag = "policies", operation_id = "replace_policy",
    params(IdPath), request_body = PolicyRequest, responses((status = 200, description = "Replaced", body = PolicyDto)))]
async fn replace_policy(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> ApiResult<Json<PolicyDto>> {
    let p = state.store.put_policy(&c.actor(), state.now(), Some(&p.id), req.spec(state.now())?).await?;
    Ok(Json(policy_dto(&state, p).await?))
}

/// Deletes a policy.
#[utoipa::path(delete, path = "/api/v1/policies/{id}", tag = "policies", operation_id = "delete_policy",
    params(IdPath), responses((status = 204, description = "Deleted")))]
async fn delete_policy(
    State(state): State<AppState>,
    c: Authed<PolicyAdmins>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<StatusCode> {
    state.store.delete_policy(&c.actor(), state.now(), &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The requester.
    user_id: String,
    account_id: String,
    /// password, ssh_key, ssh, rdp or telnet.
    access_type: String,
    /// Start of the access: RFC 3339, or a local date-time in the requester's time zone such as
    /// 2026-12-01T09:00 (a time the clocks skip or show twice is refused); now when absent.
    at: Option<String>,
    #[serde(default)]
    emergency: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CandidateDto {
    policy_id: String,
    policy_name: String,
    entitlement_id: String,
    entitlement_name: String,
    /// `governs`, or why it was eliminated: not_member, out_of_scope, wrong_access_type,
    /// entitlement_expired, policy_expired, emergency_not_allowed, outside_entitlement_window,
    /// outside_policy_window, lower_entitlement_priority, lower_policy_priority.
    outcome: String,
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ExplainResponse {
    governing_policy_id: Option<String>,
    governing_policy_name: Option<String>,
    /// The requester's time zone, in which the windows were evaluated.
    time_zone: String,
    at: String,
    /// `at` as the requester's wall-clock time in their zone.
    at_local: String,
    /// Every policy whose scope covers the account, best-ranked first, with its verdict.
    candidates: Vec<CandidateDto>,
    /// How many other policies exist whose scope does not cover the account (not listed).
    out_of_scope_policies: usize,
}

/// Which policy would govern a request by this user for this account, access type, time and
/// emergency flag, and why every other policy was eliminated.
#[utoipa::path(post, path = "/api/v1/policies/explain", tag = "policies", operation_id = "explain_policy",
    request_body = ExplainRequest, responses((status = 200, description = "The decision and its reasons", body = ExplainResponse)))]
async fn explain(
    State(state): State<AppState>,
    _c: Authed<PolicyReaders>,
    ApiJson(req): ApiJson<ExplainRequest>,
) -> ApiResult<Json<ExplainResponse>> {
    let access_type = parse_access_type("access_type", &req.access_type)?;
    let e = portcullis_app::policies::explain(
        &state,
        &req.user_id,
        &req.account_id,
        access_type,
        req.at.as_deref(),
        req.emergency,
    )
    .await?;
    Ok(Json(ExplainResponse {
        governing_policy_id: e.governing_policy_id,
        governing_policy_name: e.governing_policy_name,
        time_zone: e.time_zone,
        at: ts(e.at),
        at_local: e.at_local,
        candidates: e
            .candidates
            .into_iter()
            .map(|c| CandidateDto {
                policy_name: c.policy_name,
                entitlement_name: c.entitlement_name,
                outcome: c.outcome.to_owned(),
                reason: c.reason.to_owned(),
                policy_id: c.policy_id,
                entitlement_id: c.entitlement_id,
            })
            .collect(),
        out_of_scope_policies: e.out_of_scope,
    }))
}
