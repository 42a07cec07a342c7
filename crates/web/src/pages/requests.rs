//! The requester's pages: My requests by state with the actions each state allows, the new
//! request form over "what may I request", the per-account outcome, and a request's details
//! (history, sessions, recordings, and the approver's or reviewer's actions).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_app::requests::{self as uc, AccountChoice, NewRequests, OptionFilter, Queue, QueueFilter, QueueItem};
use portcullis_core::request::{allowed_after, Action, RequestState};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{local, with_notice};
use crate::session::{Submitted, Viewer};
use crate::view::{error_page, page, when};
use crate::Web;

#[derive(Deserialize)]
pub struct ListQuery {
    done: Option<String>,
    /// 1-based; newest first.
    page: Option<u32>,
    /// A search hit to play from: the session and the second in its recording.
    session: Option<String>,
    at: Option<f64>,
}

/// The actions a state allows the requester, as (action path, button label).
fn requester_actions(
    state: RequestState,
    ended: Option<portcullis_core::request::EndCause>,
) -> Vec<(&'static str, &'static str)> {
    [
        (Action::Cancel, "cancel", "Cancel"),
        (Action::CheckIn, "checkin", "Check in"),
        (Action::Resubmit, "resubmit", "Resubmit"),
        (Action::Remove, "remove", "Remove"),
    ]
    .into_iter()
    .filter(|(a, _, _)| allowed_after(state, ended, *a))
    .map(|(_, path, label)| (path, label))
    .collect()
}

/// One request as a table row.
pub fn row(v: &Viewer, item: &QueueItem) -> Value {
    let r = &item.view.request;
    let n = &item.names;
    json!({
        "id": r.id,
        "target": format!("{}@{}", n.account.as_deref().unwrap_or("?"), n.asset.as_deref().unwrap_or("?")),
        "requester": n.requester,
        "policy": n.policy,
        "access_type": r.access_type.as_str(),
        "status": item.view.status_text(),
        "state": r.state.as_str(),
        "start": when(&v.zone, r.start_at),
        "end": when(&v.zone, r.end_at),
        "emergency": r.emergency,
        "ticket": r.ticket,
        "reason": r.reason_code,
        "comment": r.comment,
        "live_sessions": item.live_sessions.len(),
        "actions": requester_actions(r.state, r.ended_by)
            .into_iter()
            .map(|(path, label)| json!({ "path": path, "label": label }))
            .collect::<Vec<_>>(),
    })
}

/// The groups of My requests, in the seeds' order.
fn group_of(state: RequestState) -> usize {
    use RequestState as S;
    match state {
        S::PendingApproval => 0,
        S::Approved | S::Available => 1,
        S::Revoked | S::Expired | S::Denied => 2,
        S::Complete | S::PendingReview | S::Reviewed => 3,
        S::Canceled => 4,
    }
}

const GROUPS: [&str; 5] =
    ["Pending", "Approved and available", "Revoked, expired and denied", "Checked in and reviewed", "Canceled"];

pub async fn mine(State(web): State<Web>, v: Viewer, Query(q): Query<ListQuery>) -> Response {
    let number = q.page.unwrap_or(1).clamp(1, 10_000);
    let per = 2 * super::PER_PAGE;
    let f =
        QueueFilter { limit: per as i64 + 1, offset: (i64::from(number) - 1) * per as i64, ..QueueFilter::default() };
    let mut items = match uc::queue(&web, &v.caller, Queue::Mine, f).await {
        Ok(i) => i,
        Err(e) => return error_page(&web, &v, &e, "/"),
    };
    let more = items.len() > per;
    items.truncate(per);
    let mut groups: Vec<Value> = GROUPS.iter().map(|g| json!({ "name": g, "rows": [] })).collect();
    for item in &items {
        // A used request revoked or expired under review belongs with the revoked ones.
        let mut g = group_of(item.view.request.state);
        if item.view.request.state == RequestState::PendingReview
            && matches!(
                item.view.request.ended_by,
                Some(portcullis_core::request::EndCause::Revocation | portcullis_core::request::EndCause::Expiry)
            )
        {
            g = 2;
        }
        if let Some(rows) = groups[g]["rows"].as_array_mut() {
            rows.push(row(&v, item));
        }
    }
    let paging = super::paging("/requests", number, more);
    page(
        &web,
        &v,
        "requests.html",
        json!({ "title": "My requests", "groups": groups, "notice": q.done, "paging": paging }),
    )
}

#[derive(Deserialize)]
pub struct NewQuery {
    search: Option<String>,
}

