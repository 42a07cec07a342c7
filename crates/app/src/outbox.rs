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
