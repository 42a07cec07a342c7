//! Due work: time-based request transitions (and the hourly purge of expired mail tokens) and
//! automatic credential changes. Each runs as
//! its own loop, started once per node by the binary.

use std::time::Duration;

use crate::state::App;

/// Drives time-based transitions (approved → available at the start, → expired at the end).
/// It works from the database alone, so after a restart it catches up on whatever came due
/// while the server was down, audited with the real time of the catch-up.
pub async fn run_transitions(state: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut passes = 0u64;
    loop {
        tick.tick().await;
        // The head of the audit chain is anchored in each node's own file.
        if let Err(e) = crate::audit_anchor::write(&state).await {
            tracing::warn!(error = %e.message, "cannot anchor the audit log");
        }
        // One node runs the transitions at a time (each is also taken under a row lock, so a
        // second scheduler could never apply one twice: this only spares the contention).
        if !crate::cluster::lead(&state, "scheduler", Duration::from_secs(5)).await {
            passes = 0;
            continue;
        }
        // Hourly: approval mails' tokens that expired a day ago are of no use to anyone.
        if passes.is_multiple_of(3600) {
            if let Err(e) = state.store.purge_mail_tokens(state.now() - 86_400_000_000).await {
                tracing::warn!(error = %e, "cannot purge expired mail tokens");
            }
            if let Err(e) = state.store.purge_password_resets(state.now()).await {
                tracing::warn!(error = %e, "cannot purge expired set-password links");
            }
            if let Err(e) = state.store.purge_sso_logins(state.now()).await {
                tracing::warn!(error = %e, "cannot purge expired single sign-ons");
            }
        }
        passes += 1;
        match state.store.run_due_transitions(state.now()).await {
            Ok(done) => {
                for t in &done {
                    tracing::info!(request = %t.request_id, from = %t.from, to = %t.to, "scheduled transition");
                }
                state.publish(done);
            }
            Err(e) => tracing::warn!(error = %e, "scheduler pass failed"),
        }
    }
}

/// Runs automatic credential changes as they come due (after check-in, expiry, revocation),
/// one at a time, apart from the transitions so that a slow target delays nothing else.
pub async fn run_credential_changes(state: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = crate::credentials::run_due_changes(&state).await {
            tracing::warn!(code = e.code, message = %e.message, "credential change pass failed");
        }
    }
}
