//! The RDP recording player's data: the frames' times (JSON), each frame (PNG), and a still of
//! the screen at a moment — from the same decoding as the API (`portcullis_app::screens`).

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::session::Viewer;
use crate::Web;

fn refused(e: &portcullis_app::error::AppError) -> Response {
    let status = match e.kind {
        portcullis_app::error::ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        portcullis_app::error::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::CONFLICT,
    };
    (status, Json(json!({ "code": e.code, "message": e.message }))).into_response()
}

/// `{"frames": [{"index", "at_ms"}], "cut_after_chunk"}`.
pub async fn frames(State(web): State<Web>, v: Viewer, Path(id): Path<String>) -> Response {
    match portcullis_app::screens::frames(&web, &v.caller, &id).await {
        Ok(d) => {
            let frames: Vec<_> =
                d.frames.iter().enumerate().map(|(i, f)| json!({ "index": i, "at_ms": f.at / 1000 })).collect();
            Json(json!({ "frames": frames, "cut_after_chunk": d.cut })).into_response()
        }
        Err(e) => refused(&e),
    }
}

pub async fn frame(State(web): State<Web>, v: Viewer, Path((id, index)): Path<(String, String)>) -> Response {
    let Ok(index) = index.strip_suffix(".png").unwrap_or(&index).parse::<usize>() else {
        return (StatusCode::NOT_FOUND, "no such frame").into_response();
    };
    match portcullis_app::screens::frames(&web, &v.caller, &id).await {
        Ok(d) => match d.frames.get(index) {
            Some(f) => ([(header::CONTENT_TYPE, "image/png")], f.png.clone()).into_response(),
            None => (StatusCode::NOT_FOUND, "no such frame").into_response(),
        },
        Err(e) => refused(&e),
    }
}

#[derive(Deserialize)]
pub struct At {
    /// Seconds since the session started.
    at: f64,
}

pub async fn still(State(web): State<Web>, v: Viewer, Path(id): Path<String>, Query(q): Query<At>) -> Response {
    if !(q.at.is_finite() && q.at >= 0.0 && q.at <= 31_536_000.0) {
        return (StatusCode::UNPROCESSABLE_ENTITY, "at: seconds from the session's start").into_response();
    }
    match portcullis_app::screens::still(&web, &v.caller, &id, (q.at * 1e6) as u64).await {
        Ok(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Err(e) => refused(&e),
    }
}

/// A live RDP session's screen now (PNG), polled by the watch page (opened and audited once).
pub async fn live(State(web): State<Web>, v: Viewer, Path(id): Path<String>) -> Response {
    match portcullis_app::sessions::watch_unaudited(&web, &v.caller, &id).await {
        Ok((_, tap)) => match tap.rdp_screen() {
            Some(Some(png)) => {
                ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")], png).into_response()
            }
            Some(None) => (StatusCode::ACCEPTED, "the screen is not drawn yet").into_response(),
            None => (StatusCode::CONFLICT, "not an RDP session").into_response(),
        },
        Err(e) => refused(&e),
    }
}
