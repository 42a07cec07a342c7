//! Single sign-on for the CLI (the web UI has its own pages): start a sign-in whose answer goes
//! to the command's loopback address, then trade the one-time grant (with the command's own
//! verifier) for a login session.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::Source;
use crate::dto::{ts, UserDto};
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::routes::auth::LoginResponse;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sso_info)).routes(routes!(sso_start)).routes(routes!(sso_token))
}

#[derive(Serialize, ToSchema)]
pub struct SsoInfo {
    /// Whether single sign-on is configured.
    enabled: bool,
    /// The provider's name as the sign-in button shows it.
    display_name: Option<String>,
}

/// Whether single sign-on is on, and the provider's name.
#[utoipa::path(get, path = "/api/v1/auth/sso", tag = "auth", operation_id = "sso_info",
    responses((status = 200, description = "Single sign-on", body = SsoInfo)))]
async fn sso_info(State(state): State<AppState>) -> Json<SsoInfo> {
    Json(SsoInfo { enabled: state.sso.is_some(), display_name: state.sso.as_ref().map(|s| s.display_name.clone()) })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoStartRequest {
    /// The command's loopback address the browser returns to, e.g. http://127.0.0.1:PORT/callback.
    redirect: String,
    /// SHA-256 (hex) of a random verifier the command keeps.
    challenge: String,
}

#[derive(Serialize, ToSchema)]
pub struct SsoStartResponse {
    /// Open this in a browser to sign in with the provider.
    url: String,
}

/// Starts a single sign-on for a command-line client.
#[utoipa::path(post, path = "/api/v1/auth/sso/start", tag = "auth", operation_id = "sso_start",
    request_body = SsoStartRequest,
    responses((status = 200, description = "Started", body = SsoStartResponse)))]
async fn sso_start(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SsoStartRequest>,
) -> ApiResult<Json<SsoStartResponse>> {
    let begun = portcullis_app::sso::begin_cli(&state, &req.redirect, &req.challenge).await?;
    Ok(Json(SsoStartResponse { url: begun.url }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoTokenRequest {
    /// The grant the browser brought to the command's loopback address.
    #[schema(value_type = String, format = Password)]
    grant: Zeroizing<String>,
    /// The verifier whose SHA-256 began the sign-in.
    #[schema(value_type = String, format = Password)]
    verifier: Zeroizing<String>,
    /// The one-time code, for users enrolled when the provider asserted no multi-factor sign-in.
    totp_code: Option<String>,
}

/// Trades a single sign-on's grant for a login session.
#[utoipa::path(post, path = "/api/v1/auth/sso/token", tag = "auth", operation_id = "sso_token",
    request_body = SsoTokenRequest,
    responses((status = 200, description = "Signed in", body = LoginResponse)))]
async fn sso_token(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<SsoTokenRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let s =
        portcullis_app::sso::redeem(&state, &source, &req.grant, Some(&req.verifier), req.totp_code.as_deref()).await?;
    Ok(Json(LoginResponse { token: s.token.to_string(), expires_at: ts(s.expires_at), user: UserDto::from(&s.user) }))
}
