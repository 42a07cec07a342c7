//! Assets, their accounts, and each account's credentials: never the secret; set, generate,
//! check, change now, and the history of versions and changes (Asset Administrators).

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use portcullis_app::AppError;
use serde_json::{json, Value};

use super::kit::{
    self, button, cell, checkbox, form, link, mono, need, number, opt, password, seg, select, table, text, textarea,
    with_hint,
};
use super::Notice;
use crate::session::{Submitted, Viewer};
use crate::view::{error_page, page};
use crate::Web;

const PLATFORMS: &[(&str, &str)] = &[
    ("linux", "Linux"),
    ("unix", "Unix"),
    ("windows", "Windows"),
    ("network_device", "Network device"),
    ("directory", "Directory (named like its [directories.NAME])"),
    ("other", "Other"),
];

fn protocols(a: &Value) -> String {
    a["protocols"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| match p["port"].as_i64() {
                    Some(port) => format!("{} {port}", kit::s(p, "protocol")),
                    None => kit::s(p, "protocol").to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn ssh_port(a: &Value) -> String {
    a["protocols"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["protocol"] == "ssh"))
        .and_then(|p| p["port"].as_i64())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "22".into())
}

/// The protocols field of a form: SSH on the given port, and the asset's other protocols
/// (`current`, if it exists) as they are.
fn ssh_on(form: &Submitted, current: Option<&Value>) -> Result<Value, AppError> {
    let port = match form.text("ssh_port") {
        Some(p) => {
            p.parse::<i64>().map_err(|_| AppError::invalid("ssh_port", "the SSH port is a number, 1 to 65535"))?
        }
        None => 22,
    };
    let mut list = vec![json!({ "protocol": "ssh", "port": port })];
    let others = current.and_then(|a| a["protocols"].as_array()).into_iter().flatten();
    list.extend(others.filter(|p| p["protocol"] != "ssh").cloned());
    Ok(Value::Array(list))
}

pub async fn assets(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    let list = match kit::get(&web, &v, "/api/v1/assets?limit=1000").await {
        Ok(l) => l,
        Err(e) => return error_page(&web, &v, &e, "/admin"),
    };
    let rows: Vec<Vec<Value>> = kit::items(&list)
        .iter()
        .map(|a| {
            vec![
                link(kit::s(a, "name"), &format!("/admin/assets/{}", kit::s(a, "id"))),
                cell(kit::s(a, "address")),
                cell(kit::s(a, "platform")),
                cell(protocols(a)),
                cell(if a["host_key"].is_null() { "not pinned" } else { "pinned" }),
            ]
        })
        .collect();
    let create = form(
        "new-asset",
        "/admin/assets",
        "Add the asset",
        vec![
            text("name", "Name", "", true),
            with_hint(text("address", "Address", "", true), "host name or IP address"),
            select("platform", "Platform", "linux", PLATFORMS),
            number("ssh_port", "SSH port", 22),
            text("description", "Description", "", false),
            with_hint(
                textarea("host_key", "SSH host key", "", 2),
                "the target's public host key (`ssh-keyscan` output or a known_hosts line), so credentials are only ever sent to that host",
            ),
        ],
    );
    let ctx = json!({ "title": "Assets", "notice": n.done, "sections": [
        { "heading": "All assets", "table": table(&["Asset", "Address", "Platform", "Protocols", "Host key"], rows, "No assets yet.") },
        { "heading": "Add an asset", "forms": [create] },
    ]});
    page(&web, &v, "admin.html", ctx)
}

pub async fn create_asset(State(web): State<Web>, form: Submitted) -> Response {
    let result = async {
        let body = json!({
            "name": need(&form, "name", "the name")?,
            "address": need(&form, "address", "the address")?,
            "platform": need(&form, "platform", "the platform")?,
            "description": form.text("description").unwrap_or_default(),
            "protocols": ssh_on(&form, None)?,
            "host_key": opt(&form, "host_key"),
        });
        let a = kit::call(&web, &form.viewer, Method::POST, "/api/v1/assets", Some(body)).await?;
        Ok(format!("Asset {} was added.", kit::s(&a, "name")))
    }
    .await;
    kit::finish(&web, &form, result, "/admin/assets")
}

pub async fn asset(State(web): State<Web>, v: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    let loaded = async {
        let a = kit::get(&web, &v, &format!("/api/v1/assets/{}", seg(&id)?)).await?;
        let accounts = kit::get(&web, &v, &format!("/api/v1/accounts?asset_id={id}&limit=1000")).await?;
        Ok::<_, AppError>((a, accounts))
    }
    .await;
    let (a, accounts) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(&web, &v, &e, "/admin/assets"),
    };
    let base = format!("/admin/assets/{id}");
    let rows: Vec<Vec<Value>> = kit::items(&accounts)
        .iter()
        .map(|acc| {
            vec![
                link(kit::s(acc, "name"), &format!("/admin/accounts/{}", kit::s(acc, "id"))),
                cell(kit::s(acc, "kind")),
                cell(kit::s(acc, "description")),
            ]
        })
        .collect();
    let edit = form(
        "asset",
        &format!("{base}/update"),
        "Save the asset",
        vec![
            text("name", "Name", kit::s(&a, "name"), true),
            text("address", "Address", kit::s(&a, "address"), true),
            select("platform", "Platform", kit::s(&a, "platform"), PLATFORMS),
            number("ssh_port", "SSH port", ssh_port(&a)),
            text("description", "Description", kit::s(&a, "description"), false),
            with_hint(
                textarea("host_key", "SSH host key", a["host_key"].as_str().unwrap_or(""), 2),
                "leave as it is to keep the pinned key",
            ),
            checkbox("unpin", "Unpin the host key (credentials are then sent to any host at this address)", false),
        ],
    );
    let add = form(
        "new-account",
        &format!("{base}/accounts"),
        "Add the account",
        vec![
            text("name", "Account name", "", true),
            select("kind", "Kind", "local", &[("local", "Local"), ("directory", "Directory")]),
            text("description", "Description", "", false),
        ],
    );
    let delete = button("delete", &format!("{base}/delete"), "Delete the asset", "Delete the asset", vec![]);
    let unconfirmed = a["identity_confirmed"] == false;
    let identity = if unconfirmed {
        let who: Vec<&str> =
            a["identity_changed_by"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        format!(
            "changed by {} ({}), not confirmed: no credential is sent to this asset until another Asset \
             Administrator confirms the address, ports and host key",
            who.join(" and "),
            kit::s(&a, "identity_changed_at")
        )
    } else {
        "confirmed".to_owned()
    };
    let confirm = button(
        "confirm-identity",
        &format!("{base}/confirm-identity"),
        "Confirm the address, ports and host key",
        "Confirm the address, ports and host key",
        vec![],
    );
    let facts = json!([
        ["Address", kit::s(&a, "address")],
        ["Platform", kit::s(&a, "platform")],
        ["Protocols", protocols(&a)],
        ["Host key", if a["host_key"].is_null() { "not pinned" } else { "pinned" }],
        ["Service account", a["service_account_name"].as_str().unwrap_or("none")],
        ["Identity", identity],
    ]);
    let summary = if unconfirmed {
        json!({ "heading": "Summary", "facts": facts, "forms": [confirm] })
    } else {
        json!({ "heading": "Summary", "facts": facts })
    };
    let ctx = json!({ "title": format!("Asset {}", kit::s(&a, "name")), "notice": n.done, "sections": [
        summary,
        { "heading": "Accounts", "table": table(&["Account", "Kind", "Description"], rows, "No accounts on this asset yet."), "forms": [add] },
        { "heading": "Change the asset", "forms": [edit] },
        { "heading": "Delete", "forms": [delete] },
    ], "links": [{ "href": "/admin/assets", "text": "All assets" }] });
    page(&web, &v, "admin.html", ctx)
}

pub async fn asset_act(
    State(web): State<Web>,
    Path((id, action)): Path<(String, String)>,
    form: Submitted,
) -> Response {
    let base = format!("/admin/assets/{id}");
    let result: Result<(String, String), AppError> = async {
        let api = format!("/api/v1/assets/{}", seg(&id)?);
        let v = &form.viewer;
        match action.as_str() {
            "update" => {
                let mut body = json!({
                    "name": need(&form, "name", "the name")?,
                    "address": need(&form, "address", "the address")?,
                    "platform": need(&form, "platform", "the platform")?,
                    "description": form.text("description").unwrap_or_default(),
                    "protocols": ssh_on(&form, Some(&kit::get(&web, v, &api).await?))?,
                });
                if form.get("unpin") == Some("on") {
                    body["host_key"] = Value::Null;
                } else if let Some(k) = form.text("host_key") {
                    body["host_key"] = json!(k);
                }
                let saved = kit::call(&web, v, Method::PATCH, &api, Some(body)).await?;
                if saved["identity_confirmed"] == false {
                    return Ok((
                        base.clone(),
                        "The asset was saved. Its address, ports or host key changed: another Asset Administrator \
                         must confirm them on this page before Portcullis sends it any credential again."
                            .into(),
                    ));
                }
                Ok((base.clone(), "The asset was saved.".into()))
            }
            "confirm-identity" => {
                kit::call(&web, v, Method::POST, &format!("{api}/confirm-identity"), None).await?;
                Ok((base.clone(), "Confirmed: credentials are sent to this asset again.".into()))
            }
            "accounts" => {
                let body = json!({
                    "asset_id": id, "name": need(&form, "name", "the account name")?,
                    "kind": opt(&form, "kind"), "description": form.text("description").unwrap_or_default(),
                });
                let acc = kit::call(&web, v, Method::POST, "/api/v1/accounts", Some(body)).await?;
                let to = format!("/admin/accounts/{}", kit::s(&acc, "id"));
                Ok((to, format!("Account {} was added; set or generate its credential below.", kit::s(&acc, "name"))))
            }
            "delete" => {
                kit::call(&web, v, Method::DELETE, &api, None).await?;
                Ok(("/admin/assets".into(), "The asset was deleted.".into()))
            }
            _ => Err(AppError::not_found("that action")),
        }
    }
    .await;
    kit::finish_at(&web, &form, result, &base)
}

pub async fn account(State(web): State<Web>, v: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    let loaded = async {
        let api = format!("/api/v1/accounts/{}", seg(&id)?);
        let acc = kit::get(&web, &v, &api).await?;
        let versions = kit::get(&web, &v, &format!("{api}/credentials")).await?;
        let changes = kit::get(&web, &v, &format!("{api}/credential-changes")).await?;
        Ok::<_, AppError>((acc, versions, changes))
    }
    .await;
    let (acc, versions, changes) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(&web, &v, &e, "/admin/assets"),
    };
    let base = format!("/admin/accounts/{id}");
    // The highest active version of each kind is the current one.
    let mut current_seen: Vec<String> = Vec::new();
    let version_rows: Vec<Vec<Value>> = kit::items(&versions)
        .iter()
        .map(|c| {
            let kind = kit::s(c, "kind").to_owned();
            let status = match kit::s(c, "status") {
                "active" if !current_seen.contains(&kind) => {
                    current_seen.push(kind.clone());
                    "current".to_owned()
                }
                "active" => "earlier".to_owned(),
                other => other.to_owned(),
            };
            vec![
                cell(kind.replace('_', " ")),
                cell(c["version"].clone()),
                cell(status),
                cell(kit::s(c, "reason")),
                cell(kit::s(c, "set_by")),
                cell(kit::at(&v, &c["created_at"])),
                mono(c["public_key"].as_str().unwrap_or("")),
            ]
        })
        .collect();
    let change_rows: Vec<Vec<Value>> = kit::items(&changes)
        .iter()
        .map(|c| {
            vec![
                cell(kit::s(c, "kind").replace('_', " ")),
                cell(kit::s(c, "reason")),
                cell(kit::s(c, "state")),
                cell(c["attempts"].clone()),
                cell(kit::at(&v, &c["due_at"])),
                cell(c["last_error"].as_str().unwrap_or("")),
            ]
        })
        .collect();
    let kinds: &[(&str, &str)] = &[("password", "Password"), ("ssh_key", "SSH key")];
    let asset = acc["asset_name"].as_str().unwrap_or("");
    let forms = vec![
        form(
            "set",
            &format!("{base}/password"),
            "Store the password",
            vec![with_hint(
                password("password", "Current password on the target"),
                "stored encrypted; never shown here again",
            )],
        ),
        form(
            "generate",
            &format!("{base}/generate"),
            "Generate a password",
            vec![with_hint(
                number("length", "Length", 24),
                "stored as a new version; use Change now to set it on the target",
            )],
        ),
        form(
            "key",
            &format!("{base}/ssh-key"),
            "Generate an SSH key",
            vec![select(
                "algorithm",
                "Algorithm",
                "ed25519",
                &[("ed25519", "Ed25519"), ("rsa-3072", "RSA 3072"), ("rsa-4096", "RSA 4096")],
            )],
        ),
        form(
            "check",
            &format!("{base}/check"),
            "Check on the target",
            vec![select("kind", "Credential", "password", kinds)],
        ),
        form("change", &format!("{base}/change"), "Change now", vec![select("kind", "Credential", "password", kinds)]),
    ];
    let edit = form(
        "account",
        &format!("{base}/update"),
        "Save the account",
        vec![
            text("name", "Account name", kit::s(&acc, "name"), true),
            select("kind", "Kind", kit::s(&acc, "kind"), &[("local", "Local"), ("directory", "Directory")]),
            text("description", "Description", kit::s(&acc, "description"), false),
        ],
    );
    let delete = button("delete", &format!("{base}/delete"), "Delete the account", "Delete the account", vec![]);
    let asset_link = format!("/admin/assets/{}", kit::s(&acc, "asset_id"));
    let ctx = json!({ "title": format!("Account {}@{}", kit::s(&acc, "name"), asset), "notice": n.done, "sections": [
        { "heading": "Credential versions", "text": "The secrets themselves are never shown here; requesters check them out through an approved request.",
          "table": table(&["Kind", "Version", "Status", "Reason", "Set by", "When", "Public key"], version_rows, "No credential stored yet."), "forms": forms },
        { "heading": "Scheduled and past changes", "table": table(&["Kind", "Reason", "State", "Attempts", "Due", "Last error"], change_rows, "No changes yet.") },
        { "heading": "Change the account", "forms": [edit] },
        { "heading": "Delete", "forms": [delete] },
    ], "links": [{ "href": asset_link, "text": format!("Asset {asset}") }] });
    page(&web, &v, "admin.html", ctx)
}

