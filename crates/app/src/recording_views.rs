//! Approval to view recordings (R-REQ-12): when a session's access policy says so
//! (`recording_view_approval`), replaying, exporting or searching its recording needs an
//! approved request with a justification, decided by someone else who may replay it. An
//! approval lasts [`VIEW_HOURS`]. Requests, approvals and denials are audited; every export and
//! replay already is (`session.recording_export`).

use portcullis_store::{Actor, RecordingView, SessionRecord};

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// How long an approved view lasts.
pub const VIEW_HOURS: i64 = 24;

/// Whether viewing this session's recording needs an approved request.
pub async fn required(state: &App, s: &SessionRecord) -> AppResult<bool> {
    let Some(request_id) = &s.request_id else { return Ok(false) };
    let Ok(req) = state.store.request(request_id).await else { return Ok(false) };
    let snapshot = state.policies.get(&state.store).await?;
    Ok(snapshot.policy(&req.policy_id).is_some_and(|p| p.settings.recording_view_approval))
}

/// Refuses, saying what to do, unless the caller may view the recording now.
pub async fn check(state: &App, caller: &Caller, s: &SessionRecord) -> AppResult<()> {
    if !required(state, s).await? || state.store.may_view_recording(&caller.user.id, &s.id, state.now()).await? {
        return Ok(());
    }
    Err(AppError::refused(
        "view_approval_required",
        format!(
            "viewing this session's recording needs an approved request with a justification: \
             portcullis recording request-view {} --justification \"…\" (or the web UI's request page); another approver decides",
            s.id
        ),
    ))
}

fn valid_text(field: &str, text: &str, min: usize) -> AppResult<()> {
    let n = text.trim().chars().count();
    if n < min || n > 1000 || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(AppError::invalid(
            field,
            format!("{min} to 1000 characters, no control characters (say why you need to see this session)"),
        ));
    }
    Ok(())
}

/// Asks to view a session's recording.
pub async fn request(state: &App, caller: &Caller, session_id: &str, justification: &str) -> AppResult<RecordingView> {
    valid_text("justification", justification, 10)?;
    let (s, rel) = crate::sessions::visible(state, caller, session_id).await?;
    crate::access::may_replay(&rel)?;
    if !required(state, &s).await? {
        return Err(AppError::conflict(
            "view_approval_not_required",
            "this session's recording can be viewed without approval (its access policy does not ask for it)",
        ));
    }
    if state.store.may_view_recording(&caller.user.id, &s.id, state.now()).await? {
        return Err(AppError::conflict(
            "view_approved",
            "you may already view this recording (an approval is in force)",
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    Ok(state.store.request_recording_view(&caller.actor(), state.now(), &id, &s.id, justification.trim()).await?)
}

/// The caller's own requests (`mine`), or those the caller may decide: pending, of sessions
/// the caller may replay, asked by someone else.
pub async fn list(state: &App, caller: &Caller, mine: bool) -> AppResult<Vec<RecordingView>> {
    if mine {
        return Ok(state.store.recording_views(None, Some(&caller.user.id), None, 500).await?);
    }
    let mut out = Vec::new();
    for v in state.store.recording_views(Some("pending"), None, None, 500).await? {
        if v.requester_id == caller.user.id {
            continue;
        }
        if let Ok((_, rel)) = crate::sessions::visible(state, caller, &v.session_id).await {
            if crate::access::may_replay(&rel).is_ok() {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// Approves or denies a request to view a recording: someone who may replay the session, never
/// the one who asked.
pub async fn decide(
    state: &App,
    caller: &Caller,
    id: &str,
    approve: bool,
    comment: Option<&str>,
) -> AppResult<RecordingView> {
    if let Some(c) = comment {
        valid_text("comment", c, 0)?;
    }
    let v = state.store.recording_view(id).await?;
    let (_, rel) = crate::sessions::visible(state, caller, &v.session_id)
        .await
        .map_err(|_| AppError::not_found("recording view request"))?;
    crate::access::may_replay(&rel)?;
    let now = state.now();
    let actor: Actor = caller.actor();
    Ok(state
        .store
        .decide_recording_view(&actor, now, id, approve, comment.map(str::trim), now + VIEW_HOURS * 3_600_000_000)
        .await?)
}
