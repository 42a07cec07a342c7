//! Entitlements and access request policies (R-POL-1, R-POL-2). A policy belongs to one
//! entitlement; deleting the entitlement deletes its policies (foreign-key cascade).

use std::collections::HashMap;

use jiff::Timestamp;
use portcullis_core::policy::{
    AccessType, AccountMode, ApprovalLevel, EntitlementRule, PolicyRule, PolicySettings, Scope,
};
use portcullis_core::schedule::TimeRestrictions;
use portcullis_core::validate;
use serde_json::{json, Value};
use sqlx::AnyConnection;

use crate::audit::{append, Deletion, NewEvent};
use crate::{new_id, Actor, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    pub id: String,
    pub name: String,
    pub description: String,
    pub priority: i64,
    pub windows: TimeRestrictions,
    pub expires_at: Option<i64>,
    pub user_ids: Vec<String>,
    pub group_ids: Vec<String>,
    /// Who changed it since another Security Policy Administrator last confirmed it; none of
    /// them gets access through it.
    pub unconfirmed_by: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The full definition of an entitlement, for create and replace.
#[derive(Debug, Clone)]
pub struct EntitlementSpec {
    pub name: String,
    pub description: String,
    pub priority: i64,
    pub windows: TimeRestrictions,
    pub expires_at: Option<i64>,
    pub user_ids: Vec<String>,
    pub group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub entitlement_id: String,
    pub name: String,
    pub description: String,
    pub priority: i64,
    pub access_type: AccessType,
    pub scope: Scope,
    pub windows: TimeRestrictions,
    pub emergency_allowed: bool,
    pub expires_at: Option<i64>,
    pub settings: PolicySettings,
    /// Who changed it since another Security Policy Administrator last confirmed it.
    pub unconfirmed_by: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What [`Store::resolution_facts`] returns: (group id, member id) pairs, (user id, time
/// zone) and (account id, asset id).
#[derive(Debug, Clone, Default)]
pub struct ResolutionFacts {
    pub user_group_members: Vec<(String, String)>,
    pub account_group_members: Vec<(String, String)>,
    pub asset_group_members: Vec<(String, String)>,
    pub user_zones: Vec<(String, String)>,
    pub account_assets: Vec<(String, String)>,
}

/// The full definition of a policy, for create and replace.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    pub entitlement_id: String,
    pub name: String,
    pub description: String,
    pub priority: i64,
    pub access_type: AccessType,
    pub scope: Scope,
    pub windows: TimeRestrictions,
    pub emergency_allowed: bool,
    pub expires_at: Option<i64>,
    pub settings: PolicySettings,
}

fn encode_settings(s: &PolicySettings) -> String {
    json!({
        "ticket_required": s.ticket_required,
        "reason_required": s.reason_required,
        "comment_required": s.comment_required,
        "duration_changeable": s.duration_changeable,
        "default_duration_minutes": s.default_duration_minutes,
        "max_duration_minutes": s.max_duration_minutes,
        "auto_approve": s.auto_approve,
        "approval_levels": s.approval_levels.iter().map(|l| json!({ "required": l.required, "user_ids": l.user_ids, "group_ids": l.group_ids })).collect::<Vec<_>>(),
        "review_required": s.review_required,
        "reviewer_user_ids": s.reviewer_user_ids,
        "reviewer_group_ids": s.reviewer_group_ids,
        "account_mode": s.account_mode.as_str(),
        "directory_account_ids": s.directory_account_ids,
        "recording": s.recording,
        "connection_policy": s.connection_policy,
        "idle_timeout_minutes": s.idle_timeout_minutes,
        "simultaneous_access": s.simultaneous_access,
        "change_password_after_checkin": s.change_password_after_checkin,
        "port_forwarding": s.port_forwarding,
        "recording_view_approval": s.recording_view_approval,
        "recording_retention_days": s.recording_retention_days,
    })
    .to_string()
}

fn decode_settings(text: &str) -> Result<PolicySettings> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("policy settings: {what}"));
    let v: Value = serde_json::from_str(text).map_err(|_| corrupt("not JSON"))?;
    let b = |k: &str| v[k].as_bool().ok_or_else(|| corrupt(k));
    let i = |k: &str| v[k].as_i64().ok_or_else(|| corrupt(k));
    let list = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    Ok(PolicySettings {
        ticket_required: b("ticket_required")?,
        reason_required: b("reason_required")?,
        comment_required: b("comment_required")?,
        duration_changeable: b("duration_changeable")?,
        default_duration_minutes: i("default_duration_minutes")?,
        max_duration_minutes: i("max_duration_minutes")?,
        auto_approve: b("auto_approve")?,
        approval_levels: v["approval_levels"]
            .as_array()
            .ok_or_else(|| corrupt("approval_levels"))?
            .iter()
            .map(|l| ApprovalLevel {
                required: l["required"].as_u64().unwrap_or(1) as u32,
                user_ids: list(&l["user_ids"]),
                group_ids: list(&l["group_ids"]),
            })
            .collect(),
        review_required: b("review_required")?,
        reviewer_user_ids: list(&v["reviewer_user_ids"]),
        reviewer_group_ids: list(&v["reviewer_group_ids"]),
        account_mode: v["account_mode"].as_str().and_then(AccountMode::parse).ok_or_else(|| corrupt("account_mode"))?,
        directory_account_ids: list(&v["directory_account_ids"]),
        recording: b("recording")?,
        connection_policy: v["connection_policy"].as_str().map(str::to_owned),
        idle_timeout_minutes: i("idle_timeout_minutes")?,
        simultaneous_access: b("simultaneous_access")?,
        change_password_after_checkin: b("change_password_after_checkin")?,
        port_forwarding: v["port_forwarding"].as_bool().unwrap_or(false),
        recording_view_approval: v["recording_view_approval"].as_bool().unwrap_or(false),
        recording_retention_days: v["recording_retention_days"].as_i64().unwrap_or(0),
    })
}

