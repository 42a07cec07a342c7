//! One module per group of pages.

pub mod access;
pub mod admin;
pub mod auth;
pub mod favorites;
pub mod me;
pub mod oversight;
pub mod recording_views;
pub mod requests;
pub mod screens;
pub mod search;
pub mod sso;
pub mod work;

use axum::response::Redirect;

use crate::session::Viewer;

/// The start page is the viewer's own requests.
pub async fn home(_v: Viewer) -> Redirect {
    Redirect::to("/requests")
}

/// A local path to return to (never another site).
pub fn local(path: Option<&str>, default: &str) -> String {
    match path {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => default.to_owned(),
    }
}

/// `path` with a notice for the page to show once.
pub fn with_notice(path: &str, notice: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}done={}", crate::session::encode(notice))
}

/// Rows per page of a work queue.
pub const PER_PAGE: usize = 100;

/// The page links of a queue: `page` is 1-based; `more` says an older page exists.
pub fn paging(path: &str, page: u32, more: bool) -> serde_json::Value {
    let link = |n: u32| if n <= 1 { path.to_owned() } else { format!("{path}?page={n}") };
    serde_json::json!({
        "page": page,
        "prev": (page > 1).then(|| link(page - 1)),
        "next": more.then(|| link(page + 1)),
    })
}
