//! Watching a session another node holds: its recording, on the directory the nodes share,
//! followed as it is written — about a second behind, since the recorder writes a chunk each
//! second while the session is busy — and published to a tap of this node's own, which the
//! watch pages, the CLI and the API read like a local one. One follower per session per node,
//! while someone watches.

use std::time::{Duration, Instant};

use portcullis_recording::{LiveTap, Reader};
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
    let reader = {
        let (path, id, key) = (open.path.clone(), open.session.id.clone(), open.key.clone());
        tokio::task::spawn_blocking(move || Reader::open_to_follow(&path, &id, &key))
            .await
            .map_err(|_| AppError::internal())?
            .map_err(|e| AppError::conflict("recording_damaged", e.to_string()))?
    };
    let tap = LiveTap::new();
    state.live.follow(&s.id, tap.clone());
    tokio::spawn(follow(state.clone(), open, reader, tap.clone()));
    Ok(tap)
}

async fn follow(state: App, open: OpenRecording, mut reader: Reader<std::io::BufReader<std::fs::File>>, tap: LiveTap) {
    let id = open.session.id.clone();
    let started = Instant::now();
    let mut checked = Instant::now();
    loop {
        let polled = tokio::task::spawn_blocking(move || {
            let r = reader.poll_more();
            (reader, r)
        })
        .await;
        let Ok((back, result)) = polled else { break };
        reader = back;
        match result {
            Ok((events, sealed)) => {
                for e in &events {
                    tap.publish(e);
                }
                if sealed {
                    break;
                }
            }
            Err(e) => {
                tap.close(&format!("the recording cannot be followed: {e}"));
                break;
            }
        }
        // Nobody watching any more (after a first moment to subscribe): stop.
        if tap.watchers() == 0 && started.elapsed() > Duration::from_secs(10) {
            break;
        }
        // Ended without its final chunk (its node was lost): the row says why.
        if checked.elapsed() > Duration::from_secs(2) {
            checked = Instant::now();
            if let Ok(s) = state.store.session(&id).await {
                if s.ended_at.is_some() {
                    tap.close(s.end_reason.as_deref().unwrap_or("the session ended"));
                    break;
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
    state.live.unfollow(&id);
}
