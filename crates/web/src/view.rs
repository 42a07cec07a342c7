//! Rendering: the templates (embedded, HTML autoescaped), the frame every page shares, times in
//! the viewer's zone, and error pages that say what to do.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use jiff::tz::TimeZone;
use minijinja::{AutoEscape, Environment};
use portcullis_app::{AppError, ErrorKind};
use portcullis_core::role::Role;
use serde_json::{json, Value};

use crate::session::Viewer;
use crate::Web;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("set_password.html", include_str!("../templates/set_password.html")),
    ("sso.html", include_str!("../templates/sso.html")),
    ("message.html", include_str!("../templates/message.html")),
    ("requests.html", include_str!("../templates/requests.html")),
    ("new_request.html", include_str!("../templates/new_request.html")),
    ("outcome.html", include_str!("../templates/outcome.html")),
    ("request.html", include_str!("../templates/request.html")),
    ("queue.html", include_str!("../templates/queue.html")),
    ("me.html", include_str!("../templates/me.html")),
    ("launch.html", include_str!("../templates/launch.html")),
    ("favorites.html", include_str!("../templates/favorites.html")),
    ("sessions.html", include_str!("../templates/sessions.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    ("search.html", include_str!("../templates/search.html")),
    ("recording_views.html", include_str!("../templates/recording_views.html")),
    ("explain.html", include_str!("../templates/explain.html")),
    ("services.html", include_str!("../templates/services.html")),
    ("directories.html", include_str!("../templates/directories.html")),
    ("watch.html", include_str!("../templates/watch.html")),
    ("admin.html", include_str!("../templates/admin.html")),
    ("totp.html", include_str!("../templates/totp.html")),
    ("paging.html", include_str!("../templates/paging.html")),
    ("player_head.html", include_str!("../templates/player_head.html")),
];

pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    for (name, source) in TEMPLATES {
        env.add_template(name, source).expect("the embedded templates are valid");
    }
    env
}

/// A time in the viewer's zone, with the zone's abbreviation: `2026-12-01 09:00 CET`.
pub fn when(zone: &TimeZone, micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string())
        .unwrap_or_default()
}

fn render(web: &Web, status: StatusCode, name: &str, ctx: &Value) -> Response {
    match web.templates.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered; see the server log").into_response()
        }
    }
}

/// What the frame shows about the viewer: name, zone, the CSRF token for forms, and which
/// parts of the navigation apply to them.
fn frame(v: &Viewer) -> Value {
    let u = &v.caller.user;
    json!({
        "username": u.username,
        "display_name": if u.display_name.is_empty() { &u.username } else { &u.display_name },
        "zone": v.zone.iana_name().unwrap_or("UTC"),
        "csrf": v.csrf,
        "is_policy_admin": v.caller.has(Role::SecurityPolicyAdmin),
        "is_auditor": v.caller.has(Role::Auditor) || v.caller.has(Role::ApplianceAdmin),
        "is_appliance_admin": v.caller.has(Role::ApplianceAdmin),
        "is_admin": Role::ALL.iter().any(|r| v.caller.has(*r)),
        "may_explain": v.caller.has(Role::SecurityPolicyAdmin) || v.caller.has(Role::Auditor) || v.caller.has(Role::ApplianceAdmin),
    })
}

/// A page for a signed-in viewer; `ctx` is merged into the frame's context.
pub fn page(web: &Web, v: &Viewer, name: &str, mut ctx: Value) -> Response {
    if let Some(o) = ctx.as_object_mut() {
        o.insert("me".into(), frame(v));
    }
    render(web, StatusCode::OK, name, &ctx)
}

/// A page with a title and a sentence, and a link back.
pub fn message_page(web: &Web, v: Option<&Viewer>, title: &str, text: &str, back: &str) -> Response {
    let ctx = json!({ "title": title, "text": text, "back": back, "me": v.map(frame) });
    render(web, StatusCode::OK, "message.html", &ctx)
}

/// A use case's refusal as a page: its message says what to fix.
pub fn error_page(web: &Web, v: &Viewer, e: &AppError, back: &str) -> Response {
    let status = match e.kind {
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Invalid | ErrorKind::BadRequest => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let title = match e.kind {
        ErrorKind::Forbidden => "Not allowed",
        ErrorKind::NotFound => "Not found",
        ErrorKind::Invalid | ErrorKind::BadRequest => "Please correct this",
        _ => "That did not work",
    };
    let ctx = json!({ "title": title, "text": e.message, "field": e.field, "back": back, "me": frame(v) });
    render(web, status, "message.html", &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_escapes_html() {
        let env = templates();
        let t = env.get_template("message.html").unwrap();
        let html = t.render(json!({ "title": "T", "text": "<script>x</script>", "back": "/" })).unwrap();
        assert!(html.contains("&lt;script&gt;x") && !html.contains("<script>x"), "{html}");
    }
}
