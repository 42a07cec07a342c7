//! Watching a session another node holds: its recording, on the directory the nodes share,
//! followed as it is written — about a second behind, since the recorder writes a chunk each
//! second while the session is busy — and published to a tap of this node's own, which the
//! watch pages, the CLI and the API read like a local one. One follower per session per node,
//! while someone watches.

use std::time::{Duration, Instant};

use portcullis_recording::{Event, LiveTap, Reader};
use portcullis_store::SessionRecord;

use crate::error::{AppError, AppResult};
use crate::sessions::OpenRecording;
use crate::state::App;

/// How often the recording is looked at for new chunks.
const POLL: Duration = Duration::from_millis(250);

/// A tap fed from the recording of a session live on another node.
pub async fn tap(state: &App, s: &SessionRecord) -> AppResult<LiveTap> {
    if let Some(tap) = state.live.followed(&s.id) {
        return Ok(tap);
    }
    let node = s.node.clone().unwrap_or_default();
    let elsewhere = || {
        AppError::conflict(
            "session_not_live",
            format!(
                "the session runs on node {node}, and its recording is not on a directory this node shares \
                 (storage.recordings_dir): watch it through node {node}"
            ),
        )
    };
    let file = s.recording.clone().ok_or_else(elsewhere)?;
    let path = state.recordings.join(&file);
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Err(elsewhere());
    }
    let open = crate::sessions::open_recording(state, s.clone()).await?;
    let tap = LiveTap::new();
    state.live.follow(&s.id, tap.clone());
    tokio::spawn(follow(state.clone(), open, tap.clone()));
    Ok(tap)
}

async fn follow(state: App, open: OpenRecording, tap: LiveTap) {
    let started = Instant::now();
    let feeding = tap.clone();
    let end = follow_recording(&state, &open, POLL, move |events| {
        for e in events {
            feeding.publish(e);
        }
        // Nobody watching any more (after a first moment to subscribe): stop.
        feeding.watchers() > 0 || started.elapsed() < Duration::from_secs(10)
    })
    .await;
    match end {
        Ok(FollowEnd::Ended(reason)) => tap.close(&reason),
        Err(e) => tap.close(&format!("the recording cannot be followed: {}", e.message)),
        Ok(_) => {}
    }
    state.live.unfollow(&open.session.id);
}

/// How following a recording ended.
pub(crate) enum FollowEnd {
    /// Read to its final chunk.
    Sealed,
    /// The session ended without its final chunk (its node was lost): the row's reason.
    Ended(String),
    /// The caller asked to stop.
    Stopped,
}

/// Reads the recording of a session another node holds as it is written: every `poll`, the
/// events of the chunks written since go to `on` (called each time, with none if nothing
/// came; `false` stops). Ends when the recording is sealed, or — read once more — when the
/// session's row has ended without it. Shared by watching and by search.
pub(crate) async fn follow_recording(
    state: &App,
    open: &OpenRecording,
    poll: Duration,
    mut on: impl FnMut(&[Event]) -> bool + Send,
) -> AppResult<FollowEnd> {
    let (path, id, key) = (open.path.clone(), open.session.id.clone(), open.key.clone());
    let mut reader = tokio::task::spawn_blocking(move || Reader::open_to_follow(&path, &id, &key))
        .await
        .map_err(|_| AppError::internal())?
        .map_err(|e| AppError::conflict("recording_damaged", e.to_string()))?;
    let mut checked = Instant::now();
    let mut ended: Option<String> = None;
    loop {
        let (back, result) = tokio::task::spawn_blocking(move || {
            let r = reader.poll_more();
            (reader, r)
        })
        .await
        .map_err(|_| AppError::internal())?;
        reader = back;
        let (events, sealed) = result.map_err(|e| AppError::conflict("recording_damaged", e.to_string()))?;
        let go_on = on(&events);
        if sealed {
            return Ok(FollowEnd::Sealed);
        }
        if let Some(reason) = ended {
            return Ok(FollowEnd::Ended(reason));
        }
        if !go_on {
            return Ok(FollowEnd::Stopped);
        }
        if checked.elapsed() > Duration::from_secs(2) {
            checked = Instant::now();
            if let Ok(s) = state.store.session(&open.session.id).await {
                if s.ended_at.is_some() {
                    ended = Some(s.end_reason.unwrap_or_else(|| "the session ended".into()));
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}
