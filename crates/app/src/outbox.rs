//! The notification outbox, as the notifier reads it. Every workflow transition writes its
//! notification rows in the transition's own transaction (see the store); delivery (e-mail,
//! webhooks) reads them here, after the fact, so it never slows or blocks the workflow.

use portcullis_store::OutboxItem;

use crate::error::AppResult;
use crate::state::App;

/// Undelivered notifications, oldest first.
pub async fn pending(state: &App, limit: i64) -> AppResult<Vec<OutboxItem>> {
    Ok(state.store.outbox(limit).await?)
}

/// Notifications delivery gave up on, newest first, with their recipients' names (Appliance
/// Administrators and Auditors).
pub async fn failed(
    state: &App,
    caller: &crate::auth::Caller,
    limit: i64,
) -> AppResult<Vec<(portcullis_store::FailedDelivery, Vec<String>)>> {
    use portcullis_core::role::Role;
    if !(caller.has(Role::ApplianceAdmin) || caller.has(Role::Auditor)) {
        return Err(crate::error::AppError::forbidden(
            "failed notifications are for Appliance Administrators and Auditors",
        ));
    }
    if !(1..=1000).contains(&limit) {
        return Err(crate::error::AppError::invalid("limit", "must be 1 to 1000"));
    }
    let list = state.store.failed_deliveries(limit).await?;
    let ids: Vec<String> = list.iter().flat_map(|d| d.recipients.clone()).collect();
    let names = state.store.names_for(portcullis_store::Named::User, &ids).await?;
    Ok(list
        .into_iter()
        .map(|d| {
            let who = d.recipients.iter().map(|r| names.get(r).cloned().unwrap_or_else(|| r.clone())).collect();
            (d, who)
        })
        .collect())
}

/// Queues a test notification to the caller on every configured channel (and, through its
/// audit event, to the SIEM). Appliance Administrators.
pub async fn send_test(state: &App, caller: &crate::auth::Caller) -> AppResult<()> {
    use portcullis_core::role::Role;
    if !caller.has(Role::ApplianceAdmin) {
        return Err(crate::error::AppError::forbidden("test notifications are for Appliance Administrators"));
    }
    let me = caller.user.id.clone();
    state.store.notify(state.now(), "test", &me, std::slice::from_ref(&me)).await?;
    state
        .store
        .record(&caller.actor(), state.now(), portcullis_store::NewEvent::success("notification.test", "user", &me))
        .await?;
    Ok(())
}
