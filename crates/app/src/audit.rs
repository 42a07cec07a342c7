//! Refusals are audit events too: the SIEM sees attempts, not only successes. Each records
//! who asked what and why it was refused (the error's code and message, which never hold a
//! secret).

use portcullis_core::role::Role;
use portcullis_store::{Actor, AuditEvent, AuditQuery, ChainReport, NewEvent, Outcome};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
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

/// Who may read the audit log: Auditors and Appliance Administrators.
fn may_read(caller: &Caller) -> AppResult<()> {
    if caller.has(Role::Auditor) || caller.has(Role::ApplianceAdmin) {
        Ok(())
    } else {
        Err(AppError::forbidden("reading the audit log needs one of the roles: auditor, appliance_admin"))
    }
}

/// A page of audit events, filtered, in sequence order.
pub async fn events(state: &App, caller: &Caller, q: &AuditQuery) -> AppResult<Vec<AuditEvent>> {
    may_read(caller)?;
    if !(1..=1000).contains(&q.limit) {
        return Err(AppError::invalid("limit", "must be 1 to 1000"));
    }
    Ok(state.store.audit_events(q).await?)
}

/// Checks the whole chain: every event intact and in place.
pub async fn verify(state: &App, caller: &Caller) -> AppResult<ChainReport> {
    may_read(caller)?;
    let mut report = state.store.verify_audit_chain().await?;
    if report.broken.is_none() {
        // Intact as far as the database tells; the anchor outside it tells whether its tail
        // was cut off.
        if let Some(broken) = crate::audit_anchor::check(state).await? {
            report.checked = 0;
            report.broken = Some(broken);
        }
    }
    Ok(report)
}
