//! The viewer's own profile: display name, e-mail and time zone (unless locked), password,
//! one-time codes from an authenticator app (set up, confirm, turn off), and the SSH keys that
//! sign in to the SSH proxy (registered with a signature of the challenge, removed). Password and codes
//! are the API's `/me` endpoints, called in process (see `admin::kit`).

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_app::me::{update as change_profile, ProfileChange};
use serde::Deserialize;
use serde_json::json;

use super::admin::kit;
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
    let keys = match kit::get(&web, &v, "/api/v1/me/ssh-keys").await {
        Ok(k) => k,
        Err(e) => return error_page(&web, &v, &e, "/requests"),
    };
    let keys: Vec<serde_json::Value> = kit::items(&keys)
        .iter()
        .map(|k| {
            json!({ "id": k["id"], "name": k["name"], "fingerprint": k["fingerprint"],
                "last_used": kit::at(&v, &k["last_used_at"]), "created": kit::at(&v, &k["created_at"]) })
        })
        .collect();
    let sign = portcullis_app::me::ssh_key_sign_command(u);
    let ctx = json!({
        "keys": keys,
        "sign_command": sign,
        "title": "Your profile",
        "notice": n.done,
        "user": {
            "username": u.username, "display_name": u.display_name, "email": u.email,
            "time_zone": u.time_zone, "time_zone_locked": u.time_zone_locked, "roles": roles,
            "totp_enabled": u.totp_enabled, "directory": u.directory,
        },
    });
    page(&web, &v, "me.html", ctx)
}

pub async fn update(State(web): State<Web>, form: Submitted) -> Response {
    let change = ProfileChange {
        display_name: form.text("display_name"),
        // Set by the user: a set-password link may go there whoever sends it.
        email: form.text("email").map(Some),
        time_zone: form.text("time_zone").filter(|_| !form.viewer.caller.user.time_zone_locked),
    };
    match change_profile(&web, &form.viewer.caller, change).await {
        Ok(_) => Redirect::to(&with_notice("/me", "Your profile was saved.")).into_response(),
        Err(e) => error_page(&web, &form.viewer, &e, "/me"),
    }
}

/// Password and one-time codes: `password`, `totp` (start: shows the secret once),
/// `totp-confirm` and `totp-disable` (both with a current code).
pub async fn security(State(web): State<Web>, Path(action): Path<String>, form: Submitted) -> Response {
    let v = &form.viewer;
    enum Answer {
        Notice(&'static str),
        /// A new authenticator secret, shown once.
        Secret(String),
    }
    let result: Result<Answer, portcullis_app::AppError> = async {
        match action.as_str() {
            "password" => {
                let body = json!({
                    "current_password": form.get("current_password").unwrap_or_default(),
                    "new_password": kit::need(&form, "new_password", "the new password")?,
                });
                kit::call(&web, v, Method::POST, "/api/v1/me/password", Some(body)).await?;
                Ok(Answer::Notice("Your password was changed; your other sessions ended."))
            }
            "totp" => {
                let enrolment = kit::call(&web, v, Method::POST, "/api/v1/me/totp", None).await?;
                Ok(Answer::Secret(kit::s(&enrolment, "secret").to_owned()))
            }
            "totp-confirm" | "totp-disable" => {
                let body = json!({ "code": kit::need(&form, "code", "the one-time code")? });
                let path = if action == "totp-confirm" { "/api/v1/me/totp/confirm" } else { "/api/v1/me/totp/disable" };
                kit::call(&web, v, Method::POST, path, Some(body)).await?;
                Ok(Answer::Notice(if action == "totp-confirm" {
                    "One-time codes are on: sign-in now asks for one."
                } else {
                    "One-time codes are off."
                }))
            }
            "ssh-key-add" => {
                let body = json!({
                    "name": kit::need(&form, "name", "a name for the key")?,
                    "public_key": kit::need(&form, "public_key", "the public key")?,
                    "signature": kit::need(&form, "signature", "the signature of the text above")?,
                });
                kit::call(&web, v, Method::POST, "/api/v1/me/ssh-keys", Some(body)).await?;
                Ok(Answer::Notice("The key was registered: the SSH proxy now accepts it for you."))
            }
            "ssh-key-remove" => {
                let id = kit::need(&form, "id", "the key")?;
                kit::call(&web, v, Method::DELETE, &format!("/api/v1/me/ssh-keys/{}", kit::seg(&id)?), None).await?;
                Ok(Answer::Notice("The key was removed."))
            }
            _ => Err(portcullis_app::AppError::not_found("that action")),
        }
    }
    .await;
    match result {
        // The new secret is shown once, on this answer only (never in a URL).
        Ok(Answer::Secret(secret)) => {
            let grouped: Vec<String> =
                secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            let ctx = json!({ "title": "Set up one-time codes", "secret": grouped.join(" "), "raw_secret": secret });
            page(&web, v, "totp.html", ctx)
        }
        Ok(Answer::Notice(notice)) => Redirect::to(&with_notice("/me", notice)).into_response(),
        Err(e) => error_page(&web, v, &e, "/me"),
    }
}