pub async fn new_form(State(web): State<Web>, v: Viewer, Query(q): Query<NewQuery>) -> Response {
    let search = q.search.filter(|s| !s.trim().is_empty());
    let f = OptionFilter { search: search.clone(), limit: 200, ..OptionFilter::default() };
    let options = match uc::options(&web, &v.caller, f).await {
        Ok(o) => o,
        Err(e) => return error_page(&web, &v, &e, "/requests"),
    };
    let reasons = web.store.reason_codes().await.map(|r| r.into_iter().map(|r| r.name).collect::<Vec<_>>());
    let mut needs = (Vec::new(), Vec::new(), Vec::new());
    let rows: Vec<Value> = options
        .items
        .iter()
        .map(|o| {
            let target = format!("{}@{}", o.account_name, o.asset_name);
            if let Some(t) = &o.terms {
                for (flag, list) in
                    [(t.ticket_required, &mut needs.0), (t.reason_required, &mut needs.1), (t.comment_required, &mut needs.2)]
                {
                    if flag && !list.contains(&t.policy_name) {
                        list.push(t.policy_name.clone());
                    }
                }
            }
            json!({
                "value": format!("{}:{}", o.account_id, o.access_type.as_str()),
                "target": target,
                "asset": o.asset_name,
                "access_type": o.access_type.as_str(),
                "policy": o.terms.as_ref().map(|t| t.policy_name.clone()),
                "approval": o.terms.as_ref().map(|t| if t.auto_approve { "automatic".to_owned() } else { format!("{} approval(s)", t.approvals_required) }),
                "duration": o.terms.as_ref().map(|t| t.default_duration_minutes),
                "max_duration": o.terms.as_ref().map(|t| t.max_duration_minutes),
                "not_now": o.not_now,
                "in_use": o.in_use,
                "emergency_allowed": o.emergency_allowed,
            })
        })
        .collect();
    let ctx = json!({
        "title": "New request",
        "search": search,
        "total": options.total,
        "options": rows,
        "reason_codes": reasons.unwrap_or_default(),
        "ticket_needed_by": needs.0,
        "reason_needed_by": needs.1,
        "comment_needed_by": needs.2,
        "max_assets": uc::MAX_ASSETS,
    });
    page(&web, &v, "new_request.html", ctx)
}

pub async fn create(State(web): State<Web>, form: Submitted) -> Response {
    let v = &form.viewer;
    let accounts: Vec<AccountChoice> = form
        .all("pick")
        .into_iter()
        .filter_map(|p| {
            p.split_once(':').map(|(a, t)| AccountChoice { account_id: a.to_owned(), access_type: t.to_owned() })
        })
        .collect();
    let duration = match form.text("duration_minutes").map(|d| d.parse::<i64>()) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(_)) => {
            let e = portcullis_app::AppError::invalid("duration_minutes", "must be a whole number of minutes");
            return error_page(&web, v, &e, "/requests/new");
        }
    };
    let req = NewRequests {
        accounts,
        emergency: form.get("emergency").is_some(),
        start_at: form.text("start_at"),
        duration_minutes: duration,
        ticket: form.text("ticket"),
        reason_code: form.text("reason_code"),
        comment: form.text("comment"),
    };
    let saved = req.clone();
    let batch = match uc::create(&web, &v.caller, req).await {
        Ok(b) => b,
        Err(e) => return error_page(&web, v, &e, "/requests/new"),
    };
    if let Some(name) = form.text("favorite") {
        if let Err(e) = super::favorites::save(&web, v, &name, &saved).await {
            return error_page(&web, v, &e, "/favorites");
        }
    }
    outcome_page(&web, v, batch).await
}

/// What became of each account of a request.
pub async fn outcome_page(web: &Web, v: &Viewer, batch: uc::Batch) -> Response {
    let ids: Vec<String> = batch.outcomes.iter().map(|o| o.account_id.clone()).collect();
    let names = web.store.names_for(portcullis_store::Named::Account, &ids).await.unwrap_or_default();
    let outcomes: Vec<Value> = batch
        .outcomes
        .iter()
        .map(|o| {
            let target = names.get(&o.account_id).cloned().unwrap_or_else(|| o.account_id.clone());
            match &o.result {
                Ok(view) => json!({ "target": target, "access_type": o.access_type, "ok": true,
                                    "id": view.request.id, "status": view.status_text() }),
                Err(e) => json!({ "target": target, "access_type": o.access_type, "ok": false, "error": e.message }),
            }
        })
        .collect();
    page(web, v, "outcome.html", json!({ "title": "Request sent", "outcomes": outcomes }))
}

