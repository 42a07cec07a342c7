//! The viewer's own profile: display name and time zone (unless locked).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_app::me::{update as change_profile, ProfileChange};
use serde::Deserialize;
use serde_json::json;

use super::with_notice;
use crate::session::{Submitted, Viewer};
use crate::view::{error_page, page};
use crate::Web;

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
}

pub async fn show(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    let u = &v.caller.user;
    let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
    let ctx = json!({
        "title": "Your profile",
        "notice": n.done,
        "user": {
            "username": u.username, "display_name": u.display_name, "email": u.email,
            "time_zone": u.time_zone, "time_zone_locked": u.time_zone_locked, "roles": roles,
        },
    });
    page(&web, &v, "me.html", ctx)
}

pub async fn update(State(web): State<Web>, form: Submitted) -> Response {
    let change = ProfileChange {
        display_name: form.text("display_name"),
        email: None,
        time_zone: form.text("time_zone").filter(|_| !form.viewer.caller.user.time_zone_locked),
    };
    match change_profile(&web, &form.viewer.caller, change).await {
        Ok(_) => Redirect::to(&with_notice("/me", "Your profile was saved.")).into_response(),
        Err(e) => error_page(&web, &form.viewer, &e, "/me"),
    }
}
