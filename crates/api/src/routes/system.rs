//! Health, metrics and the API's own description.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, Authed};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(ssh_proxy))
        .routes(routes!(failed_notifications))
        .routes(routes!(test_notification))
}

/// Sends a test notification to the caller through every configured channel: e-mail (to the
/// caller's address), webhook, and (its audit event `notification.test`) the SIEM. Appliance
/// Administrators. Delivery follows; `GET /api/v1/notifications/failed` shows a failure.
#[utoipa::path(post, path = "/api/v1/notifications/test", tag = "system", operation_id = "test_notification",
    responses((status = 202, description = "Queued")))]
async fn test_notification(State(state): State<AppState>, c: Authed<AnyUser>) -> crate::error::ApiResult<StatusCode> {
    portcullis_app::outbox::send_test(&state, &c).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Serialize, ToSchema)]
pub struct FailedNotificationDto {
    id: String,
    /// pending_approval, approved, denied, revoked, expired, review_due, credential_change_failed…
    event: String,
    /// The request (or account) it was about.
    subject_id: String,
    /// The recipients' user names.
    recipients: Vec<String>,
    created_at: String,
    failed_at: String,
    attempts: i64,
    /// Why the last attempt failed.
    last_error: String,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FailedParams {
    /// At most this many (1 to 1000, default 100).
    limit: Option<i64>,
}

fn rfc3339(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_default()
}

/// Notifications delivery gave up on after its last attempt (each is also in the audit log as
/// `notification.failed`). Appliance Administrators and Auditors.
#[utoipa::path(get, path = "/api/v1/notifications/failed", tag = "system", operation_id = "failed_notifications",
    params(FailedParams),
    responses((status = 200, description = "Given up, newest first", body = [FailedNotificationDto])))]
async fn failed_notifications(
    State(state): State<AppState>,
    c: Authed<AnyUser>,
    crate::extract::ApiQuery(p): crate::extract::ApiQuery<FailedParams>,
) -> crate::error::ApiResult<Json<Vec<FailedNotificationDto>>> {
    let list = portcullis_app::outbox::failed(&state, &c, p.limit.unwrap_or(100)).await?;
    Ok(Json(
        list.into_iter()
            .map(|(d, recipients)| FailedNotificationDto {
                id: d.id,
                event: d.event,
                subject_id: d.subject_id,
                recipients,
                created_at: rfc3339(d.created_at),
                failed_at: rfc3339(d.failed_at),
                attempts: d.attempts,
                last_error: d.last_error,
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct HostKeyDto {
    /// e.g. ssh-ed25519.
    algorithm: String,
    /// `SHA256:…`, as `ssh` shows it on first connect.
    fingerprint: String,
    /// The line to add to `~/.ssh/known_hosts` to trust the proxy without asking.
    known_hosts: String,
}

#[derive(Serialize, ToSchema)]
pub struct SshProxyDto {
    /// host:port users connect to; empty when the SSH proxy is off.
    address: String,
    host_keys: Vec<HostKeyDto>,
}

/// The SSH proxy's address and host keys: compare the fingerprint with what `ssh` shows on
/// first connect, or add the known_hosts line.
#[utoipa::path(get, path = "/api/v1/ssh-proxy", tag = "system", operation_id = "ssh_proxy",
    responses((status = 200, description = "The SSH proxy", body = SshProxyDto)))]
async fn ssh_proxy(State(state): State<AppState>, _c: Authed<AnyUser>) -> Json<SshProxyDto> {
    let address = state.ssh_host.as_str().to_owned();
    // known_hosts names a non-standard port as [host]:port.
    let host = match address.rsplit_once(':') {
        Some((h, "22")) => h.to_owned(),
        Some((h, p)) => format!("[{h}]:{p}"),
        None => address.clone(),
    };
    let host_keys = state
        .ssh_host_keys
        .iter()
        .map(|k| HostKeyDto {
            algorithm: k.algorithm.clone(),
            fingerprint: k.fingerprint.clone(),
            known_hosts: format!("{host} {}", k.public_key),
        })
        .collect();
    Json(SshProxyDto { address: if state.ssh_host_keys.is_empty() { String::new() } else { address }, host_keys })
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when the database or the recordings' storage is not reachable.
    status: String,
    /// This node's name.
    node: String,
    /// `ok` when the database answers.
    store: String,
    /// `ok` when the recordings' directory (shared by the nodes, or this node's) is there and
    /// writable.
    recordings: String,
    /// `ok`, `failing` (the last copy to the archive failed; recordings wait on disk) or `off`.
    archive: String,
}

/// Liveness and readiness: checks that the database answers and that recordings can be
/// written; says how the archive fares.
#[utoipa::path(get, path = "/healthz", tag = "system", operation_id = "healthz",
    responses((status = 200, description = "Healthy", body = Health), (status = 503, description = "The database or the recordings' storage is not reachable", body = Health)))]
async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let ok = |b: bool| if b { "ok".to_owned() } else { "unavailable".to_owned() };
    let store = match state.store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "health check failed: the database does not answer");
            false
        }
    };
    let recordings = match tokio::fs::metadata(state.recordings.as_path()).await {
        Ok(m) => m.is_dir() && !m.permissions().readonly(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed: the recordings' directory cannot be reached");
            false
        }
    };
    let archive = match &state.archive {
        None => "off",
        Some(a) if a.failing.load(std::sync::atomic::Ordering::Relaxed) => "failing",
        Some(_) => "ok",
    };
    let healthy = store && recordings;
    let health = Health {
        status: ok(healthy),
        node: state.node.to_string(),
        store: ok(store),
        recordings: ok(recordings),
        archive: archive.into(),
    };
    (if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(health))
}