pub async fn detail(State(web): State<Web>, v: Viewer, Path(id): Path<String>, Query(q): Query<ListQuery>) -> Response {
    let d = match uc::show(&web, &v.caller, &id).await {
        Ok(d) => d,
        Err(e) => return error_page(&web, &v, &e, "/requests"),
    };
    let rel = d.relation;
    let names = uc::names_of(&web, std::slice::from_ref(&id)).await.unwrap_or_default().pop().unwrap_or_default();
    let sessions =
        portcullis_app::sessions::list(&web, &v.caller, None, Some(id.clone()), 100).await.unwrap_or_default();
    let r = &d.view.request;
    let history: Vec<Value> = d
        .history
        .iter()
        .map(|h| {
            json!({ "at": when(&v.zone, h.at), "who": h.actor_name, "action": h.action.replace('_', " "),
                         "to": h.to_state.replace('_', " "), "comment": h.comment })
        })
        .collect();
    let mut rows = Vec::new();
    for s in &sessions {
        // Viewing may need an approved request (R-REQ-12): the form to ask, or the ask pending.
        let view_needed = portcullis_app::recording_views::check(&web, &v.caller, s).await.is_err();
        let view_pending = view_needed
            && web
                .store
                .recording_views(Some("pending"), Some(&v.caller.user.id), Some(&s.id), 1)
                .await
                .is_ok_and(|p| !p.is_empty());
        rows.push(json!({ "id": s.id, "started": when(&v.zone, s.started_at), "ended": s.ended_at.map(|t| when(&v.zone, t)),
                     "end_reason": s.end_reason, "recorded": s.recording.is_some(), "protocol": s.protocol,
                     "view_needed": view_needed, "view_pending": view_pending,
                     "start_at": q.at.filter(|a| a.is_finite() && *a >= 0.0 && q.session.as_deref() == Some(s.id.as_str())) }));
    }
    let sessions = rows;
    let item = QueueItem { view: d.view.clone(), names: names.clone(), live_sessions: vec![] };
    let mut ctx = json!({
        "title": "Request",
        "notice": q.done,
        "r": row(&v, &item),
        "history": history,
        "sessions": sessions,
        "is_requester": rel.requester,
        "may_decide": rel.approver && !rel.requester && r.state == RequestState::PendingApproval,
        "may_revoke": (rel.approver || rel.admin) && allowed_after(r.state, r.ended_by, Action::Revoke),
        "may_review": rel.reviewer && !rel.requester && r.state == RequestState::PendingReview,
        "may_replay": rel.reviewer || rel.admin || rel.auditor || rel.approver,
    });
    if !rel.requester {
        ctx["r"]["actions"] = json!([]);
    }
    let mut response = page(&web, &v, "request.html", ctx);
    let csp = axum::http::HeaderValue::from_static(crate::CSP_WITH_PLAYER);
    response.headers_mut().insert(axum::http::header::CONTENT_SECURITY_POLICY, csp);
    response
}

/// Every action on one request, from any page: the use case decides who may.
pub async fn act(State(web): State<Web>, Path((id, action)): Path<(String, String)>, form: Submitted) -> Response {
    let v = &form.viewer;
    let back = local(form.get("back"), &format!("/requests/{id}"));
    let comment = form.text("comment");
    let result: Result<String, portcullis_app::AppError> = async {
        Ok(match action.as_str() {
            "approve" | "deny" => {
                let approve = action == "approve";
                // An approver may change the window, in their own local time.
                let at = |field: &str| form.text(field).map(|t| uc::parse_local_or_ts(field, &t, &v.zone)).transpose();
                let (start_at, end_at) = if approve { (at("start_at")?, at("end_at")?) } else { (None, None) };
                let d = uc::Decision { approve, comment, start_at, end_at };
                let view = uc::decide(&web, &v.caller, &id, d).await?;
                format!("{} — the request is {}.", if approve { "Approved" } else { "Denied" }, view.status_text())
            }
            "resubmit" => {
                let batch = uc::resubmit(&web, &v.caller, &id).await?;
                match batch.outcomes.into_iter().next().map(|o| o.result) {
                    Some(Ok(view)) => format!("Submitted again: the new request is {}.", view.status_text()),
                    Some(Err(e)) => return Err(e),
                    None => "Nothing was submitted.".to_owned(),
                }
            }
            other => {
                let (a, done) = match other {
                    "cancel" => (Action::Cancel, "Canceled."),
                    "checkin" => (Action::CheckIn, "Checked in: your access has ended."),
                    "revoke" => (Action::Revoke, "Revoked: the access and its live sessions have ended."),
                    "review" => (Action::Review, "Marked reviewed."),
                    "remove" => (Action::Remove, "Removed from your list (the audit log keeps it)."),
                    _ => return Err(portcullis_app::AppError::not_found("action")),
                };
                uc::act(&web, &v.caller, &id, a, comment.as_deref()).await?;
                done.to_owned()
            }
        })
    }
    .await;
    match result {
        Ok(done) => Redirect::to(&with_notice(&back, &done)).into_response(),
        Err(e) => error_page(&web, v, &e, &back),
    }
}
