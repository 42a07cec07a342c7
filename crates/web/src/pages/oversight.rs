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
                    "client": s.client_addr, "started": when(&v.zone, s.started_at), "request": s.request_id,
                    "node": s.node })
        })
        .collect();
    // With several nodes (a session held by another than this one), each row says which.
    let several = list.iter().any(|s| s.node.as_deref().is_some_and(|n| n != &*web.node));
    // Connections waiting for the viewer: their own to confirm, others' to authorize.
    let waits: Vec<Value> = portcullis_app::waiting::list(&web, &v.caller)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(w, may)| {
            let what = match w.kind {
                portcullis_app::waiting::WaitKind::Gateway => "waits for its user to confirm it",
                portcullis_app::waiting::WaitKind::FourEyes => "waits for an authorizer",
            };
            json!({ "id": w.id, "user": w.username, "target": w.target, "client": w.client, "what": what,
                    "policy": w.connection_policy, "until": when(&v.zone, w.until), "may": may })
        })
        .collect();
    let ctx = json!({ "title": "Live sessions", "rows": rows, "waits": waits, "notice": n.done, "several": several });
    page(&web, &v, "sessions.html", ctx)
}

/// Permits (confirms) or denies a waiting connection.
pub async fn decide_wait(
    State(web): State<Web>,
    Path((id, verb)): Path<(String, String)>,
    form: Submitted,
) -> Response {
    let v = &form.viewer;
    let permit = match verb.as_str() {
        "permit" => true,
        "deny" => false,
        _ => return Redirect::to("/sessions").into_response(),
    };
    let reason = form.text("reason");
    match portcullis_app::waiting::decide(&web, &v.caller, &id, permit, reason.as_deref()).await {
        Ok(w) => {
            let done = if permit {
                format!("{}'s connection to {} goes on.", w.username, w.target)
            } else {
                format!("{}'s connection to {} was refused.", w.username, w.target)
            };
            Redirect::to(&with_notice("/sessions", &done)).into_response()
        }
        Err(e) => error_page(&web, v, &e, "/sessions"),
    }
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

/// Watching a live session: the page (the player, and the terminate form for those who may).
pub async fn watch(State(web): State<Web>, v: Viewer, Path(id): Path<String>) -> Response {
    let checked = async {
        let (s, rel) = portcullis_app::sessions::visible(&web, &v.caller, &id).await?;
        portcullis_app::access::may_watch(&rel)?;
        Ok::<_, portcullis_app::AppError>((s, portcullis_app::access::may_terminate(&rel).is_ok()))
    }
    .await;
    let (s, may_terminate) = match checked {
        Ok(x) => x,
        Err(e) => return error_page(&web, &v, &e, "/sessions"),
    };
    let target = match &s.account_id {
        Some(a) => web.store.names_for(Named::Account, std::slice::from_ref(a)).await.unwrap_or_default().remove(a),
        None => None,
    }
    .unwrap_or_default();
    if s.protocol == "rdp" && s.ended_at.is_none() {
        // The screen is polled as pictures: the watching is audited here, once.
        if let Err(e) = portcullis_app::sessions::watch(&web, &v.caller, &id).await {
            return error_page(&web, &v, &e, "/sessions");
        }
    }
    let ctx = json!({
        "title": format!("Watching {} on {}", s.username, target),
        "s": { "id": s.id, "user": s.username, "target": target, "client": s.client_addr, "protocol": s.protocol,
               "started": when(&v.zone, s.started_at), "request": s.request_id,
               "ended": s.ended_at.map(|t| when(&v.zone, t)) },
        "may_terminate": may_terminate,
    });
    let mut response = page(&web, &v, "watch.html", ctx);
    let csp = axum::http::HeaderValue::from_static(crate::CSP_WITH_PLAYER);
    response.headers_mut().insert(axum::http::header::CONTENT_SECURITY_POLICY, csp);
    response
}

/// The live stream a watch page's player reads (server-sent events in the form
/// asciinema-player's `eventsource` driver takes): first the screen as it is (`init`: the
/// recent output), then each output and resize as the recorder takes it, then `done`.
pub async fn live_stream(State(web): State<Web>, v: Viewer, Path(id): Path<String>) -> Response {
    use axum::response::sse::{KeepAlive, Sse};
    match portcullis_app::sessions::watch(&web, &v.caller, &id).await {
        Ok((_, tap)) => Sse::new(live::frames(tap)).keep_alive(KeepAlive::default()).into_response(),
        Err(e) => {
            let status = match e.kind {
                portcullis_app::ErrorKind::Forbidden => axum::http::StatusCode::FORBIDDEN,
                portcullis_app::ErrorKind::NotFound => axum::http::StatusCode::NOT_FOUND,
                _ => axum::http::StatusCode::CONFLICT,
            };
            (status, e.message).into_response()
        }
    }
}

mod live {
    use std::convert::Infallible;

    use axum::response::sse::Event;
    use futures_util::Stream;
    use portcullis_recording::{LiveFrame, LiveTap, LiveView};
    use serde_json::json;
    use tokio::sync::broadcast::error::RecvError;

    /// Output as text; a UTF-8 character split between two frames is held until it is whole.
    #[derive(Default)]
    struct Text {
        carry: Vec<u8>,
    }

    impl Text {
        fn take(&mut self, data: &[u8]) -> String {
            self.carry.extend_from_slice(data);
            let keep = match std::str::from_utf8(&self.carry) {
                Ok(_) => 0,
                // An incomplete character at the end: keep it for the next frame.
                Err(e) if e.error_len().is_none() => self.carry.len() - e.valid_up_to(),
                Err(_) => 0,
            };
            let whole = self.carry.len() - keep;
            let text = String::from_utf8_lossy(&self.carry[..whole]).into_owned();
            self.carry.drain(..whole);
            text
        }
    }

    fn secs(at: u64) -> f64 {
        at as f64 / 1_000_000.0
    }

    fn start(view: &LiveView) -> Event {
        let init = String::from_utf8_lossy(&view.backlog);
        Event::default()
            .data(json!({ "cols": view.cols, "rows": view.rows, "time": secs(view.at), "init": init }).to_string())
    }

    enum Step {
        Start(LiveView),
        Frames(LiveView),
        Done,
    }

    pub fn frames(tap: LiveTap) -> impl Stream<Item = Result<Event, Infallible>> {
        let first = Step::Start(tap.watch());
        futures_util::stream::unfold((first, tap, Text::default()), |(step, tap, mut text)| async move {
            match step {
                Step::Start(view) => {
                    let event = start(&view);
                    let next = if view.ended.is_some() { Step::Done } else { Step::Frames(view) };
                    Some((Ok(event), (next, tap, text)))
                }
                Step::Frames(mut view) => match view.frames.recv().await {
                    Ok(LiveFrame::Output { at, data }) => {
                        let event = Event::default().data(json!([secs(at), "o", text.take(&data)]).to_string());
                        Some((Ok(event), (Step::Frames(view), tap, text)))
                    }
                    Ok(LiveFrame::Resize { at, cols, rows }) => {
                        let event = Event::default().data(json!([secs(at), "r", format!("{cols}x{rows}")]).to_string());
                        Some((Ok(event), (Step::Frames(view), tap, text)))
                    }
                    Ok(LiveFrame::End { reason }) => {
                        let event = Event::default().event("done").data(reason);
                        Some((Ok(event), (Step::Done, tap, text)))
                    }
                    // Fell behind: draw the screen afresh.
                    Err(RecvError::Lagged(_)) => {
                        let view = tap.watch();
                        Some((Ok(start(&view)), (Step::Frames(view), tap, Text::default())))
                    }
                    Err(RecvError::Closed) => {
                        Some((Ok(Event::default().event("done").data("ended")), (Step::Done, tap, text)))
                    }
                },
                Step::Done => None,
            }
        })
    }

    #[cfg(test)]
    mod tests {
        use super::Text;

        #[test]
        fn a_character_split_between_frames_is_sent_whole() {
            let mut t = Text::default();
            let snow = "☃".as_bytes();
            assert_eq!(t.take(&[b'a', snow[0]]), "a");
            assert_eq!(t.take(&snow[1..]), "☃");
            assert_eq!(t.take(&[0xff, b'b']), "\u{fffd}b");
        }
    }
}
