//! Users: the list, adding one, and one user's page (profile, roles, password, unlock,
//! one-time codes, disable, delete). User Administrators; roles by Appliance Administrators.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use portcullis_app::AppError;
use portcullis_core::role::Role;
use serde_json::{json, Value};

use super::kit::{self, button, cell, checkbox, choices, form, link, need, opt, password, seg, table, text, with_hint};
use super::Notice;
use crate::session::{Submitted, Viewer};
use crate::view::{error_page, page};
use crate::Web;

fn state_of(u: &Value) -> String {
    let mut parts = Vec::new();
    if u["disabled"] == true {
        parts.push("disabled");
    }
    if !u["locked_until"].is_null() {
        parts.push("locked");
    }
    if u["totp_enabled"] == true {
        parts.push("one-time codes");
    }
    if parts.is_empty() {
        "active".into()
    } else {
        parts.join(", ")
    }
}

fn roles_of(u: &Value) -> String {
    let roles: Vec<&str> =
        u["roles"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if roles.is_empty() {
        "—".into()
    } else {
        roles.join(", ")
    }
}

fn role_choices(held: &[&str]) -> Vec<(String, String, bool)> {
    Role::ALL
        .iter()
        .map(|r| {
            let name = r.to_string();
            let label = name.replace('_', " ");
            let on = held.contains(&name.as_str());
            (name, label, on)
        })
        .collect()
}

pub async fn list(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    let users = match kit::get(&web, &v, "/api/v1/users?limit=1000").await {
        Ok(u) => u,
        Err(e) => return error_page(&web, &v, &e, "/admin"),
    };
    let rows: Vec<Vec<Value>> = kit::items(&users)
        .iter()
        .map(|u| {
            vec![
                link(kit::s(u, "username"), &format!("/admin/users/{}", kit::s(u, "id"))),
                cell(kit::s(u, "display_name")),
                cell(u["email"].as_str().unwrap_or("")),
                cell(roles_of(u)),
                cell(state_of(u)),
            ]
        })
        .collect();
    let create = form(
        "new-user",
        "/admin/users",
        "Add the user",
        vec![
            text("username", "User name", "", true),
            text("display_name", "Display name", "", false),
            text("email", "E-mail", "", false),
            with_hint(text("time_zone", "Time zone", "UTC", false), "IANA name, e.g. Europe/Paris"),
            with_hint(
                password("password", "Initial password"),
                "leave empty to mail the user an invitation to set their own (needs the e-mail address); a password \
                 typed here is known to you until the user changes it",
            ),
            with_hint(
                choices("roles", "Administrative roles", &role_choices(&[])),
                "only an Appliance Administrator may grant roles",
            ),
        ],
    );
    let ctx = json!({ "title": "Users", "notice": n.done, "sections": [
        { "heading": "All users", "table": table(&["User", "Display name", "E-mail", "Roles", "State"], rows, "No users.") },
        { "heading": "Add a user", "forms": [create] },
    ]});
    page(&web, &v, "admin.html", ctx)
}

pub async fn create(State(web): State<Web>, form: Submitted) -> Response {
    let result = async {
        let body = json!({
            "username": need(&form, "username", "the user name")?,
            "display_name": opt(&form, "display_name"),
            "email": opt(&form, "email"),
            "time_zone": opt(&form, "time_zone"),
            "password": opt(&form, "password"),
            "roles": form.all("roles"),
        });
        let u = kit::call(&web, &form.viewer, Method::POST, "/api/v1/users", Some(body)).await?;
        Ok(match form.text("password") {
            Some(_) => format!("User {} was added.", kit::s(&u, "username")),
            None => format!(
                "User {} was added and mailed an invitation to set their password (the link works for 24 hours).",
                kit::s(&u, "username")
            ),
        })
    }
    .await;
    kit::finish(&web, &form, result, "/admin/users")
}

pub async fn show(State(web): State<Web>, v: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    let u = match async { kit::get(&web, &v, &format!("/api/v1/users/{}", seg(&id)?)).await }.await {
        Ok(u) => u,
        Err(e) => return error_page(&web, &v, &e, "/admin/users"),
    };
    let base = format!("/admin/users/{id}");
    let held: Vec<&str> =
        u["roles"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let source = match u["directory"].as_str() {
        Some("oidc") => "single sign-on (their password is the provider's)".to_owned(),
        Some(d) => format!("the directory {d} (their password and groups are the directory's)"),
        None => "a Portcullis password".to_owned(),
    };
    let linked = kit::get(&web, &v, &format!("/api/v1/users/{}/linked-accounts", kit::s(&u, "id")))
        .await
        .ok()
        .map(|l| {
            kit::items(&l).iter().filter_map(|a| a["account_name"].as_str().map(str::to_owned)).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let facts = json!([
        ["User name", kit::s(&u, "username")],
        ["Signs in with", source],
        ["Linked directory accounts", if linked.is_empty() { "none".to_owned() } else { linked.join(", ") }],
        ["State", state_of(&u)],
        ["Roles", roles_of(&u)],
        ["Failed sign-ins", u["failed_logins"]],
        ["Password changed", kit::at(&v, &u["password_changed_at"])],
        ["Created", kit::at(&v, &u["created_at"])],
    ]);
    let profile = form(
        "profile",
        &format!("{base}/profile"),
        "Save the profile",
        vec![
            text("display_name", "Display name", kit::s(&u, "display_name"), false),
            text("email", "E-mail", u["email"].as_str().unwrap_or(""), false),
            with_hint(text("time_zone", "Time zone", kit::s(&u, "time_zone"), true), "IANA name, e.g. Europe/Paris"),
            checkbox("time_zone_locked", "The user may not change their time zone", u["time_zone_locked"] == true),
            checkbox("disabled", "Disabled (cannot sign in; their sessions end)", u["disabled"] == true),
        ],
    );
    let roles = form(
        "roles",
        &format!("{base}/roles"),
        "Set the roles",
        vec![choices("roles", "Administrative roles", &role_choices(&held))],
    );
    let reset = button("reset", &format!("{base}/password"), "Reset the password", "Reset the password", vec![]);
    let mut actions = vec![];
    if !u["locked_until"].is_null() {
        actions.push(button("unlock", &format!("{base}/unlock"), "Unlock", "Unlock the user", vec![]));
    }
    if u["totp_enabled"] == true {
        actions.push(button("totp", &format!("{base}/totp"), "Reset one-time codes", "Reset one-time codes", vec![]));
    }
    actions.push(button("delete", &format!("{base}/delete"), "Delete the user", "Delete the user", vec![]));
    let ctx = json!({ "title": format!("User {}", kit::s(&u, "username")), "notice": n.done, "sections": [
        { "heading": "Summary", "facts": facts },
        { "heading": "Profile", "forms": [profile] },
        { "heading": "Roles", "text": "Only an Appliance Administrator may change roles; the last one keeps the role.", "forms": [roles] },
        password_section(&u, reset),
        { "heading": "Other actions", "forms": actions },
    ], "links": [{ "href": "/admin/users", "text": "All users" }] });
    page(&web, &v, "admin.html", ctx)
}

pub async fn act(State(web): State<Web>, Path((id, action)): Path<(String, String)>, form: Submitted) -> Response {
    let base = format!("/admin/users/{id}");
    let result: Result<(String, String), AppError> = async {
        let api = format!("/api/v1/users/{}", seg(&id)?);
        let v = &form.viewer;
        let done = match action.as_str() {
            "profile" => {
                let body = json!({
                    "display_name": opt(&form, "display_name"),
                    "email": opt(&form, "email"),
                    "time_zone": need(&form, "time_zone", "the time zone")?,
                    "time_zone_locked": form.get("time_zone_locked") == Some("on"),
                    "disabled": form.get("disabled") == Some("on"),
                });
                kit::call(&web, v, Method::PATCH, &api, Some(body)).await?;
                "The profile was saved."
            }
            "roles" => {
                kit::call(&web, v, Method::PUT, &format!("{api}/roles"), Some(json!({ "roles": form.all("roles") })))
                    .await?;
                "The roles were set."
            }
            "password" => {
                let r = kit::call(&web, v, Method::POST, &format!("{api}/password"), Some(json!({}))).await?;
                return Ok((base.clone(), format!("{}.", kit::s(&r, "message"))));
            }
            "unlock" => {
                kit::call(&web, v, Method::POST, &format!("{api}/unlock"), None).await?;
                "The user was unlocked."
            }
            "totp" => {
                kit::call(&web, v, Method::POST, &format!("{api}/totp/reset"), None).await?;
                "One-time codes were reset: the user signs in with the password and may enrol again."
            }
            "delete" => {
                kit::call(&web, v, Method::DELETE, &api, None).await?;
                return Ok(("/admin/users".to_owned(), "The user was deleted.".to_owned()));
            }
            _ => return Err(AppError::not_found("that action")),
        };
        Ok((base.clone(), done.to_owned()))
    }
    .await;
    kit::finish_at(&web, &form, result, &base)
}

/// The password section: a reset for Portcullis users; for a directory's or the provider's
/// users, where their password lives instead.
fn password_section(u: &Value, reset: Value) -> Value {
    match u["directory"].as_str() {
        Some(d) => json!({ "heading": "Password", "text": format!(
            "{} signs in through {}; their password is changed there, not in Portcullis.",
            kit::s(u, "username"),
            if d == "oidc" { "single sign-on".to_owned() } else { format!("the directory {d}") }
        ) }),
        None => json!({ "heading": "Password", "text": "A reset makes the user's password stop working, ends their \
          sessions and API tokens, and mails them a one-time link to choose a new one (you never see it). It needs \
          their e-mail address, set by someone other than you.", "forms": [reset] }),
    }
}