fn windows(text: &str) -> Result<TimeRestrictions> {
    TimeRestrictions::decode(text).ok_or_else(|| StoreError::Corrupt(format!("time windows '{text}'")))
}

/// Checks that every id names an existing row of `table`; `field` names the list in errors.
async fn ensure_exist(conn: &mut AnyConnection, table: &str, field: &str, ids: &[String]) -> Result<()> {
    for (i, id) in ids.iter().enumerate() {
        let found: Option<String> = sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(
                portcullis_core::ValidationError::new(format!("{field}[{i}]"), format!("no such id '{id}'")).into()
            );
        }
    }
    Ok(())
}

fn validate_priority(p: i64) -> Result<()> {
    if !(1..=1000).contains(&p) {
        return Err(portcullis_core::ValidationError::new("priority", "must be 1 (best) to 1000").into());
    }
    Ok(())
}

type EntRow = (String, String, String, i64, String, Option<i64>, i64, i64);
type PolRow = (String, String, String, String, i64, String, String, i64, Option<i64>, String, i64, i64);

impl Store {
    async fn write_entitlement_members(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        spec: &EntitlementSpec,
    ) -> Result<()> {
        ensure_exist(conn, "users", "user_ids", &spec.user_ids).await?;
        ensure_exist(conn, "user_groups", "group_ids", &spec.group_ids).await?;
        sqlx::query("DELETE FROM entitlement_members WHERE entitlement_id = $1").bind(id).execute(&mut *conn).await?;
        for (kind, ids) in [("user", &spec.user_ids), ("group", &spec.group_ids)] {
            for m in ids {
                sqlx::query("INSERT INTO entitlement_members (entitlement_id, member_type, member_id) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING")
                    .bind(id)
                    .bind(kind)
                    .bind(m)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Creates (`id = None`) or replaces an entitlement.
    pub async fn put_entitlement(
        &self,
        actor: &Actor,
        now: i64,
        id: Option<&str>,
        spec: EntitlementSpec,
    ) -> Result<Entitlement> {
        validate::name("name", &spec.name)?;
        validate::description("description", &spec.description)?;
        validate_priority(spec.priority)?;
        let mut tx = self.write.begin().await?;
        let (id, action) = match id {
            None => {
                let id = new_id();
                sqlx::query("INSERT INTO entitlements (id, name, description, priority, windows, expires_at, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$7)")
                    .bind(&id)
                    .bind(&spec.name)
                    .bind(&spec.description)
                    .bind(spec.priority)
                    .bind(spec.windows.encode())
                    .bind(spec.expires_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::unique(e, || format!("an entitlement named '{}' already exists", spec.name)))?;
                (id, "entitlement.create")
            }
            Some(id) => {
                let n = sqlx::query("UPDATE entitlements SET name = $1, description = $2, priority = $3, windows = $4, expires_at = $5, updated_at = $6 WHERE id = $7")
                    .bind(&spec.name)
                    .bind(&spec.description)
                    .bind(spec.priority)
                    .bind(spec.windows.encode())
                    .bind(spec.expires_at)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::unique(e, || format!("an entitlement named '{}' already exists", spec.name)))?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound("entitlement"));
                }
                (id.to_owned(), "entitlement.update")
            }
        };
        self.write_entitlement_members(&mut tx, &id, &spec).await?;
        note_change(&mut tx, "entitlement", &id, &actor.id).await?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success(action, "entitlement", &id).with_details(json!({
                "name": spec.name, "priority": spec.priority, "users": spec.user_ids, "groups": spec.group_ids, "windows": spec.windows.encode(),
            })),
        )
        .await?;
        tx.commit().await?;
        self.entitlement(&id).await
    }

    pub async fn entitlement(&self, id: &str) -> Result<Entitlement> {
        let row: Option<EntRow> = sqlx::query_as("SELECT id, name, description, priority, windows, expires_at, created_at, updated_at FROM entitlements WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        let row = row.ok_or(StoreError::NotFound("entitlement"))?;
        let members: Vec<(String, String)> = sqlx::query_as(
            "SELECT member_type, member_id FROM entitlement_members WHERE entitlement_id = $1 ORDER BY member_id",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        let mut e = entitlement_from(row, &members)?;
        e.unconfirmed_by = self.changers("entitlement").await?.remove(&e.id).unwrap_or_default();
        Ok(e)
    }

    pub async fn entitlements(&self) -> Result<Vec<Entitlement>> {
        let rows: Vec<EntRow> = sqlx::query_as("SELECT id, name, description, priority, windows, expires_at, created_at, updated_at FROM entitlements ORDER BY priority, name")
            .fetch_all(&self.read)
            .await?;
        let members: Vec<(String, String, String)> =
            sqlx::query_as("SELECT entitlement_id, member_type, member_id FROM entitlement_members ORDER BY member_id")
                .fetch_all(&self.read)
                .await?;
        let mut by_entitlement: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (e, t, m) in members {
            by_entitlement.entry(e).or_default().push((t, m));
        }
        let mut changers = self.changers("entitlement").await?;
        rows.into_iter()
            .map(|r| {
                let mine = by_entitlement.remove(&r.0).unwrap_or_default();
                let mut e = entitlement_from(r, &mine)?;
                e.unconfirmed_by = changers.remove(&e.id).unwrap_or_default();
                Ok(e)
            })
            .collect()
    }

    /// Deletes an entitlement and its policies. Returns how many policies went with it.
    pub async fn delete_entitlement(&self, actor: &Actor, now: i64, id: &str) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let policies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM policies WHERE entitlement_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let name: Option<String> = sqlx::query_scalar("DELETE FROM entitlements WHERE id = $1 RETURNING name")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let name = name.ok_or(StoreError::NotFound("entitlement"))?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("entitlement.delete", "entitlement", id)
                .with_details(json!({ "name": name, "policies_deleted": policies })),
        )
        .await?;
        tx.commit().await?;
        Ok(policies)
    }

    /// Creates (`id = None`) or replaces an access request policy.
    pub async fn put_policy(&self, actor: &Actor, now: i64, id: Option<&str>, spec: PolicySpec) -> Result<Policy> {
        validate::name("name", &spec.name)?;
        validate::description("description", &spec.description)?;
        validate_priority(spec.priority)?;
        spec.settings.validate().map_err(|e| e.within("settings"))?;
        let s = &spec.scope;
        if s.assets.is_empty() && s.asset_groups.is_empty() && s.accounts.is_empty() && s.account_groups.is_empty() {
            return Err(portcullis_core::ValidationError::new(
                "scope",
                "name at least one asset, asset group, account or account group",
            )
            .into());
        }
        let mut tx = self.write.begin().await?;
        let entitlement: Option<String> = sqlx::query_scalar("SELECT id FROM entitlements WHERE id = $1")
            .bind(&spec.entitlement_id)
            .fetch_optional(&mut *tx)
            .await?;
        if entitlement.is_none() {
            return Err(portcullis_core::ValidationError::new("entitlement_id", "no such entitlement").into());
        }
        ensure_exist(&mut tx, "assets", "scope.assets", &s.assets).await?;
        ensure_exist(&mut tx, "asset_groups", "scope.asset_groups", &s.asset_groups).await?;
        ensure_exist(&mut tx, "accounts", "scope.accounts", &s.accounts).await?;
        ensure_exist(&mut tx, "account_groups", "scope.account_groups", &s.account_groups).await?;
        for (i, l) in spec.settings.approval_levels.iter().enumerate() {
            let level = format!("settings.approval_levels[{i}]");
            ensure_exist(&mut tx, "users", &format!("{level}.user_ids"), &l.user_ids).await?;
            ensure_exist(&mut tx, "user_groups", &format!("{level}.group_ids"), &l.group_ids).await?;
        }
        ensure_exist(&mut tx, "users", "settings.reviewer_user_ids", &spec.settings.reviewer_user_ids).await?;
        ensure_exist(&mut tx, "user_groups", "settings.reviewer_group_ids", &spec.settings.reviewer_group_ids).await?;
        let unique =
            |e| StoreError::unique(e, || format!("the entitlement already has a policy named '{}'", spec.name));
        let (id, action) = match id {
            None => {
                let id = new_id();
                sqlx::query(
                    "INSERT INTO policies (id, entitlement_id, name, description, priority, access_type, windows, emergency_allowed, expires_at, settings, created_at, updated_at) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$11)",
                )
                .bind(&id)
                .bind(&spec.entitlement_id)
                .bind(&spec.name)
                .bind(&spec.description)
                .bind(spec.priority)
                .bind(spec.access_type.as_str())
                .bind(spec.windows.encode())
                .bind(i64::from(spec.emergency_allowed))
                .bind(spec.expires_at)
                .bind(encode_settings(&spec.settings))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(unique)?;
                (id, "policy.create")
            }
            Some(id) => {
                let n = sqlx::query(
                    "UPDATE policies SET entitlement_id = $1, name = $2, description = $3, priority = $4, access_type = $5, windows = $6, \
                     emergency_allowed = $7, expires_at = $8, settings = $9, updated_at = $10 WHERE id = $11",
                )
                .bind(&spec.entitlement_id)
                .bind(&spec.name)
                .bind(&spec.description)
                .bind(spec.priority)
                .bind(spec.access_type.as_str())
                .bind(spec.windows.encode())
                .bind(i64::from(spec.emergency_allowed))
                .bind(spec.expires_at)
                .bind(encode_settings(&spec.settings))
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(unique)?
                .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound("policy"));
                }
                (id.to_owned(), "policy.update")
            }
        };
        sqlx::query("DELETE FROM policy_scope WHERE policy_id = $1").bind(&id).execute(&mut *tx).await?;
        note_change(&mut tx, "policy", &id, &actor.id).await?;
        for (kind, ids) in [
            ("asset", &s.assets),
            ("asset_group", &s.asset_groups),
            ("account", &s.accounts),
            ("account_group", &s.account_groups),
        ] {
            for sid in ids {
                sqlx::query("INSERT INTO policy_scope (policy_id, scope_type, scope_id) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING")
                    .bind(&id)
                    .bind(kind)
                    .bind(sid)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success(action, "policy", &id).with_details(json!({
                "name": spec.name, "entitlement_id": spec.entitlement_id, "priority": spec.priority,
                "access_type": spec.access_type.as_str(), "settings": serde_json::from_str::<Value>(&encode_settings(&spec.settings)).unwrap_or_default(),
            })),
        )
        .await?;
        tx.commit().await?;
        self.policy(&id).await
    }

    pub async fn policy(&self, id: &str) -> Result<Policy> {
        let mut list = self.load_policies(Some(("p.id", id))).await?;
        list.pop().ok_or(StoreError::NotFound("policy"))
    }

    /// All policies, or those of one entitlement.
    pub async fn policies(&self, entitlement_id: Option<&str>) -> Result<Vec<Policy>> {
        match entitlement_id {
            Some(e) => self.load_policies(Some(("p.entitlement_id", e))).await,
            None => self.load_policies(None).await,
        }
    }

    async fn load_policies(&self, filter: Option<(&str, &str)>) -> Result<Vec<Policy>> {
        let cond = filter.map(|(col, _)| format!("WHERE {col} = $1")).unwrap_or_default();
        let sql = format!(
            "SELECT p.id, p.entitlement_id, p.name, p.description, p.priority, p.access_type, p.windows, p.emergency_allowed, p.expires_at, p.settings, p.created_at, p.updated_at \
             FROM policies p {cond} ORDER BY p.entitlement_id, p.priority, p.name"
        );
        let mut q = sqlx::query_as::<_, PolRow>(&sql);
        if let Some((_, v)) = filter {
            q = q.bind(v.to_owned());
        }
        let rows = q.fetch_all(&self.read).await?;
        // The scope rows of these policies only, grouped by policy: linear in what is loaded.
        let scope_sql = format!(
            "SELECT s.policy_id, s.scope_type, s.scope_id FROM policy_scope s \
             WHERE s.policy_id IN (SELECT p.id FROM policies p {cond}) ORDER BY s.scope_id"
        );
        let mut scope_q = sqlx::query_as::<_, (String, String, String)>(&scope_sql);
        if let Some((_, v)) = filter {
            scope_q = scope_q.bind(v.to_owned());
        }
        let mut changers = self.changers("policy").await?;
        let mut scopes: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (policy, kind, sid) in scope_q.fetch_all(&self.read).await? {
            scopes.entry(policy).or_default().push((kind, sid));
        }
        rows.into_iter()
            .map(|r| {
                let (
                    id,
                    entitlement_id,
                    name,
                    description,
                    priority,
                    access_type,
                    w,
                    emergency,
                    expires_at,
                    settings,
                    created_at,
                    updated_at,
                ) = r;
                let mut sc = Scope::default();
                for (kind, sid) in scopes.get(&id).into_iter().flatten() {
                    match kind.as_str() {
                        "asset" => sc.assets.push(sid.clone()),
                        "asset_group" => sc.asset_groups.push(sid.clone()),
                        "account" => sc.accounts.push(sid.clone()),
                        _ => sc.account_groups.push(sid.clone()),
                    }
                }
                Ok(Policy {
                    access_type: AccessType::parse(&access_type)
                        .ok_or_else(|| StoreError::Corrupt(format!("access type '{access_type}'")))?,
                    windows: windows(&w)?,
                    settings: decode_settings(&settings)?,
                    scope: sc,
                    emergency_allowed: emergency != 0,
                    unconfirmed_by: changers.remove(&id).unwrap_or_default(),
                    id,
                    entitlement_id,
                    name,
                    description,
                    priority,
                    expires_at,
                    created_at,
                    updated_at,
                })
            })
            .collect()
    }

    pub async fn delete_policy(&self, actor: &Actor, now: i64, id: &str) -> Result<()> {
        let what = Deletion { table: "policies", noun: "policy", action: "policy.delete", object_type: "policy" };
        self.delete_named(actor, now, what, id).await
    }

    /// Who changed each entitlement or policy (`object_type`) since its last confirmation.
    async fn changers(&self, object_type: &str) -> Result<HashMap<String, Vec<String>>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT object_id, user_id FROM rule_changes WHERE object_type = $1 ORDER BY object_id, user_id",
        )
        .bind(object_type)
        .fetch_all(&self.read)
        .await?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (id, user) in rows {
            out.entry(id).or_default().push(user);
        }
        Ok(out)
    }

    /// Confirms an entitlement or policy as it is: its changers get access through it again.
    /// Audited with whose changes were confirmed; the policy generation moves.
    pub async fn confirm_rule(
        &self,
        actor: &Actor,
        now: i64,
        object_type: &'static str,
        id: &str,
    ) -> Result<Vec<String>> {
        let table = if object_type == "entitlement" { "entitlements" } else { "policies" };
        let mut tx = self.write.begin().await?;
        // Touching the row moves the policy generation (its trigger), so caches reload.
        let n = sqlx::query(&format!("UPDATE {table} SET updated_at = updated_at WHERE id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(if object_type == "entitlement" { "entitlement" } else { "policy" }));
        }
        let name: String =
            sqlx::query_scalar(&format!("SELECT name FROM {table} WHERE id = $1")).bind(id).fetch_one(&mut *tx).await?;
        // Whose changes, with their user names for the audit log's readers.
        let changes: Vec<(String, String)> = sqlx::query_as(
            "SELECT r.user_id, COALESCE(u.username, r.user_id) FROM rule_changes r LEFT JOIN users u ON u.id = r.user_id \
             WHERE r.object_type = $1 AND r.object_id = $2 ORDER BY r.user_id",
        )
        .bind(object_type)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let (changed_by, names): (Vec<String>, Vec<String>) = changes.into_iter().unzip();
        sqlx::query("DELETE FROM rule_changes WHERE object_type = $1 AND object_id = $2")
            .bind(object_type)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let action = if object_type == "entitlement" { "entitlement.confirm" } else { "policy.confirm" };
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success(action, object_type, id).with_details(json!({ "name": name, "changes_by": names })),
        )
        .await?;
        tx.commit().await?;
        Ok(changed_by)
    }

    /// Everything policy resolution needs, as pure-core rules.
    pub async fn policy_rules(&self) -> Result<(Vec<EntitlementRule>, Vec<PolicyRule>)> {
        Ok(rules(&self.entitlements().await?, &self.policies(None).await?))
    }

    /// The policy generation: bumped (by triggers, in the writing transaction) by every change
    /// to what policy resolution reads. A cache built at generation N is current while this
    /// still says N.
    pub async fn policy_generation(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT generation FROM policy_generation WHERE id = 1").fetch_one(&self.read).await?)
    }

    /// Everything policy resolution reads besides the rules, for an in-memory snapshot: the
    /// members of every user, account and asset group, every user's time zone and every
    /// account's asset.
    pub async fn resolution_facts(&self) -> Result<ResolutionFacts> {
        let pairs = |table: &'static str| {
            let sql = format!("SELECT group_id, member_id FROM {table}");
            async move { sqlx::query_as::<_, (String, String)>(&sql).fetch_all(&self.read).await }
        };
        Ok(ResolutionFacts {
            // A membership the member added themself grants nothing (entitlement, approver,
            // authorizer), so no one widens their own access.
            user_group_members: sqlx::query_as(
                "SELECT group_id, member_id FROM user_group_members \
                 WHERE added_by IS NULL OR added_by <> member_id",
            )
            .fetch_all(&self.read)
            .await?,
            account_group_members: pairs("account_group_members").await?,
            asset_group_members: pairs("asset_group_members").await?,
            user_zones: sqlx::query_as("SELECT id, time_zone FROM users").fetch_all(&self.read).await?,
            account_assets: sqlx::query_as("SELECT id, asset_id FROM accounts").fetch_all(&self.read).await?,
        })
    }

    /// The groups an account and its asset belong to: (account groups, asset groups).
    pub async fn target_groups(&self, account_id: &str, asset_id: &str) -> Result<(Vec<String>, Vec<String>)> {
        let account_groups =
            sqlx::query_scalar("SELECT group_id FROM account_group_members WHERE member_id = $1 ORDER BY group_id")
                .bind(account_id)
                .fetch_all(&self.read)
                .await?;
        let asset_groups =
            sqlx::query_scalar("SELECT group_id FROM asset_group_members WHERE member_id = $1 ORDER BY group_id")
                .bind(asset_id)
                .fetch_all(&self.read)
                .await?;
        Ok((account_groups, asset_groups))
    }
}

