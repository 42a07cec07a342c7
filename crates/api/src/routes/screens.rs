//! RDP recordings as pictures (R-SES-11): the frames of the player, a still of the screen at
//! any second, and the frames as an archive for `portcullis recording export --format frames`
//! (PNG files and an ffmpeg concat list, which `ffmpeg -f concat -i frames.ffconcat out.webm`
//! turns into a video). Access as for any recording; each decode is audited as an export.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_app::screens as uc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, Authed};
use crate::dto::IdPath;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_frames))
        .routes(routes!(get_frame))
        .routes(routes!(get_screen))
        .routes(routes!(live_screen))
}

#[derive(Serialize, ToSchema)]
pub struct FrameDto {
    /// The frame's number (from 0), for `GET …/frames/{index}`.
    index: usize,
    /// Milliseconds since the session started.
    at_ms: u64,
}

#[derive(Serialize, ToSchema)]
pub struct FramesDto {
    frames: Vec<FrameDto>,
    /// When the recording was cut (not sealed): the chunks before the cut, which play.
    cut_after_chunk: Option<u64>,
}

/// The frames of an RDP session's recording: the screen each time it changed, at most two a
/// second.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/frames", tag = "sessions", operation_id = "list_frames",
    params(IdPath), responses((status = 200, description = "The frames' times", body = FramesDto)))]
async fn list_frames(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<FramesDto>> {
    let d = uc::frames(&state, &caller, &p.id).await?;
    let frames = d.frames.iter().enumerate().map(|(index, f)| FrameDto { index, at_ms: f.at / 1000 }).collect();
    Ok(Json(FramesDto { frames, cut_after_chunk: d.cut }))
}

#[derive(Deserialize, IntoParams)]
pub struct FramePath {
    id: String,
    index: usize,
}

/// One frame of an RDP session's recording (PNG).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/frames/{index}", tag = "sessions", operation_id = "get_frame",
    params(FramePath), responses((status = 200, description = "The frame", content_type = "image/png")))]
async fn get_frame(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<FramePath>,
) -> ApiResult<Response> {
    let d = uc::frames(&state, &caller, &p.id).await?;
    let Some(f) = d.frames.get(p.index) else {
        return Err(ApiError::invalid(
            "index",
            format!("the recording has {} frames (0 to {})", d.frames.len(), d.frames.len().saturating_sub(1)),
        ));
    };
    Ok(([(header::CONTENT_TYPE, "image/png")], f.png.clone()).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScreenQuery {
    /// Seconds since the session started (decimals allowed).
    at: f64,
}

/// The screen of an RDP session at a moment (PNG), for a reviewer's still.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/screen", tag = "sessions", operation_id = "get_screen",
    params(IdPath, ScreenQuery), responses((status = 200, description = "The screen", content_type = "image/png")))]
async fn get_screen(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiQuery(q): ApiQuery<ScreenQuery>,
) -> ApiResult<Response> {
    if !(q.at.is_finite() && (0.0..=31_536_000.0).contains(&q.at)) {
        return Err(ApiError::invalid("at", "must be a number of seconds from 0 (the session's start)"));
    }
    let png = uc::still(&state, &caller, &p.id, (q.at * 1e6) as u64).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// A live RDP session's screen now (PNG), for those who may watch it; audited as watching.
/// The first look starts decoding and has the target redraw: ask again a second later for
/// the whole screen (202 while nothing is drawn yet).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/live-screen", tag = "sessions", operation_id = "live_screen",
    params(IdPath), responses((status = 200, description = "The screen now", content_type = "image/png"),
        (status = 202, description = "Not drawn yet; ask again")))]
async fn live_screen(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Response> {
    let (_, tap) = portcullis_app::sessions::watch(&state, &caller, &p.id).await?;
    match tap.rdp_screen() {
        Some(Some(png)) => Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response()),
        Some(None) => Ok((
            axum::http::StatusCode::ACCEPTED,
            Json(serde_json::json!({ "message": "the screen is not drawn yet; ask again in a second" })),
        )
            .into_response()),
        None => Err(ApiError::conflict(
            "not_rdp",
            "this is not an RDP session: watch its terminal (GET /api/v1/sessions/{id}/watch)",
        )),
    }
}

/// The frames as a tar archive: `NNNNNN.png` and `frames.ffconcat` (their durations).
pub(crate) async fn frames_archive(
    state: &AppState,
    caller: &portcullis_app::auth::Caller,
    id: &str,
) -> ApiResult<Response> {
    let d = uc::frames(state, caller, id).await?;
    let body = tokio::task::spawn_blocking(move || {
        let mut tar = tar::Builder::new(Vec::new());
        let mut concat = String::from("ffconcat version 1.0\n");
        let add = |tar: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, data)
        };
        for (i, f) in d.frames.iter().enumerate() {
            let name = format!("{i:06}.png");
            add(&mut tar, &name, &f.png)?;
            let next = d.frames.get(i + 1).map_or(f.at + 1_000_000, |n| n.at);
            concat += &format!("file {name}\nduration {:.3}\n", (next.saturating_sub(f.at)) as f64 / 1e6);
        }
        if let Some(last) = d.frames.len().checked_sub(1) {
            // The concat demuxer takes the last file's duration only when it is listed again.
            concat += &format!("file {last:06}.png\n");
        }
        add(&mut tar, "frames.ffconcat", concat.as_bytes())?;
        tar.into_inner()
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|_| ApiError::internal())?;
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}
