//! Oversight pages: live sessions (to terminate, for approvers and Security Policy
//! Administrators), and the audit log (search and verify, for Auditors).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_store::{AuditQuery, Named};
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

/// The live sessions the viewer may see.
pub async fn live(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    let list = match portcullis_app::sessions::list(&web, &v.caller, Some(true), None, 500).await {
        Ok(l) => l,
        Err(e) => return error_page(&web, &v, &e, "/requests"),
    };
    let accounts: Vec<String> = list.iter().filter_map(|s| s.account_id.clone()).collect();
    let names = web.store.names_for(Named::Account, &accounts).await.unwrap_or_default();
    let rows: Vec<Value> = list
        .iter()
        .map(|s| {
            let target = s.account_id.as_ref().and_then(|a| names.get(a).cloned()).unwrap_or_default();
            json!({ "id": s.id, "user": s.username, "target": target, "protocol": s.protocol,
                    "client": s.client_addr, "started": when(&v.zone, s.started_at), "request": s.request_id })
        })
        .collect();
    page(&web, &v, "sessions.html", json!({ "title": "Live sessions", "rows": rows, "notice": n.done }))
}

pub async fn terminate(State(web): State<Web>, Path(id): Path<String>, form: Submitted) -> Response {
    let v = &form.viewer;
    let reason = form.text("reason");
    match portcullis_app::sessions::terminate(&web, &v.caller, &id, reason.as_deref()).await {
        Ok(_) => Redirect::to(&with_notice("/sessions", "The session was terminated.")).into_response(),
        Err(e) => error_page(&web, v, &e, "/sessions"),
    }
}

#[derive(Deserialize)]
pub struct AuditSearch {
    actor: Option<String>,
    action: Option<String>,
    object: Option<String>,
    after: Option<i64>,
    verify: Option<String>,
}

/// Audit events, newest filters first, in pages of 100; and the chain's verification.
pub async fn audit(State(web): State<Web>, v: Viewer, Query(q): Query<AuditSearch>) -> Response {
    let nonempty = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let query = AuditQuery {
        from: None,
        to: None,
        actor: nonempty(&q.actor),
        action: nonempty(&q.action),
        object_type: None,
        object_id: nonempty(&q.object),
        after_seq: q.after,
        limit: 100,
    };
    let events = match portcullis_app::audit::events(&web, &v.caller, &query).await {
        Ok(e) => e,
        Err(e) => return error_page(&web, &v, &e, "/requests"),
    };
    let verdict = if q.verify.is_some() {
        match portcullis_app::audit::verify(&web, &v.caller).await {
            Ok(r) => Some(match r.broken {
                None => format!("The audit log is intact: {} events checked, up to event {}.", r.checked, r.head_seq),
                Some(b) => format!("The audit log is NOT intact: event {} {}.", b.seq, b.reason.describe()),
            }),
            Err(e) => return error_page(&web, &v, &e, "/audit"),
        }
    } else {
        None
    };
    let next = (events.len() == 100).then(|| events.last().map(|e| e.seq)).flatten();
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({ "seq": e.seq, "at": when(&v.zone, e.at), "actor": e.actor_name, "action": e.action,
                         "object": format!("{} {}", e.object_type, e.object_id), "outcome": e.outcome,
                         "source": e.source, "details": e.details })
        })
        .collect();
    let ctx = json!({
        "title": "Audit log",
        "rows": rows,
        "verdict": verdict,
        "next": next,
        "q": { "actor": q.actor, "action": q.action, "object": q.object },
    });
    page(&web, &v, "audit.html", ctx)
}