/// Records that `user_id` changed an entitlement or policy (until someone else confirms it).
async fn note_change(conn: &mut AnyConnection, object_type: &str, id: &str, user_id: &str) -> Result<()> {
    sqlx::query("INSERT INTO rule_changes (object_type, object_id, user_id) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING")
        .bind(object_type)
        .bind(id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The members of a user group (bound as `$1`) that count for access and approval: not those
/// who added themselves.
pub(crate) const GROUP_MEMBERS_GRANTING: &str =
    "SELECT member_id FROM user_group_members WHERE group_id = $1 AND (added_by IS NULL OR added_by <> member_id)";

/// The resolution rules of stored entitlements and policies.
pub fn rules(ents: &[Entitlement], pols: &[Policy]) -> (Vec<EntitlementRule>, Vec<PolicyRule>) {
    let ts = |m: Option<i64>| m.and_then(|m| Timestamp::from_microsecond(m).ok());
    let ents = ents
        .iter()
        .map(|e| EntitlementRule {
            id: e.id.clone(),
            priority: e.priority,
            user_ids: e.user_ids.clone(),
            group_ids: e.group_ids.clone(),
            windows: e.windows.clone(),
            expires_at: ts(e.expires_at),
            unconfirmed_by: e.unconfirmed_by.clone(),
        })
        .collect();
    let pols = pols
        .iter()
        .map(|p| PolicyRule {
            id: p.id.clone(),
            entitlement_id: p.entitlement_id.clone(),
            priority: p.priority,
            access_type: p.access_type,
            scope: p.scope.clone(),
            windows: p.windows.clone(),
            emergency_allowed: p.emergency_allowed,
            expires_at: ts(p.expires_at),
            unconfirmed_by: p.unconfirmed_by.clone(),
        })
        .collect();
    (ents, pols)
}

fn entitlement_from(r: EntRow, members: &[(String, String)]) -> Result<Entitlement> {
    let (id, name, description, priority, w, expires_at, created_at, updated_at) = r;
    Ok(Entitlement {
        windows: windows(&w)?,
        unconfirmed_by: Vec::new(),
        user_ids: members.iter().filter(|(t, _)| t == "user").map(|(_, m)| m.clone()).collect(),
        group_ids: members.iter().filter(|(t, _)| t == "group").map(|(_, m)| m.clone()).collect(),
        id,
        name,
        description,
        priority,
        expires_at,
        created_at,
        updated_at,
    })
}
