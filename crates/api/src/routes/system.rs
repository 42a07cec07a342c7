//! Health, metrics and the API's own description.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    status: String,
    /// `ok` when the database answers.
    store: String,
}

/// Liveness and readiness: checks that the database answers.
#[utoipa::path(get, path = "/healthz", tag = "system", operation_id = "healthz",
    responses((status = 200, description = "Healthy", body = Health), (status = 503, description = "The store does not answer", body = Health)))]
async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(Health { status: "ok".into(), store: "ok".into() })),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health { status: "unavailable".into(), store: "unavailable".into() }),
            )
        }
    }
}

/// Prometheus metrics (OpenMetrics text format).
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "metrics",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

/// The interactive API documentation page (self-contained, no external scripts).
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("../../assets/docs.html"))
}
