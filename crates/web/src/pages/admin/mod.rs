//! Administration pages: an index of what the viewer's roles administer, users and groups,
//! assets, accounts and credentials, rules of access, the services switch. The explain tool: "who would get which policy at what time, and why",
//! by names and in the requester's local time (Security Policy Administrators, Auditors).

pub mod gateway;
pub mod groups;
pub mod inventory;
pub mod kit;
pub mod rules;
pub mod users;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_app::names::lookup;
use portcullis_app::AppError;
use portcullis_core::role::Role;
use portcullis_store::Named;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::session::{Submitted, Viewer};
use crate::view::{error_page, page};
use crate::Web;

#[derive(Deserialize)]
pub struct ExplainForm {
    user: Option<String>,
    account: Option<String>,
    access_type: Option<String>,
    at: Option<String>,
    emergency: Option<String>,
}

/// The one id a name stands for, or an error that says what is wrong with the name.
async fn one(web: &Web, v: &Viewer, kind: Named, field: &str, name: &str) -> Result<String, AppError> {
    let found = lookup(web, &v.caller, kind, name).await?;
    match found.as_slice() {
        [(id, _)] => Ok(id.clone()),
        [] => Err(AppError::invalid(field, format!("no {} is named '{name}'", kind.noun()))),
        many => Err(AppError::invalid(
            field,
            format!("'{name}' names {} {}s; name it as ACCOUNT@ASSET", many.len(), kind.noun()),
        )),
    }
}

pub async fn explain(State(web): State<Web>, v: Viewer, Query(f): Query<ExplainForm>) -> Response {
    if !(v.caller.has(Role::SecurityPolicyAdmin) || v.caller.has(Role::Auditor) || v.caller.has(Role::ApplianceAdmin)) {
        let e = AppError::forbidden(
            "the explain tool needs one of the roles: security_policy_admin, auditor, appliance_admin",
        );
        return error_page(&web, &v, &e, "/requests");
    }
    let mut ctx = json!({ "title": "Which policy governs?", "f": {
        "user": f.user, "account": f.account, "access_type": f.access_type.clone().unwrap_or_else(|| "ssh".into()),
        "at": f.at, "emergency": f.emergency.is_some() } });
    let (Some(user), Some(account)) = (f.user.as_deref(), f.account.as_deref()) else {
        return page(&web, &v, "explain.html", ctx);
    };
    let answer = async {
        let user_id = one(&web, &v, Named::User, "user", user.trim()).await?;
        let account_id = one(&web, &v, Named::Account, "account", account.trim()).await?;
        let access =
            portcullis_app::requests::parse_access_type("access_type", f.access_type.as_deref().unwrap_or("ssh"))?;
        let at = f.at.as_deref().map(str::trim).filter(|t| !t.is_empty());
        portcullis_app::policies::explain(&web, &user_id, &account_id, access, at, f.emergency.is_some()).await
    }
    .await;
    match answer {
        Ok(e) => {
            let candidates: Vec<Value> = e
                .candidates
                .iter()
                .map(|c| json!({ "policy": c.policy_name, "entitlement": c.entitlement_name, "outcome": c.outcome, "reason": c.reason }))
                .collect();
            ctx["answer"] = json!({ "governing": e.governing_policy_name, "at_local": e.at_local, "zone": e.time_zone,
                                   "candidates": candidates, "out_of_scope": e.out_of_scope });
            page(&web, &v, "explain.html", ctx)
        }
        Err(e) => error_page(&web, &v, &e, "/explain"),
    }
}

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
}

/// What there is to administer, for the viewer's roles.
pub async fn index(State(web): State<Web>, v: Viewer) -> Response {
    let c = &v.caller;
    let mut links = Vec::new();
    let mut add = |href: &str, text: &str, hint: &str| links.push(json!({ "href": href, "text": text, "hint": hint }));
    if c.has(Role::UserAdmin) || c.has(Role::ApplianceAdmin) {
        add("/admin/users", "Users", "accounts of people, roles, passwords, locks");
        add("/admin/groups/user", "User groups", "who is entitled, who approves and reviews");
    }
    if c.has(Role::UserAdmin) || c.has(Role::Auditor) || c.has(Role::ApplianceAdmin) {
        add("/admin/directories", "Directories", "LDAP / Active Directory connections and their synchronisations");
    }
    if c.has(Role::AssetAdmin) {
        add(
            "/admin/assets",
            "Assets, accounts and credentials",
            "targets, their privileged accounts, vaulted credentials",
        );
        add("/admin/groups/asset", "Asset groups", "");
        add("/admin/groups/account", "Account groups", "");
        add("/admin/profiles", "Password profiles", "how passwords are generated");
    }
    if c.has(Role::SecurityPolicyAdmin) {
        add(
            "/admin/entitlements",
            "Entitlements and policies",
            "who may request what, when, approved and reviewed by whom",
        );
        add("/admin/reason-codes", "Reason codes", "");
    }
    if c.has(Role::SecurityPolicyAdmin) || c.has(Role::Auditor) || c.has(Role::ApplianceAdmin) {
        add(
            "/admin/connection-policies",
            "Connection policies",
            "who may connect through the proxies from where, to what, with which channels, content rules and waits",
        );
    }
    if c.has(Role::Auditor) || c.has(Role::ApplianceAdmin) {
        add("/admin/nodes", "Nodes", "the servers sharing this database, their heartbeats and live sessions");
    }
    if c.has(Role::SecurityPolicyAdmin) || c.has(Role::Auditor) || c.has(Role::ApplianceAdmin) {
        add("/explain", "Which policy governs?", "who would get which policy at what time, and why");
    }
    add("/services", "Request services", "session requests on or off");
    let ctx = if links.len() > 1 {
        json!({ "title": "Administration", "links": links })
    } else {
        json!({ "title": "Administration", "links": links,
                "intro": "You hold no administrative role: an Appliance Administrator grants them." })
    };
    page(&web, &v, "admin.html", ctx)
}

