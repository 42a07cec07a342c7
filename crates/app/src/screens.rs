//! What a reviewer sees of an RDP recording: its frames (decoded once, kept for the last few
//! recordings asked for) and a still of the screen at any second. Access as for any recording
//! (`sessions::recording`); a damaged recording is refused, a cut one shows up to its cut.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use portcullis_recording::screen::{self, Frame};
use portcullis_recording::{verify_allowing_cut, Reader};

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::sessions::OpenRecording;
use crate::state::App;

/// A frame at most this often (µs): two a second.
const INTERVAL: u64 = 500_000;
/// Decoded recordings kept.
const KEPT: usize = 4;

/// A decoded recording.
pub struct Decoded {
    pub frames: Vec<Frame>,
    /// The number of chunks before a cut, when the recording was cut.
    pub cut: Option<u64>,
}

#[derive(Default)]
pub struct Screens {
    kept: Mutex<VecDeque<(String, Arc<Decoded>)>>,
}

/// The recording of an RDP session, opened for `caller`.
async fn open_rdp(state: &App, caller: &Caller, id: &str) -> AppResult<OpenRecording> {
    let rec = crate::sessions::recording(state, caller, id).await?;
    if rec.session.protocol != "rdp" {
        return Err(AppError::conflict(
            "not_rdp",
            format!(
                "session {id} is a {} session: its recording is a terminal, exported as asciicast",
                rec.session.protocol
            ),
        ));
    }
    Ok(rec)
}

fn damaged(e: impl std::fmt::Display) -> AppError {
    AppError::conflict("recording_damaged", format!("the recording cannot be played: {e}"))
}

/// The recording's frames, decoded now or earlier. Audited as an export (`frames`) when
/// decoded.
pub async fn frames(state: &App, caller: &Caller, id: &str) -> AppResult<Arc<Decoded>> {
    let rec = open_rdp(state, caller, id).await?;
    if let Some(d) = state.screens.kept.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|(k, _)| k == id) {
        return Ok(d.1.clone());
    }
    let sid = rec.session.id.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let report = verify_allowing_cut(&rec.path, &sid, &rec.key).map_err(|e| e.to_string())?;
        let reader = Reader::open(&rec.path, &sid, &rec.key).map_err(|e| e.to_string())?.tolerating_cut();
        let mut frames = Vec::new();
        screen::frames(reader, INTERVAL, |f| {
            frames.push(f);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(Decoded { frames, cut: (!report.sealed).then_some(report.chunks) })
    })
    .await
    .map_err(|_| AppError::internal())?;
    let verdict = match &decoded {
        Ok(d) => Ok(d.cut),
        Err(problem) => Err(problem.as_str()),
    };
    crate::sessions::audit_export(state, caller, id, "frames", verdict).await?;
    let decoded = Arc::new(decoded.map_err(damaged)?);
    let mut kept = state.screens.kept.lock().unwrap_or_else(|p| p.into_inner());
    kept.push_back((id.to_owned(), decoded.clone()));
    while kept.len() > KEPT {
        kept.pop_front();
    }
    Ok(decoded)
}

/// The screen `at` µs into the recording, as PNG. Audited as an export (`still`).
pub async fn still(state: &App, caller: &Caller, id: &str, at: u64) -> AppResult<Vec<u8>> {
    let rec = open_rdp(state, caller, id).await?;
    let sid = rec.session.id.clone();
    let png = tokio::task::spawn_blocking(move || {
        verify_allowing_cut(&rec.path, &sid, &rec.key).map_err(|e| e.to_string())?;
        let reader = Reader::open(&rec.path, &sid, &rec.key).map_err(|e| e.to_string())?.tolerating_cut();
        screen::still(reader, at).map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| AppError::internal())?;
    let verdict = match &png {
        Ok(_) => Ok(None),
        Err(problem) => Err(problem.as_str()),
    };
    crate::sessions::audit_export(state, caller, id, "still", verdict).await?;
    png.map_err(damaged)?.ok_or_else(|| {
        AppError::conflict(
            "nothing_shown",
            format!("nothing was on the screen {:.1} s into the session", at as f64 / 1e6),
        )
    })
}
