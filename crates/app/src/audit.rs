//! Refusals are audit events too: the SIEM sees attempts, not only successes. Each records
//! who asked what and why it was refused (the error's code and message, which never hold a
//! secret).

use portcullis_store::{Actor, NewEvent, Outcome};
use serde_json::{json, Value};

use crate::error::AppError;
use crate::state::App;

/// Records that `actor` was refused `action` on an object. `details` adds what was asked.
pub async fn refusal(
    state: &App,
    actor: &Actor,
    action: &'static str,
    object_type: &'static str,
    object_id: &str,
    err: &AppError,
    mut details: Value,
) {
    if let Some(d) = details.as_object_mut() {
        d.insert("code".into(), json!(err.code));
        d.insert("reason".into(), json!(err.message));
        if let Some(f) = &err.field {
            d.insert("field".into(), json!(f));
        }
    }
    let event = NewEvent::success(action, object_type, object_id).with_outcome(Outcome::Denied).with_details(details);
    if let Err(e) = state.store.record(actor, state.now(), event).await {
        tracing::error!(error = %e, action, "could not audit a refusal");
    }
}
