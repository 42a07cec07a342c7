//! The web UI: server-rendered HTML pages over the application layer's use cases, served by
//! the same binary and origin as the API. No page holds a rule of its own: every "may this
//! person do X" is the use case's answer, exactly as for the API and the CLI.
//!
//! Sessions are the API's login sessions, carried in a cookie (HttpOnly, Secure on TLS,
//! SameSite=Strict); every form that changes something carries a CSRF token derived from the
//! session, and a cross-site request is refused before it reaches a use case. Pages send a
//! strict Content-Security-Policy: scripts and styles only from this origin, no inline script,
//! no framing.

mod pages;

use pages::admin;
mod session;
mod view;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use portcullis_app::App;

/// What every page handler holds.
#[derive(Clone)]
pub struct Web {
    pub app: App,
    /// The API's router: administration pages call its endpoints in process (see
    /// `pages::admin::kit`).
    api: Router,
    templates: Arc<minijinja::Environment<'static>>,
    /// Whether the server speaks TLS (then the session cookie is `Secure`).
    secure: bool,
}

impl std::ops::Deref for Web {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of pages with the recording player: the same, plus compiling WebAssembly (the
/// player's terminal emulator); `'wasm-unsafe-eval'` allows no JavaScript `eval`.
pub(crate) const CSP_WITH_PLAYER: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The web UI's routes, with their state applied. `secure`: the server is on TLS; `api`: the
/// API's router (the administration pages' forms are calls to its endpoints).
pub fn router(app: App, secure: bool, api: Router) -> Router {
    let web = Web { app, api, templates: Arc::new(view::templates()), secure };
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::auth::form).post(pages::auth::login))
        .route("/logout", post(pages::auth::logout))
        .route("/auth/oidc/start", get(pages::sso::start))
        .route("/auth/oidc/callback", get(pages::sso::callback))
        .route("/auth/oidc/totp", post(pages::sso::totp))
        .route("/set-password/{token}", get(pages::auth::set_password_form).post(pages::auth::set_password))
        .route("/requests", get(pages::requests::mine).post(pages::requests::create))
        .route("/requests/new", get(pages::requests::new_form))
        .route("/requests/{id}", get(pages::requests::detail))
        .route("/requests/{id}/{action}", post(pages::requests::act))
        .route("/checkout/{id}", post(pages::access::checkout))
        .route("/launch/{id}", post(pages::access::launch))
        .route("/favorites", get(pages::favorites::list))
        .route("/favorites/{id}/submit", post(pages::favorites::submit))
        .route("/favorites/{id}/delete", post(pages::favorites::delete))
        .route("/approvals", get(pages::work::approvals).post(pages::work::bulk))
        .route("/approve/{token}", get(pages::work::approval_link))
        .route("/approved", get(pages::work::approved))
        .route("/reviews", get(pages::work::reviews))
        .route("/sessions/{id}/recording.cast", get(pages::work::cast))
        .route("/sessions/{id}/frames", get(pages::screens::frames))
        .route("/sessions/{id}/frames/{index}", get(pages::screens::frame))
        .route("/sessions/{id}/screen.png", get(pages::screens::still))
        .route("/sessions/{id}/live.png", get(pages::screens::live))
        .route("/sessions", get(pages::oversight::live))
        .route("/sessions/{id}/terminate", post(pages::oversight::terminate))
        .route("/sessions/waits/{id}/{verb}", post(pages::oversight::decide_wait))
        .route("/sessions/{id}/watch", get(pages::oversight::watch))
        .route("/sessions/{id}/live", get(pages::oversight::live_stream))
        .route("/audit", get(pages::oversight::audit))
        .route("/search", get(pages::search::search))
        .route("/recording-views", get(pages::recording_views::list))
        .route("/recording-views/{id}/{verb}", post(pages::recording_views::decide))
        .route("/sessions/{id}/view-request", post(pages::recording_views::ask))
        .route("/explain", get(pages::admin::explain))
        .route("/services", get(pages::admin::services).post(pages::admin::set_services))
        .route("/admin/directories", get(pages::admin::directories))
        .route("/admin/nodes", get(pages::admin::nodes))
        .route("/admin/directories/{name}/sync", post(pages::admin::sync_directory))
        .route("/me", get(pages::me::show).post(pages::me::update))
        .route("/me/{action}", post(pages::me::security))
        .route("/admin", get(pages::admin::index))
        .route("/admin/users", get(admin::users::list).post(admin::users::create))
        .route("/admin/users/{id}", get(admin::users::show))
        .route("/admin/users/{id}/{action}", post(admin::users::act))
        .route("/admin/groups/{kind}", get(admin::groups::list).post(admin::groups::create))
        .route("/admin/groups/{kind}/{id}", get(admin::groups::show))
        .route("/admin/groups/{kind}/{id}/{action}", post(admin::groups::act))
        .route("/admin/assets", get(admin::inventory::assets).post(admin::inventory::create_asset))
        .route("/admin/assets/{id}", get(admin::inventory::asset))
        .route("/admin/assets/{id}/{action}", post(admin::inventory::asset_act))
        .route("/admin/accounts/{id}", get(admin::inventory::account))
        .route("/admin/accounts/{id}/{action}", post(admin::inventory::account_act))
        .route("/admin/profiles", get(admin::rules::profiles).post(admin::rules::put_profile))
        .route("/admin/profiles/delete", post(admin::rules::delete_profile))
        .route("/admin/reason-codes", get(admin::rules::reason_codes).post(admin::rules::create_reason_code))
        .route("/admin/reason-codes/{id}/delete", post(admin::rules::delete_reason_code))
        .route("/admin/entitlements", get(admin::rules::entitlements).post(admin::rules::create_entitlement))
        .route("/admin/entitlements/{id}", get(admin::rules::entitlement))
        .route("/admin/entitlements/{id}/{action}", post(admin::rules::entitlement_act))
        .route("/admin/connection-policies", get(admin::gateway::list).post(admin::gateway::create))
        .route("/admin/connection-policies/explain", post(admin::gateway::explain))
        .route("/admin/connection-policies/{id}", get(admin::gateway::show))
        .route("/admin/connection-policies/{id}/{action}", post(admin::gateway::act))
        .route("/admin/policies", post(admin::rules::create_policy))
        .route("/admin/policies/{id}", get(admin::rules::policy))
        .route("/admin/policies/{id}/{action}", post(admin::rules::policy_act))
        .route("/static/{*path}", get(static_file))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// The embedded static files: our stylesheet and script, and vendored front-end code (see
/// `static/vendor/PROVENANCE.md`).
async fn static_file(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match path.as_str() {
        "app.css" => (include_bytes!("../static/app.css"), "text/css"),
        "app.js" => (include_bytes!("../static/app.js"), "text/javascript"),
        "vendor/asciinema-player/asciinema-player.min.js" => {
            (include_bytes!("../static/vendor/asciinema-player/asciinema-player.min.js"), "text/javascript")
        }
        "vendor/asciinema-player/asciinema-player.css" => {
            (include_bytes!("../static/vendor/asciinema-player/asciinema-player.css"), "text/css")
        }
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}