/// Prometheus metrics (OpenMetrics text format). With `server.metrics_token` set, only for
/// `Authorization: Bearer <that token>`; without, only for clients on this host (loopback).
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "metrics",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
async fn metrics(
    State(state): State<AppState>,
    peer: Option<axum::Extension<crate::auth::ClientAddr>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let peer = peer.map(|axum::Extension(a)| a.0.ip());
    if let Err(why) = metrics_allowed(state.metrics_token.as_deref().map(String::as_str), peer, bearer) {
        return crate::error::ApiError::new(StatusCode::UNAUTHORIZED, "metrics_token_required", why).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

/// Who may read the metrics (they name routes, sign-in failures and checkouts): with a token
/// configured, whoever sends it; without, clients on this host only.
fn metrics_allowed(
    token: Option<&str>,
    peer: Option<std::net::IpAddr>,
    bearer: Option<&str>,
) -> Result<(), &'static str> {
    use subtle::ConstantTimeEq;
    match token {
        Some(t) => match bearer {
            Some(b) if bool::from(b.as_bytes().ct_eq(t.as_bytes())) => Ok(()),
            _ => Err("the metrics need the token of server.metrics_token, sent as Authorization: Bearer <token>"),
        },
        None if peer.is_some_and(|ip| ip.is_loopback()) => Ok(()),
        None => Err("the metrics are served to this host only; set server.metrics_token \
                     (PORTCULLIS_SERVER_METRICS_TOKEN) and send it as Authorization: Bearer <token>"),
    }
}

/// The interactive API documentation page (self-contained, no external scripts).
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("../../assets/docs.html"))
}

#[cfg(test)]
mod tests {
    use super::metrics_allowed;

    #[test]
    fn metrics_are_for_the_token_or_this_host() {
        let here = Some("127.0.0.1".parse().unwrap());
        let there = Some("192.0.2.7".parse().unwrap());
        assert!(metrics_allowed(None, here, None).is_ok());
        assert!(metrics_allowed(None, Some("::1".parse().unwrap()), None).is_ok());
        assert!(metrics_allowed(None, there, None).is_err());
        assert!(metrics_allowed(None, None, None).is_err());
        let t = Some("a-long-metrics-token-123");
        assert!(metrics_allowed(t, there, Some("a-long-metrics-token-123")).is_ok());
        assert!(metrics_allowed(t, here, None).is_err(), "with a token, also this host needs it");
        assert!(metrics_allowed(t, there, Some("a-long-metrics-token-124")).is_err());
    }
}
