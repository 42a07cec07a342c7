//! Groups of users (User Administrators), of assets and of accounts (Asset Administrators):
//! the list, adding one, and one group's members, added and removed by name.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use portcullis_app::AppError;
use portcullis_store::Named;
use serde_json::{json, Value};

use super::kit::{self, button, cell, form, link, need, seg, table, text, with_hint};
use super::{one, Notice};
use crate::session::{Submitted, Viewer};
use crate::view::{error_page, page};
use crate::Web;

/// The three kinds: URL word, API collection, what a member is, and how members are named.
struct Kind {
    word: &'static str,
    api: &'static str,
    title: &'static str,
    member: Named,
    member_hint: &'static str,
}

fn kind(word: &str) -> Result<Kind, AppError> {
    match word {
        "user" => Ok(Kind {
            word: "user",
            api: "/api/v1/user-groups",
            title: "User groups",
            member: Named::User,
            member_hint: "a user name",
        }),
        "asset" => Ok(Kind {
            word: "asset",
            api: "/api/v1/asset-groups",
            title: "Asset groups",
            member: Named::Asset,
            member_hint: "an asset name",
        }),
        "account" => Ok(Kind {
            word: "account",
            api: "/api/v1/account-groups",
            title: "Account groups",
            member: Named::Account,
            member_hint: "ACCOUNT@ASSET",
        }),
        _ => Err(AppError::not_found("that kind of group")),
    }
}

pub async fn list(State(web): State<Web>, v: Viewer, Path(word): Path<String>, Query(n): Query<Notice>) -> Response {
    let loaded = async {
        let k = kind(&word)?;
        let groups = kit::get(&web, &v, &format!("{}?limit=1000", k.api)).await?;
        Ok::<_, AppError>((k, groups))
    }
    .await;
    let (k, groups) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(&web, &v, &e, "/admin"),
    };
    let rows: Vec<Vec<Value>> = kit::items(&groups)
        .iter()
        .map(|g| {
            let members: Vec<&str> =
                g["member_names"].as_array().map(|m| m.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            vec![
                link(kit::s(g, "name"), &format!("/admin/groups/{}/{}", k.word, kit::s(g, "id"))),
                cell(kit::s(g, "description")),
                cell(members.join(", ")),
            ]
        })
        .collect();
    let create = form(
        "new-group",
        &format!("/admin/groups/{}", k.word),
        "Add the group",
        vec![text("name", "Name", "", true), text("description", "Description", "", false)],
    );
    let ctx = json!({ "title": k.title, "notice": n.done, "sections": [
        { "heading": format!("All {}", k.title.to_lowercase()), "table": table(&["Group", "Description", "Members"], rows, "No groups yet.") },
        { "heading": "Add a group", "forms": [create] },
    ]});
    page(&web, &v, "admin.html", ctx)
}

pub async fn create(State(web): State<Web>, Path(word): Path<String>, form: Submitted) -> Response {
    let back = format!("/admin/groups/{word}");
    let result = async {
        let k = kind(&word)?;
        let body = json!({ "name": need(&form, "name", "the name")?, "description": form.text("description").unwrap_or_default() });
        let g = kit::call(&web, &form.viewer, Method::POST, k.api, Some(body)).await?;
        Ok(format!("Group {} was added.", kit::s(&g, "name")))
    }
    .await;
    kit::finish(&web, &form, result, &back)
}

pub async fn show(
    State(web): State<Web>,
    v: Viewer,
    Path((word, id)): Path<(String, String)>,
    Query(n): Query<Notice>,
) -> Response {
    let loaded = async {
        let k = kind(&word)?;
        let g = kit::get(&web, &v, &format!("{}/{}", k.api, seg(&id)?)).await?;
        Ok::<_, AppError>((k, g))
    }
    .await;
    let (k, g) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(&web, &v, &e, "/admin"),
    };
    let base = format!("/admin/groups/{}/{id}", k.word);
    let ids = g["members"].as_array().cloned().unwrap_or_default();
    let names = g["member_names"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<Value>> = ids
        .iter()
        .zip(names.iter())
        .map(|(mid, name)| {
            let name = name.as_str().unwrap_or_default();
            vec![
                cell(name),
                json!({ "form": button(
                    &format!("remove-{}", mid.as_str().unwrap_or_default()),
                    &format!("{base}/remove"),
                    "Remove",
                    &format!("Remove {name}"),
                    vec![kit::hidden("member", mid.as_str().unwrap_or_default())],
                )}),
            ]
        })
        .collect();
    let add = form(
        "add",
        &format!("{base}/add"),
        "Add the member",
        vec![with_hint(text("member", "Member", "", true), k.member_hint)],
    );
    let edit = form(
        "group",
        &format!("{base}/update"),
        "Save the group",
        vec![
            text("name", "Name", kit::s(&g, "name"), true),
            text("description", "Description", kit::s(&g, "description"), false),
        ],
    );
    let delete = button("delete", &format!("{base}/delete"), "Delete the group", "Delete the group", vec![]);
    let ctx = json!({ "title": format!("Group {}", kit::s(&g, "name")), "notice": n.done, "sections": [
        { "heading": "Members", "table": table(&["Member", "Remove"], rows, "No members yet."), "forms": [add] },
        { "heading": "Change the group", "forms": [edit] },
        { "heading": "Delete", "forms": [delete] },
    ], "links": [{ "href": format!("/admin/groups/{}", k.word), "text": k.title }] });
    page(&web, &v, "admin.html", ctx)
}

pub async fn act(
    State(web): State<Web>,
    Path((word, id, action)): Path<(String, String, String)>,
    form: Submitted,
) -> Response {
    let base = format!("/admin/groups/{word}/{id}");
    let result: Result<(String, String), AppError> = async {
        let k = kind(&word)?;
        let api = format!("{}/{}", k.api, seg(&id)?);
        let v = &form.viewer;
        match action.as_str() {
            "add" => {
                let name = need(&form, "member", "the member")?;
                let member = one(&web, v, k.member, "member", &name).await?;
                kit::call(&web, v, Method::PUT, &format!("{api}/members/{member}"), None).await?;
                Ok((base.clone(), format!("{name} was added.")))
            }
            "remove" => {
                let member = need(&form, "member", "the member")?;
                kit::call(&web, v, Method::DELETE, &format!("{api}/members/{}", seg(&member)?), None).await?;
                Ok((base.clone(), "The member was removed.".into()))
            }
            "update" => {
                let body = json!({ "name": need(&form, "name", "the name")?, "description": form.text("description").unwrap_or_default() });
                kit::call(&web, v, Method::PATCH, &api, Some(body)).await?;
                Ok((base.clone(), "The group was saved.".into()))
            }
            "delete" => {
                kit::call(&web, v, Method::DELETE, &api, None).await?;
                Ok((format!("/admin/groups/{}", k.word), "The group was deleted.".into()))
            }
            _ => Err(AppError::not_found("that action")),
        }
    }
    .await;
    kit::finish_at(&web, &form, result, &base)
}
