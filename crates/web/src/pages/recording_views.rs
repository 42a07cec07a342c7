//! Requests to view recordings (R-REQ-12): asking from a request's page, and deciding on the
//! Recording views page (the pending ones the viewer may decide, and the viewer's own).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::with_notice;
use crate::session::{Submitted, Viewer};
use crate::view::{error_page, page, when};
use crate::Web;

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
}

/// Asks to view a session's recording (from its request's page).
pub async fn ask(State(web): State<Web>, Path(id): Path<String>, form: Submitted) -> Response {
    let v = &form.viewer;
    let back = form.text("request").map(|r| format!("/requests/{r}")).unwrap_or_else(|| "/recording-views".into());
    let justification = form.text("justification").unwrap_or_default();
    match portcullis_app::recording_views::request(&web, &v.caller, &id, &justification).await {
        Ok(_) => {
            Redirect::to(&with_notice(&back, "Asked: an approver decides; the recording plays here once approved."))
                .into_response()
        }
        Err(e) => error_page(&web, v, &e, &back),
    }
}

async fn rows(web: &Web, v: &Viewer, list: Vec<portcullis_store::RecordingView>) -> Vec<Value> {
    let mut out = Vec::new();
    for r in list {
        let s = web.store.session(&r.session_id).await.ok();
        let mut target = String::new();
        if let Some(s) = &s {
            if let Some(a) = &s.account_id {
                target = web.store.account(a).await.map(|a| a.name).unwrap_or_default();
            }
            if let Some(a) = &s.asset_id {
                target = format!("{target}@{}", web.store.asset(a).await.map(|a| a.name).unwrap_or_default());
            }
        }
        out.push(json!({
            "id": r.id, "requester": r.requester_name, "justification": r.justification, "state": r.state,
            "asked": when(&v.zone, r.created_at), "until": r.expires_at.map(|t| when(&v.zone, t)),
            "decided_by": r.decided_by_name, "comment": r.comment,
            "session_user": s.as_ref().map(|s| s.username.clone()), "target": target,
            "started": s.as_ref().map(|s| when(&v.zone, s.started_at)),
            "request_id": s.as_ref().and_then(|s| s.request_id.clone()), "session_id": r.session_id,
        }));
    }
    out
}

pub async fn list(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    let pending = match portcullis_app::recording_views::list(&web, &v.caller, false).await {
        Ok(l) => l,
        Err(e) => return error_page(&web, &v, &e, "/requests"),
    };
    let mine = portcullis_app::recording_views::list(&web, &v.caller, true).await.unwrap_or_default();
    let ctx = json!({
        "title": "Recording views",
        "notice": n.done,
        "pending": rows(&web, &v, pending).await,
        "mine": rows(&web, &v, mine).await,
    });
    page(&web, &v, "recording_views.html", ctx)
}

pub async fn decide(State(web): State<Web>, Path((id, verb)): Path<(String, String)>, form: Submitted) -> Response {
    let v = &form.viewer;
    let approve = match verb.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return error_page(&web, v, &portcullis_app::error::AppError::not_found("page"), "/recording-views"),
    };
    match portcullis_app::recording_views::decide(&web, &v.caller, &id, approve, form.text("comment").as_deref()).await
    {
        Ok(r) => {
            let notice = if approve {
                format!("Approved: {} may view the recording for 24 hours.", r.requester_name)
            } else {
                format!("Denied: {} may not view the recording.", r.requester_name)
            };
            Redirect::to(&with_notice("/recording-views", &notice)).into_response()
        }
        Err(e) => error_page(&web, v, &e, "/recording-views"),
    }
}
