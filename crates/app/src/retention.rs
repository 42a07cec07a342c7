//! Retention (R-SES-13): sessions whose access policy sets `recording_retention_days` are
//! deleted that long after they end — the recording file, the search index's entries and the
//! session's row — unless a Security Policy Administrator or an Auditor put them under legal
//! hold. The audit keeps that each existed and was deleted (`session.expunge`, with who, what,
//! when), and every hold and release (`session.legal_hold`, `session.legal_hold_release`).

use portcullis_core::role::Role;
use portcullis_store::{Actor, SessionRecord};
use serde_json::json;

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// How often retention runs (and once at start).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Puts a session under legal hold (`reason`) or releases it (`None`): Security Policy
/// Administrators and Auditors.
pub async fn hold(state: &App, caller: &Caller, id: &str, reason: Option<&str>) -> AppResult<SessionRecord> {
    if !(caller.has(Role::SecurityPolicyAdmin) || caller.has(Role::Auditor)) {
        return Err(AppError::forbidden("legal holds are for Security Policy Administrators and Auditors"));
    }
    if let Some(r) = reason {
        let n = r.trim().chars().count();
        if n == 0 || n > 500 || r.chars().any(char::is_control) {
            return Err(AppError::invalid(
                "reason",
                "1 to 500 characters, no control characters (e.g. the case it is kept for)",
            ));
        }
    }
    let (s, _) = crate::sessions::visible(state, caller, id).await?;
    state.store.set_legal_hold(&caller.actor(), state.now(), &s.id, reason.map(str::trim)).await?;
    Ok(s)
}

/// Deletes what retention has expired; returns how many sessions.
pub async fn sweep(state: &App) -> AppResult<u64> {
    let snapshot = state.policies.get(&state.store).await?;
    let now = state.now();
    let mut deleted = 0;
    for policy in snapshot.policies.values() {
        let days = policy.settings.recording_retention_days;
        if days <= 0 {
            continue;
        }
        let before = now - days * 86_400_000_000;
        loop {
            let batch = state.store.sessions_past_retention(&policy.id, before, 200).await?;
            if batch.is_empty() {
                break;
            }
            let mut progressed = false;
            for s in batch {
                if expunge(state, &s, &policy.name, days).await? {
                    progressed = true;
                    deleted += 1;
                }
            }
            if !progressed {
                break;
            }
        }
    }
    Ok(deleted)
}

async fn expunge(state: &App, s: &SessionRecord, policy: &str, days: i64) -> AppResult<bool> {
    let name = |id: &Option<String>, account: bool| {
        let id = id.clone();
        async move {
            match id {
                Some(id) if account => state.store.account(&id).await.map(|a| a.name).ok(),
                Some(id) => state.store.asset(&id).await.map(|a| a.name).ok(),
                None => None,
            }
        }
    };
    let size = match &s.recording {
        Some(f) => tokio::fs::metadata(state.recordings.join(f)).await.map(|m| m.len()).ok(),
        None => None,
    };
    let details = json!({
        "user": s.username, "account": name(&s.account_id, true).await, "asset": name(&s.asset_id, false).await,
        "protocol": s.protocol, "client": s.client_addr, "request_id": s.request_id,
        "started_at": s.started_at, "ended_at": s.ended_at, "recording_bytes": size,
        "policy": policy, "retention_days": days,
    });
    let archived = state.store.archive_key(&s.id).await.ok().flatten().filter(|k| !k.is_empty());
    // The row first (atomically with the hold check), then what it pointed to.
    if !state.store.expunge_session(&Actor::system(), state.now(), &s.id, details).await? {
        return Ok(false);
    }
    if let (Some(archive), Some(key)) = (&state.archive, archived) {
        if let Err(e) = archive.delete(&key).await {
            tracing::error!(session = %s.id, error = %e, "cannot delete an expired recording's archived copy");
        }
    }
    if let Some(ix) = &state.search {
        if let Err(e) = ix.delete_session(&s.id) {
            tracing::error!(session = %s.id, error = %e, "cannot delete a session's search entries");
        }
    }
    if let Some(f) = &s.recording {
        match tokio::fs::remove_file(state.recordings.join(f)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(session = %s.id, error = %e, "cannot delete an expired recording"),
        }
    }
    Ok(true)
}

/// Runs retention at start and every [`SWEEP_EVERY`].
pub async fn run(state: App) {
    loop {
        // One node sweeps at a time (a deletion is also checked in its own transaction).
        if !crate::cluster::lead(&state, "retention", SWEEP_EVERY + std::time::Duration::from_secs(60)).await {
            tokio::time::sleep(SWEEP_EVERY).await;
            continue;
        }
        match sweep(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "retention deleted expired sessions"),
            Err(e) => tracing::error!(error = %e.message, "retention failed"),
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}
