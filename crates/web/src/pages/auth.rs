//! Sign in (password, and a one-time code when enrolled), sign out.

use axum::extract::{Query, Request};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::local;
use crate::session::{client_source, cross_site, session_cookie, Submitted};
use crate::Web;

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    ended: Option<String>,
}

fn login_page(web: &Web, status: StatusCode, next: &str, error: Option<&str>, username: &str) -> Response {
    let ctx = json!({ "next": next, "error": error, "username": username });
    match web.templates.get_template("login.html").and_then(|t| t.render(&ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response(),
    }
}

pub async fn form(axum::extract::State(web): axum::extract::State<Web>, Query(q): Query<LoginQuery>) -> Response {
    let next = local(q.next.as_deref(), "/requests");
    let ended = q.ended.is_some().then_some("Your session has ended; sign in again.");
    login_page(&web, StatusCode::OK, &next, ended, "")
}

pub async fn login(axum::extract::State(web): axum::extract::State<Web>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if cross_site(&parts.headers) {
        return login_page(&web, StatusCode::FORBIDDEN, "/requests", Some("Sign-in from another site is refused."), "");
    }
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
        return login_page(&web, StatusCode::BAD_REQUEST, "/requests", Some("The form is too large."), "");
    };
    let mut username = String::new();
    let mut password = Zeroizing::new(String::new());
    let (mut code, mut next) = (None, None);
    for (k, v) in form_urlencoded::parse(&bytes) {
        match k.as_ref() {
            "username" => username = v.trim().to_owned(),
            "password" => password = Zeroizing::new(v.into_owned()),
            "totp" if !v.trim().is_empty() => code = Some(v.trim().to_owned()),
            "next" => next = Some(v.into_owned()),
            _ => {}
        }
    }
    let next = local(next.as_deref(), "/requests");
    let source = client_source(&parts);
    match portcullis_app::auth::sign_in(&web, &source, &username, password, code.as_deref()).await {
        Ok(s) => {
            let max_age = (s.expires_at - web.now()) / 1_000_000;
            let cookie = session_cookie(&s.token, web.secure, max_age.max(0));
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        Err(e) => {
            let message = match e.code {
                "totp_required" => "Enter the one-time code from your authenticator app as well.".to_owned(),
                _ => format!("{}.", capitalise(&e.message)),
            };
            login_page(&web, StatusCode::UNAUTHORIZED, &next, Some(&message), &username)
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

pub async fn logout(axum::extract::State(web): axum::extract::State<Web>, form: Submitted) -> Response {
    let c = &form.viewer.caller;
    if let Err(e) = web.store.end_login_session(&c.actor(), web.now(), &c.token_hash).await {
        tracing::warn!(error = %e, "could not end a web session");
    }
    let cookie = session_cookie("", web.secure, 0);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
