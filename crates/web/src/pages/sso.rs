//! Single sign-on in the browser: start (a state cookie ties the sign-in to this browser), the
//! provider's answer, and the one-time code page for users enrolled in one when the provider
//! asserted no multi-factor sign-in.

use axum::extract::{Query, Request};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::local;
use crate::session::{client_source, cookie_value, cross_site, session_cookie};
use crate::Web;

/// The cookie holding a web sign-in's state between the start and the provider's answer. Lax:
/// it must come back with the provider's redirect (a top-level navigation from its site).
const STATE_COOKIE: &str = "pcl_sso";

fn state_cookie(value: &str, secure: bool, max_age: i64) -> String {
    format!(
        "{STATE_COOKIE}={value}; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

fn page(web: &Web, status: StatusCode, ctx: serde_json::Value) -> Response {
    match web.templates.get_template("sso.html").and_then(|t| t.render(&ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response(),
    }
}

fn error(web: &Web, status: StatusCode, message: &str) -> Response {
    page(web, status, json!({ "error": message }))
}

#[derive(Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

pub async fn start(axum::extract::State(web): axum::extract::State<Web>, Query(q): Query<StartQuery>) -> Response {
    let next = local(q.next.as_deref(), "/requests");
    match portcullis_app::sso::begin_web(&web, &next).await {
        Ok(begun) => ([(header::SET_COOKIE, state_cookie(&begun.state, web.secure, 600))], Redirect::to(&begun.url))
            .into_response(),
        Err(e) => error(&web, StatusCode::BAD_GATEWAY, &format!("Single sign-on is not available: {}.", e.message)),
    }
}

/// After the session cookie is set, a page of ours moves on: the session cookie is
/// SameSite=Strict, which a redirect chain begun on the provider's site would not carry.
fn signed_in(web: &Web, s: portcullis_app::auth::SignedIn, next: &str) -> Response {
    let max_age = (s.expires_at - web.now()) / 1_000_000;
    let cookies = [
        (header::SET_COOKIE, session_cookie(&s.token, web.secure, max_age.max(0))),
        (header::SET_COOKIE, state_cookie("", web.secure, 0)),
    ];
    let mut resp = page(web, StatusCode::OK, json!({ "continue_to": next, "username": s.user.username }));
    for (k, v) in cookies {
        if let Ok(v) = v.parse() {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn callback(axum::extract::State(web): axum::extract::State<Web>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Ok(Query(q)) = Query::<CallbackQuery>::try_from_uri(&parts.uri) else {
        return error(&web, StatusCode::BAD_REQUEST, "The sign-in provider's answer is malformed.");
    };
    if let Some(e) = q.error {
        let why = q.error_description.unwrap_or(e);
        return error(&web, StatusCode::UNAUTHORIZED, &format!("The sign-in provider did not sign you in: {why}."));
    }
    let (Some(state), Some(code)) = (q.state, q.code) else {
        return error(&web, StatusCode::BAD_REQUEST, "The sign-in provider's answer has no code; start again.");
    };
    let source = client_source(&parts);
    let browser = cookie_value(&parts.headers, STATE_COOKIE);
    match portcullis_app::sso::answered(&web, &source, &state, &code, browser.as_deref()).await {
        Ok(portcullis_app::sso::Answered::Cli { redirect }) => Redirect::to(&redirect).into_response(),
        Ok(portcullis_app::sso::Answered::Web { grant, next, totp: false, .. }) => {
            match portcullis_app::sso::redeem(&web, &source, &grant, None, None).await {
                Ok(s) => signed_in(&web, s, &next),
                Err(e) => error(&web, StatusCode::UNAUTHORIZED, &format!("{}.", e.message)),
            }
        }
        Ok(portcullis_app::sso::Answered::Web { grant, next, totp: true, username }) => {
            let provider = web.sso.as_ref().map(|s| s.display_name.clone()).unwrap_or_default();
            page(
                &web,
                StatusCode::OK,
                json!({ "grant": grant.as_str(), "next": next, "provider": provider, "username": username }),
            )
        }
        Err(e) => {
            let status = if e.code == "sso_unavailable" { StatusCode::BAD_GATEWAY } else { StatusCode::UNAUTHORIZED };
            error(&web, status, &format!("{}.", e.message))
        }
    }
}

pub async fn totp(axum::extract::State(web): axum::extract::State<Web>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if cross_site(&parts.headers) {
        return error(&web, StatusCode::FORBIDDEN, "Sign-in from another site is refused.");
    }
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
        return error(&web, StatusCode::BAD_REQUEST, "The form is too large.");
    };
    let (mut grant, mut code, mut next) = (String::new(), String::new(), None);
    for (k, v) in form_urlencoded::parse(&bytes) {
        match k.as_ref() {
            "grant" => grant = v.into_owned(),
            "totp" => code = v.trim().to_owned(),
            "next" => next = Some(v.into_owned()),
            _ => {}
        }
    }
    let next = local(next.as_deref(), "/requests");
    let source = client_source(&parts);
    match portcullis_app::sso::redeem(&web, &source, &grant, None, Some(&code)).await {
        Ok(s) => signed_in(&web, s, &next),
        Err(e) if e.code == "invalid_credentials" => {
            let provider = web.sso.as_ref().map(|s| s.display_name.clone()).unwrap_or_default();
            page(
                &web,
                StatusCode::UNAUTHORIZED,
                json!({ "grant": grant, "next": next, "provider": provider,
                        "error": "Wrong or reused one-time code; try the next one." }),
            )
        }
        Err(e) => error(&web, StatusCode::UNAUTHORIZED, &format!("{}.", e.message)),
    }
}