pub async fn account_act(
    State(web): State<Web>,
    Path((id, action)): Path<(String, String)>,
    form: Submitted,
) -> Response {
    let base = format!("/admin/accounts/{id}");
    let result: Result<(String, String), AppError> = async {
        let api = format!("/api/v1/accounts/{}", seg(&id)?);
        let v = &form.viewer;
        let kind = json!({ "kind": opt(&form, "kind") });
        let done = match action.as_str() {
            "password" => {
                let body = json!({ "password": need(&form, "password", "the password")? });
                let c = kit::call(&web, v, Method::PUT, &format!("{api}/password"), Some(body)).await?;
                format!("The password was stored as version {}.", c["version"])
            }
            "generate" => {
                let length = match form.text("length") {
                    Some(l) => {
                        json!(l.parse::<u64>().map_err(|_| AppError::invalid("length", "a number, 8 to 256"))?)
                    }
                    None => Value::Null,
                };
                let c = kit::call(
                    &web,
                    v,
                    Method::POST,
                    &format!("{api}/password/generate"),
                    Some(json!({ "length": length })),
                )
                .await?;
                format!("A new password was generated as version {}.", c["version"])
            }
            "ssh-key" => {
                let body = json!({ "algorithm": opt(&form, "algorithm") });
                let c = kit::call(&web, v, Method::POST, &format!("{api}/ssh-key/generate"), Some(body)).await?;
                format!(
                    "A new SSH key was generated as version {}; install its public key on the target.",
                    c["version"]
                )
            }
            "check" => {
                let r = kit::call(&web, v, Method::POST, &format!("{api}/credentials/check"), Some(kind)).await?;
                if r["ok"] == true {
                    format!(
                        "The stored {} (version {}) logged in to the target.",
                        kit::s(&r, "kind").replace('_', " "),
                        r["version"]
                    )
                } else {
                    let why = r["message"].as_str().or(r["error"].as_str()).unwrap_or("it did not log in");
                    return Err(AppError::new(
                        portcullis_app::ErrorKind::Upstream,
                        "check_failed",
                        format!("The check failed: {why}."),
                    ));
                }
            }
            "change" => {
                let c = kit::call(&web, v, Method::POST, &format!("{api}/credentials/change"), Some(kind)).await?;
                format!("Changed on the target and verified: version {}.", c["version"])
            }
            "update" => {
                let body = json!({
                    "name": need(&form, "name", "the account name")?, "kind": opt(&form, "kind"),
                    "description": form.text("description").unwrap_or_default(),
                });
                kit::call(&web, v, Method::PATCH, &api, Some(body)).await?;
                "The account was saved.".to_owned()
            }
            "delete" => {
                let acc = kit::get(&web, v, &api).await?;
                kit::call(&web, v, Method::DELETE, &api, None).await?;
                return Ok((format!("/admin/assets/{}", kit::s(&acc, "asset_id")), "The account was deleted.".into()));
            }
            _ => return Err(AppError::not_found("that action")),
        };
        Ok((base.clone(), done))
    }
    .await;
    kit::finish_at(&web, &form, result, &base)
}
