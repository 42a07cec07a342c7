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
    /// Set after a set-password link was used.
    set: Option<String>,
}

fn login_page(web: &Web, status: StatusCode, next: &str, error: Option<&str>, username: &str) -> Response {
    login_page_with(web, status, next, error, None, username)
}

fn login_page_with(
    web: &Web,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
    notice: Option<&str>,
    username: &str,
) -> Response {
    let sso = web.sso.as_ref().map(|s| s.display_name.clone());
    let sso_href = format!("/auth/oidc/start?next={}", crate::session::encode(next));
    let ctx = json!({ "next": next, "error": error, "notice": notice, "username": username, "sso": sso, "sso_href": sso_href });
    match web.templates.get_template("login.html").and_then(|t| t.render(&ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response(),
    }
}

pub async fn form(axum::extract::State(web): axum::extract::State<Web>, Query(q): Query<LoginQuery>) -> Response {
    let next = local(q.next.as_deref(), "/requests");
    let ended = q.ended.is_some().then_some("Your session has ended; sign in again.");
    let set = q.set.is_some().then_some("Your password is set; sign in with it.");
    login_page_with(&web, StatusCode::OK, &next, ended, set, "")
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

fn set_password_page(
    web: &Web,
    status: StatusCode,
    token: &str,
    username: Option<&str>,
    error: Option<&str>,
) -> Response {
    let ctx = json!({ "token": token, "username": username, "error": error,
        "min_length": web.auth.password_min_length });
    match web.templates.get_template("set_password.html").and_then(|t| t.render(&ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response(),
    }
}

fn status_of(e: &portcullis_app::error::AppError) -> StatusCode {
    match e.code {
        "too_many_attempts" => StatusCode::TOO_MANY_REQUESTS,
        "link_invalid" => StatusCode::NOT_FOUND,
        "link_expired" => StatusCode::CONFLICT,
        "account_disabled" => StatusCode::FORBIDDEN,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// The page a set-password link opens (an administrator's reset, an invitation): names the
/// user, asks for the new password twice. Needs no session.
pub async fn set_password_form(
    axum::extract::State(web): axum::extract::State<Web>,
    axum::extract::Path(token): axum::extract::Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    match portcullis_app::password_reset::link_user(&web, &client_source(&parts), &token).await {
        Ok(user) => set_password_page(&web, StatusCode::OK, &token, Some(&user.username), None),
        Err(e) => set_password_page(&web, status_of(&e), "", None, Some(&format!("{}.", capitalise(&e.message)))),
    }
}

pub async fn set_password(
    axum::extract::State(web): axum::extract::State<Web>,
    axum::extract::Path(token): axum::extract::Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    if cross_site(&parts.headers) {
        return set_password_page(&web, StatusCode::FORBIDDEN, "", None, Some("A form from another site is refused."));
    }
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
        return set_password_page(&web, StatusCode::BAD_REQUEST, "", None, Some("The form is too large."));
    };
    let mut password = Zeroizing::new(String::new());
    let mut repeat = Zeroizing::new(String::new());
    for (k, v) in form_urlencoded::parse(&bytes) {
        match k.as_ref() {
            "new_password" => password = Zeroizing::new(v.into_owned()),
            "repeat" => repeat = Zeroizing::new(v.into_owned()),
            _ => {}
        }
    }
    let source = client_source(&parts);
    let user = match portcullis_app::password_reset::link_user(&web, &source, &token).await {
        Ok(u) => u,
        Err(e) => {
            return set_password_page(&web, status_of(&e), "", None, Some(&format!("{}.", capitalise(&e.message))))
        }
    };
    if *password != *repeat {
        let why = "The two passwords differ; type the same one twice.";
        return set_password_page(&web, StatusCode::UNPROCESSABLE_ENTITY, &token, Some(&user.username), Some(why));
    }
    match portcullis_app::password_reset::set_password(&web, &source, &token, password).await {
        Ok(_) => Redirect::to("/login?set=1").into_response(),
        Err(e) => {
            let why = match &e.field {
                Some(_) => format!("The new password {}.", e.message),
                None => format!("{}.", capitalise(&e.message)),
            };
            let still = matches!(e.kind, portcullis_app::error::ErrorKind::Invalid);
            let (token, name) = if still { (token.as_str(), Some(user.username.as_str())) } else { ("", None) };
            set_password_page(&web, status_of(&e), token, name, Some(&why))
        }
    }
}
