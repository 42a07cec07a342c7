//! The HTTP API of Portcullis (`/api/v1`), its OpenAPI document, health and metrics.
//!
//! An adapter over the application layer (`portcullis-app`): each handler extracts its input,
//! makes one use-case call and turns the result into a DTO. Only this crate knows HTTP and
//! JSON; every route declares the roles it admits with an [`auth::Authed`] extractor.

pub mod auth;
pub mod dto;
pub mod error;
pub mod extract;
mod labels;
pub mod metrics;
mod routes;
pub mod state;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, RefOr, ResponseBuilder, SecurityRequirement};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::ClientAddr;
pub use error::{ApiError, ErrorBody};
pub use state::{App, AppState, AuthSettings, ChangeSettings, Clock, LiveSession, LiveSessions, SystemClock};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Operations anyone may call without a token.
pub const PUBLIC_OPERATIONS: &[&str] =
    &["bootstrap", "login", "set_password_by_link", "healthz", "metrics", "sso_info", "sso_start", "sso_token"];

#[derive(OpenApi)]
#[openapi(
    info(title = "Portcullis API", description = "Privileged access management: identity, inventory, audit."),
    components(schemas(ErrorBody)),
    tags(
        (name = "auth", description = "Sign-in and bootstrap"),
        (name = "me", description = "The signed-in user"),
        (name = "users", description = "User administration"),
        (name = "user-groups"), (name = "assets"), (name = "accounts"),
        (name = "asset-groups"), (name = "account-groups"),
        (name = "policies", description = "Entitlements and access request policies"),
        (name = "connection-policies", description = "Connection policies: which proxied connections are admitted, where they go, which channels may open"),
        (name = "requests", description = "Access requests and approvals"),
        (name = "credentials", description = "Vaulted credentials, checkout, and changes on targets"),
        (name = "sessions", description = "Proxied sessions, recordings and launch tokens"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "system", description = "Health and metrics"),
    )
)]
struct ApiDoc;

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::auth::routes())
        .merge(routes::sso::routes())
        .merge(routes::me::routes())
        .merge(routes::users::routes())
        .merge(routes::directories::routes())
        .merge(routes::groups::user_groups::routes())
        .merge(routes::groups::asset_groups::routes())
        .merge(routes::groups::account_groups::routes())
        .merge(routes::inventory::routes())
        .merge(routes::names::routes())
        .merge(routes::options::routes())
        .merge(routes::policies::routes())
        .merge(routes::gateway::routes())
        .merge(routes::requests::routes())
        .merge(routes::extras::routes())
        .merge(routes::credentials::routes())
        .merge(routes::profiles::routes())
        .merge(routes::sessions::routes())
        .merge(routes::search::routes())
        .merge(routes::recording_views::routes())
        .merge(routes::retention::routes())
        .merge(routes::screens::routes())
        .merge(routes::audit::routes())
        .merge(routes::system::routes())
        .merge(routes::nodes::routes())
}

/// The OpenAPI document, with the shared error responses and security requirements added to
/// every operation.
pub fn openapi() -> OpenApiDoc {
    let (_, doc) = api_routes().split_for_parts();
    finish_openapi(doc)
}

fn finish_openapi(mut doc: OpenApiDoc) -> OpenApiDoc {
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A session token from /api/v1/auth/login or an API token"))
                .build(),
        ),
    );
    let errors: &[(&str, &str)] = &[
        ("400", "Malformed request"),
        ("401", "Not signed in, or the credentials are wrong"),
        ("403", "Signed in without the needed role, or not the owner"),
        ("404", "No such object"),
        ("405", "Method not allowed"),
        ("409", "Conflicts with the current state"),
        ("413", "Request body too large"),
        ("415", "Request body is not JSON"),
        ("422", "A field is invalid"),
        ("429", "Too many failed attempts from this address; wait and try again"),
        ("500", "Internal error"),
        ("502", "The target system could not be reached or refused"),
    ];
    for item in doc.paths.paths.values_mut() {
        for op in
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            let public = op.operation_id.as_deref().is_some_and(|id| PUBLIC_OPERATIONS.contains(&id));
            if !public {
                op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
            }
            for (status, description) in errors {
                op.responses.responses.entry((*status).to_owned()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(*description)
                            .content(
                                "application/json",
                                utoipa::openapi::ContentBuilder::new()
                                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build(),
                    )
                });
            }
        }
    }
    doc
}

/// The complete HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let doc = Arc::new(finish_openapi(doc));
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
    .route("/api/v1/docs", get(routes::system::docs))
    .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see /api/v1/docs") })
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not accept that method; see /api/v1/docs",
        )
    })
    .layer(DefaultBodyLimit::max(BODY_LIMIT))
    .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
    .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
    .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
    .layer(TraceLayer::new_for_http())
    .with_state(state)
}
