//! The approver's and reviewer's pages: the approval inbox (with bulk decisions), what they
//! approved that is in use (with live sessions, to revoke), the review queue, and recordings
//! for the in-page player.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_app::requests::{self as uc, Queue, QueueFilter};
use serde::Deserialize;
use serde_json::json;

use super::requests::row;
use super::with_notice;
use crate::session::{Submitted, Viewer};
use crate::view::{error_page, message_page, page};
use crate::Web;

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
    /// 1-based; newest first.
    page: Option<u32>,
}

async fn queue_page(web: &Web, v: &Viewer, queue: Queue, title: &str, kind: &str, n: Notice) -> Response {
    let number = n.page.unwrap_or(1).clamp(1, 10_000);
    let per = super::PER_PAGE as i64;
    let f = QueueFilter { limit: per + 1, offset: (i64::from(number) - 1) * per, ..QueueFilter::default() };
    match uc::queue(web, &v.caller, queue, f).await {
        Ok(items) => {
            let more = items.len() > super::PER_PAGE;
            let rows: Vec<_> = items.iter().take(super::PER_PAGE).map(|i| row(v, i)).collect();
            let paging = super::paging(&format!("/{kind}"), number, more);
            page(
                web,
                v,
                "queue.html",
                json!({ "title": title, "kind": kind, "rows": rows, "notice": n.done, "paging": paging }),
            )
        }
        Err(e) => error_page(web, v, &e, "/requests"),
    }
}

/// An approval mail's personal link: for the approver it was sent to (signed in), the request's
/// page, where they decide. Opening it decides nothing.
pub async fn approval_link(State(web): State<Web>, v: Viewer, Path(token): Path<String>) -> Response {
    match portcullis_app::approval_mail::open_link(&web, &v.caller, &token).await {
        Ok(id) => Redirect::to(&format!("/requests/{id}")).into_response(),
        Err(e) => error_page(&web, &v, &e, "/approvals"),
    }
}

pub async fn approvals(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    queue_page(&web, &v, Queue::Approvals, "Waiting for your approval", "approvals", n).await
}

pub async fn approved(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    queue_page(&web, &v, Queue::Approved, "Approved by you, in use", "approved", n).await
}

pub async fn reviews(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    queue_page(&web, &v, Queue::Reviews, "Waiting for your review", "reviews", n).await
}

/// Approve or deny the checked requests at once, with one comment.
pub async fn bulk(State(web): State<Web>, form: Submitted) -> Response {
    let v = &form.viewer;
    let ids = form.all("id");
    if ids.is_empty() {
        return message_page(&web, Some(v), "Nothing chosen", "Tick the requests to decide first.", "/approvals");
    }
    let approve = form.get("decision") == Some("approve");
    match uc::bulk_decide(&web, &v.caller, ids, approve, form.text("comment")).await {
        Ok(outcomes) => {
            let failed: Vec<String> = outcomes
                .iter()
                .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {}", o.id, e.message)))
                .collect();
            let done = outcomes.len() - failed.len();
            let word = if approve { "approved" } else { "denied" };
            let mut notice = format!("{done} request(s) {word}.");
            if !failed.is_empty() {
                notice += &format!(" Not decided: {}", failed.join("; "));
            }
            Redirect::to(&with_notice("/approvals", &notice)).into_response()
        }
        Err(e) => error_page(&web, v, &e, "/approvals"),
    }
}

/// A session's recording as asciicast, for the in-page player: verified first; a damaged
/// recording is refused, a cut one plays up to its cut. Audited like the API's export.
pub async fn cast(State(web): State<Web>, v: Viewer, Path(id): Path<String>) -> Response {
    let id = id.strip_suffix(".cast").unwrap_or(&id).to_owned();
    let rec = match portcullis_app::sessions::recording(&web, &v.caller, &id).await {
        Ok(r) => r,
        Err(e) => return error_page(&web, &v, &e, "/reviews"),
    };
    let started = rec.session.started_at.div_euclid(1_000_000);
    let sid = rec.session.id.clone();
    let exported = tokio::task::spawn_blocking(move || {
        let report = portcullis_recording::verify_allowing_cut(&rec.path, &sid, &rec.key).map_err(|e| e.to_string())?;
        let reader =
            portcullis_recording::Reader::open(&rec.path, &sid, &rec.key).map_err(|e| e.to_string())?.tolerating_cut();
        let mut out = Vec::new();
        portcullis_recording::export_asciicast(reader, started, &mut out).map_err(|e| e.to_string())?;
        Ok::<_, String>((out, (!report.sealed).then_some(report.chunks)))
    })
    .await;
    let verdict = match &exported {
        Ok(Ok((_, cut))) => Ok(*cut),
        Ok(Err(problem)) => Err(problem.as_str()),
        Err(_) => Err("the export failed"),
    };
    let audited = portcullis_app::sessions::audit_export(&web, &v.caller, &id, "asciicast", verdict).await;
    match (exported, audited) {
        (Ok(Ok((body, _))), Ok(())) => ([(header::CONTENT_TYPE, "application/x-asciicast")], body).into_response(),
        (Ok(Err(problem)), _) => {
            (StatusCode::CONFLICT, format!("the recording cannot be played: {problem}")).into_response()
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "the recording could not be exported; see the server log")
            .into_response(),
    }
}