/// The services switch: session requests on or off.
pub async fn services(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    match portcullis_app::services::session_requests(&web).await {
        Ok(on) => {
            let ctx = json!({ "title": "Request services", "on": on, "notice": n.done,
                              "may_switch": v.caller.has(Role::ApplianceAdmin) });
            page(&web, &v, "services.html", ctx)
        }
        Err(e) => error_page(&web, &v, &e, "/requests"),
    }
}

pub async fn set_services(State(web): State<Web>, form: Submitted) -> Response {
    let on = form.get("session_requests") == Some("on");
    match portcullis_app::services::set_session_requests(&web, &form.viewer.caller, on).await {
        Ok(on) => {
            let done = if on { "Session requests are on." } else { "Session requests are off." };
            Redirect::to(&super::with_notice("/services", done)).into_response()
        }
        Err(e) => error_page(&web, &form.viewer, &e, "/services"),
    }
}

/// The directory connections and their last synchronisations; synchronise one now.
pub async fn directories(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    match portcullis_app::directory::list(&web, &v.caller).await {
        Ok(list) => {
            let rows: Vec<_> = list
                .iter()
                .map(|d| {
                    let last = d.last.as_ref();
                    json!({
                        "name": d.name, "url": d.url, "interval": d.sync_interval.as_secs(),
                        "attempted": last.map(|l| crate::view::when(&v.zone, l.attempted_at)),
                        "error": last.and_then(|l| l.error.clone()),
                        "summary": last.map(|l| l.summary.clone()).unwrap_or_default(),
                    })
                })
                .collect();
            let may_sync = v.caller.has(Role::UserAdmin) || v.caller.has(Role::ApplianceAdmin);
            let ctx = json!({ "title": "Directories", "directories": rows, "may_sync": may_sync, "notice": n.done });
            page(&web, &v, "directories.html", ctx)
        }
        Err(e) => error_page(&web, &v, &e, "/admin"),
    }
}

pub async fn sync_directory(
    State(web): State<Web>,
    axum::extract::Path(name): axum::extract::Path<String>,
    form: Submitted,
) -> Response {
    match portcullis_app::directory::sync_now(&web, &form.viewer.caller, &name).await {
        Ok(report) => {
            let done = format!("Directory {name} synchronised: {}.", report.summary());
            Redirect::to(&super::with_notice("/admin/directories", &done)).into_response()
        }
        Err(e) => error_page(&web, &form.viewer, &e, "/admin/directories"),
    }
}

/// The nodes on this database: their state, heartbeats and live sessions (Auditors and
/// Appliance Administrators).
pub async fn nodes(State(web): State<Web>, v: Viewer) -> Response {
    use kit::{cell, table};
    let list = match portcullis_app::cluster::nodes(&web, &v.caller).await {
        Ok(l) => l,
        Err(e) => return error_page(&web, &v, &e, "/admin"),
    };
    fn state(s: &str) -> &str {
        match s {
            "lost" => "lost (stopped answering; its sessions were ended by the others)",
            "stopped" => "stopped (shut down)",
            other => other,
        }
    }
    let rows = list
        .iter()
        .map(|n| {
            let name = if n.this_node { format!("{} (this node)", n.node.name) } else { n.node.name.clone() };
            vec![
                cell(name),
                cell(state(&n.node.state)),
                cell(crate::view::when(&v.zone, n.node.heartbeat_at)),
                cell(crate::view::when(&v.zone, n.node.started_at)),
                cell(n.live_sessions),
                cell(n.node.version.clone()),
            ]
        })
        .collect();
    let columns = ["Node", "State", "Last heartbeat", "Started", "Live sessions", "Version"];
    let ctx = json!({ "title": "Nodes", "sections": [
        { "heading": "The nodes sharing this database", "table": table(&columns, rows, "No nodes registered.") },
    ], "links": [{ "href": "/admin", "text": "Administration" }] });
    page(&web, &v, "admin.html", ctx)
}
