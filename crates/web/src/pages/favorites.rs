//! Favorites: saved requests, submitted again with one click; saved from the new request form.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_app::requests::{self as uc, NewRequests};
use portcullis_store::Named;
use serde::Deserialize;
use serde_json::{json, Value};

use super::with_notice;
use crate::session::{Submitted, Viewer};
use crate::view::{error_page, page};
use crate::Web;

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
}

pub async fn list(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    let favorites = match web.store.favorites(&v.caller.user.id).await {
        Ok(f) => f,
        Err(e) => return error_page(&web, &v, &e.into(), "/requests"),
    };
    let saved: Vec<(portcullis_store::Favorite, Option<NewRequests>)> = favorites
        .into_iter()
        .map(|f| {
            let req = serde_json::from_str::<Value>(&f.body).ok().and_then(|b| NewRequests::from_json(&b));
            (f, req)
        })
        .collect();
    let ids: Vec<String> = saved
        .iter()
        .flat_map(|(_, r)| r.iter().flat_map(|r| r.accounts.iter().map(|a| a.account_id.clone())))
        .collect();
    let names = web.store.names_for(Named::Account, &ids).await.unwrap_or_default();
    let rows: Vec<Value> = saved
        .iter()
        .map(|(f, r)| {
            let accounts: Vec<String> = r
                .iter()
                .flat_map(|r| r.accounts.iter())
                .map(|a| {
                    let target = names.get(&a.account_id).cloned().unwrap_or_else(|| a.account_id.clone());
                    format!("{target} ({})", a.access_type)
                })
                .collect();
            json!({ "id": f.id, "name": f.name, "description": f.description, "accounts": accounts,
                    "ticket": r.as_ref().and_then(|r| r.ticket.clone()) })
        })
        .collect();
    page(&web, &v, "favorites.html", json!({ "title": "Favorites", "rows": rows, "notice": n.done }))
}

/// Submits a favorite as a new request and shows the outcome per account.
pub async fn submit(State(web): State<Web>, Path(id): Path<String>, form: Submitted) -> Response {
    let v = &form.viewer;
    let saved = match web.store.favorite(&v.caller.user.id, &id).await {
        Ok(f) => f,
        Err(e) => return error_page(&web, v, &e.into(), "/favorites"),
    };
    let Some(req) = serde_json::from_str::<Value>(&saved.body).ok().and_then(|b| NewRequests::from_json(&b)) else {
        let e =
            portcullis_app::AppError::conflict("favorite_unreadable", "this favorite cannot be read; save it again");
        return error_page(&web, v, &e, "/favorites");
    };
    match uc::create(&web, &v.caller, req).await {
        Ok(batch) => super::requests::outcome_page(&web, v, batch).await,
        Err(e) => error_page(&web, v, &e, "/favorites"),
    }
}

pub async fn delete(State(web): State<Web>, Path(id): Path<String>, form: Submitted) -> Response {
    let v = &form.viewer;
    match web.store.delete_favorite(&v.caller.actor(), web.now(), &v.caller.user.id, &id).await {
        Ok(()) => Redirect::to(&with_notice("/favorites", "Favorite deleted.")).into_response(),
        Err(e) => error_page(&web, v, &e.into(), "/favorites"),
    }
}

/// Saves what was just requested as a favorite named `name`.
pub async fn save(web: &Web, v: &Viewer, name: &str, req: &NewRequests) -> Result<(), portcullis_app::AppError> {
    let body = req.to_json().to_string();
    let user = &v.caller.user.id;
    web.store.put_favorite(&v.caller.actor(), web.now(), user, None, name, "", "#4a6fa5", &body).await?;
    Ok(())
}
