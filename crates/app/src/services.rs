//! The request services switch (R-REQ-9): session requests on or off, for every front end.

use portcullis_core::role::Role;

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// Whether session requests (SSH, RDP, Telnet) may be made and used.
pub async fn session_requests(state: &App) -> AppResult<bool> {
    Ok(state.store.service_enabled(portcullis_store::SESSION_REQUESTS_SETTING).await?)
}

/// Switches session requests on or off (Appliance Administrators; a refusal is audited).
pub async fn set_session_requests(state: &App, caller: &Caller, on: bool) -> AppResult<bool> {
    if !caller.has(Role::ApplianceAdmin) {
        let err = AppError::forbidden("switching request services needs the role appliance_admin");
        let details = serde_json::json!({ "session_requests": on });
        crate::audit::refusal(state, &caller.actor(), "service.set", "service", "session_requests", &err, details)
            .await;
        return Err(err);
    }
    state.store.set_service(&caller.actor(), state.now(), portcullis_store::SESSION_REQUESTS_SETTING, on).await?;
    Ok(on)
}
