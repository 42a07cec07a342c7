//! Proxied sessions (R-SES-1, 11, 15): list, show, terminate; recordings verified and
//! exported (asciicast v2); launch tokens for a request's session.
//!
//! Who: a session is visible to whoever may see its request (requester, approvers,
//! reviewers, Security Policy Administrators, Auditors). Approvers of the request and Security
//! Policy Administrators may terminate it. Reviewers, Security Policy Administrators and
//! Auditors may verify and replay recordings; every export is audited.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use portcullis_app::sessions as uc;
use portcullis_recording::{export_asciicast, export_events, verify_allowing_cut, Reader, VerifyReport};
use portcullis_store::{Named, SessionRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, Authed};
use crate::dto::{ts, IdPath};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::labels::Labels;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions))
        .routes(routes!(get_session))
        .routes(routes!(terminate_session))
        .routes(routes!(verify_recording))
        .routes(routes!(export_recording))
        .routes(routes!(launch_session))
        .routes(routes!(watch_session))
        .routes(routes!(list_waits))
        .routes(routes!(permit_wait))
        .routes(routes!(deny_wait))
}

#[derive(Serialize, ToSchema)]
pub struct SessionDto {
    id: String,
    user_id: String,
    username: String,
    request_id: Option<String>,
    account_id: Option<String>,
    asset_id: Option<String>,
    /// ssh
    protocol: String,
    /// The client's address:port.
    client: String,
    started_at: String,
    ended_at: Option<String>,
    end_reason: Option<String>,
    live: bool,
    /// Client to target.
    bytes_up: i64,
    /// Target to client.
    bytes_down: i64,
    has_recording: bool,
    /// Under legal hold (the reason): retention never deletes it.
    legal_hold: Option<String>,
    /// The Portcullis node that holds (or held) the session.
    node: Option<String>,
    /// The account's name (the session is on ACCOUNT@ASSET).
    account_name: Option<String>,
    asset_name: Option<String>,
}

/// DTOs with the names of their accounts and assets.
async fn named(state: &AppState, list: Vec<SessionRecord>) -> ApiResult<Vec<SessionDto>> {
    let accounts: Vec<String> = list.iter().filter_map(|s| s.account_id.clone()).collect();
    let assets: Vec<String> = list.iter().filter_map(|s| s.asset_id.clone()).collect();
    let labels = Labels::load(state, [(Named::Account, accounts), (Named::Asset, assets)]).await?;
    Ok(list
        .into_iter()
        .map(|s| {
            let account_name = s.account_id.as_deref().and_then(|a| labels.name(Named::Account, a));
            let asset_name = s.asset_id.as_deref().and_then(|a| labels.name(Named::Asset, a));
            SessionDto {
                // The label is ACCOUNT@ASSET; the field holds the account's own name.
                account_name: account_name.map(|n| n.rsplit_once('@').map_or(n.clone(), |(a, _)| a.to_owned())),
                asset_name,
                ..SessionDto::from(s)
            }
        })
        .collect())
}

async fn named_one(state: &AppState, s: SessionRecord) -> ApiResult<SessionDto> {
    Ok(named(state, vec![s]).await?.remove(0))
}

impl From<SessionRecord> for SessionDto {
    fn from(s: SessionRecord) -> Self {
        SessionDto {
            live: s.ended_at.is_none(),
            id: s.id,
            user_id: s.user_id,
            username: s.username,
            request_id: s.request_id,
            account_id: s.account_id,
            asset_id: s.asset_id,
            protocol: s.protocol,
            client: s.client_addr,
            started_at: ts(s.started_at),
            ended_at: s.ended_at.map(ts),
            end_reason: s.end_reason,
            bytes_up: s.bytes_up,
            bytes_down: s.bytes_down,
            has_recording: s.recording.is_some(),
            legal_hold: s.legal_hold,
            node: s.node,
            account_name: None,
            asset_name: None,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionListQuery {
    /// true: only live sessions; false: only ended ones.
    live: Option<bool>,
    request_id: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// Sessions you may see, newest first: all for Security Policy Administrators and Auditors;
/// those of a request you approve or review (with `request_id`); else your own.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", operation_id = "list_sessions",
    params(SessionListQuery), responses((status = 200, description = "Sessions", body = [SessionDto])))]
async fn list_sessions(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiQuery(q): ApiQuery<SessionListQuery>,
) -> ApiResult<Json<Vec<SessionDto>>> {
    let list = uc::list(&state, &caller, q.live, q.request_id, q.limit.unwrap_or(100)).await?;
    Ok(Json(named(&state, list).await?))
}

/// One session.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions", operation_id = "get_session",
    params(IdPath), responses((status = 200, description = "The session", body = SessionDto)))]
async fn get_session(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<SessionDto>> {
    let (s, _) = uc::visible(&state, &caller, &p.id).await?;
    Ok(Json(named_one(&state, s).await?))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TerminateRequest {
    /// Shown to the user; at most 200 characters.
    reason: Option<String>,
}

/// Ends a live session at once (an approver of its request, or a Security Policy
/// Administrator). The user sees the reason.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/terminate", tag = "sessions", operation_id = "terminate_session",
    params(IdPath), request_body = TerminateRequest, responses((status = 200, description = "Terminated", body = SessionDto)))]
async fn terminate_session(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(body): ApiJson<TerminateRequest>,
) -> ApiResult<Json<SessionDto>> {
    let s = uc::terminate(&state, &caller, &p.id, body.reason.as_deref()).await?;
    Ok(Json(named_one(&state, s).await?))
}

#[derive(Serialize, ToSchema)]
pub struct VerifyDto {
    session_id: String,
    /// Every chunk decrypted and authenticated, in order, and the final seal present.
    intact: bool,
    /// `sealed` (intact), `cut` (authentic up to a last whole chunk, then nothing: a server
    /// crash or a truncation) or `damaged` (altered, reordered, from another recording…).
    status: String,
    /// What is wrong, if not intact (e.g. "chunk 3 was altered, removed, reordered…").
    problem: Option<String>,
    /// Whole chunks read (for a cut recording: the chunks before the cut).
    chunks: u64,
    events: u64,
    payload_bytes: u64,
    stored_bytes: u64,
    duration_seconds: f64,
}

/// Verifies a recording: every byte authenticated, chunk order and completeness checked. A
/// recording cut by a crash is told apart from an altered one.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/recording/verify", tag = "sessions", operation_id = "verify_recording",
    params(IdPath), responses((status = 200, description = "The verdict", body = VerifyDto)))]
async fn verify_recording(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<VerifyDto>> {
    let uc::OpenRecording { session: s, path, key } = uc::recording_to_verify(&state, &caller, &p.id).await?;
    let id = s.id.clone();
    let result = tokio::task::spawn_blocking(move || verify_allowing_cut(&path, &id, &key))
        .await
        .map_err(|_| ApiError::internal())?;
    let dto = match result {
        Ok(r) => VerifyDto {
            session_id: s.id.clone(),
            intact: r.sealed,
            status: if r.sealed { "sealed" } else { "cut" }.into(),
            problem: (!r.sealed).then(|| cut_message(&s, &r)),
            chunks: r.chunks,
            events: r.events,
            payload_bytes: r.payload_bytes,
            stored_bytes: r.stored_bytes,
            duration_seconds: r.duration_micros as f64 / 1e6,
        },
        Err(e) => VerifyDto {
            session_id: s.id.clone(),
            intact: false,
            status: "damaged".into(),
            problem: Some(e.to_string()),
            chunks: 0,
            events: 0,
            payload_bytes: 0,
            stored_bytes: 0,
            duration_seconds: 0.0,
        },
    };
    uc::audit_verify(&state, &caller, &s.id, dto.problem.as_deref()).await?;
    Ok(Json(dto))
}

/// "not sealed: cut after chunk N at T …", for a recording without its final chunk.
fn cut_message(s: &SessionRecord, r: &VerifyReport) -> String {
    let at = ts(s.started_at + i64::try_from(r.duration_micros).unwrap_or(0));
    let why = if s.ended_at.is_none() {
        "the session is still running"
    } else {
        "the server stopped during the session, or the file was truncated"
    };
    format!(
        "the recording is not sealed: it was cut after chunk {} (its last event at {at}; {why}); the {} chunks before the cut are authentic and can be played",
        r.chunks, r.chunks
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// asciicast (v2, the default for terminal sessions: for players), events (JSON lines of
    /// every event: input, output, exec commands, file operations, forwards, exit statuses,
    /// the end) or frames (RDP sessions: a tar of PNG frames and an ffmpeg concat list).
    format: Option<String>,
}

/// A `std::io::Write` that streams into the response body.
struct BodyWriter(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>, Vec<u8>);

impl std::io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        if self.1.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.1.is_empty() {
            let chunk = std::mem::take(&mut self.1);
            self.0.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("client went away"))?;
        }
        Ok(())
    }
}

/// Exports a recording as asciicast v2 (plays with `asciinema play`), verifying it as it
/// goes: a tampered recording ends the stream early with an error line. Audited.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/recording", tag = "sessions", operation_id = "export_recording",
    params(IdPath, ExportQuery), responses((status = 200, description = "asciicast v2, or JSON lines of events", content((String = "application/x-asciicast"), (String = "application/x-ndjson"), (String = "application/x-tar")))))]
async fn export_recording(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let events = match q.format.as_deref() {
        None | Some("asciicast") => false,
        Some("events") => true,
        Some("frames") => return crate::routes::screens::frames_archive(&state, &caller, &p.id).await,
        Some(_) => return Err(ApiError::invalid("format", "must be asciicast, events or frames")),
    };
    let uc::OpenRecording { session: s, path, key } = uc::recording(&state, &caller, &p.id).await?;
    if s.protocol == "rdp" && !events {
        return Err(ApiError::invalid(
            "format",
            "this is an RDP session: export it as frames (PNG pictures; portcullis recording export ID --format frames) or events",
        ));
    }
    let format = if events { "events" } else { "asciicast" };
    // Verified whole before a byte is sent: a damaged recording is an error the client sees
    // (and an audited failure), never a stream that stops halfway. A cut one exports up to
    // its cut, and says so in a header.
    let (check_path, check_key, sid) = (path.clone(), key.clone(), s.id.clone());
    let checked = tokio::task::spawn_blocking(move || verify_allowing_cut(&check_path, &sid, &check_key))
        .await
        .map_err(|_| ApiError::internal())?;
    let report = match checked {
        Ok(r) => r,
        Err(e) => {
            let message = format!("the recording cannot be exported: {e}; nothing was exported");
            uc::audit_export(&state, &caller, &s.id, format, Err(&message)).await?;
            return Err(ApiError::conflict("recording_damaged", message));
        }
    };
    let cut = (!report.sealed).then_some(report.chunks);
    let reader = Reader::open(&path, &s.id, &key)
        .map_err(|e| ApiError::conflict("recording_damaged", e.to_string()))?
        .tolerating_cut();
    uc::audit_export(&state, &caller, &s.id, format, Ok(cut)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let started = s.started_at.div_euclid(1_000_000);
    tokio::task::spawn_blocking(move || {
        let mut w = BodyWriter(tx.clone(), Vec::new());
        let result = if events { export_events(reader, &mut w) } else { export_asciicast(reader, started, &mut w) };
        let _ = std::io::Write::flush(&mut w);
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, if events { "application/x-ndjson" } else { "application/x-asciicast" });
    if let Some(n) = cut {
        // The number of whole chunks exported before the cut.
        response = response.header("x-recording-cut-after-chunk", n.to_string());
    }
    response.body(Body::from_stream(stream)).map_err(|_| ApiError::internal())
}

#[derive(Serialize, ToSchema)]
pub struct LaunchDto {
    /// One-time token (valid once, until the request's access ends, for you only).
    token: String,
    expires_at: String,
    /// SSH or RDP: which proxy the token is for.
    access_type: String,
    /// Ready-to-paste command lines (SSH requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sftp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plink: Option<String>,
    /// The FreeRDP command line (RDP requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    freerdp: Option<String>,
    /// An `.rdp` file's text for mstsc and other clients (RDP requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    rdp_file: Option<String>,
    /// The inband form, for clients that prompt for a password (your Portcullis password).
    inband_user: String,
}

/// Start session: a one-time launch token for an available SSH or RDP request, with command
/// lines for `ssh`, `scp`, `sftp` and `plink`, or for FreeRDP and an `.rdp` file (the requester
/// only).
#[utoipa::path(post, path = "/api/v1/requests/{id}/launch", tag = "sessions", operation_id = "launch_session",
    params(IdPath), responses((status = 200, description = "Launch token and commands", body = LaunchDto)))]
async fn launch_session(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Json<LaunchDto>> {
    let l = uc::launch(&state, &caller, &p.id).await?;
    let (token, expires_at, access_type) = (l.token.to_string(), ts(l.expires_at), l.access_type.as_str().to_owned());
    if l.access_type == portcullis_core::policy::AccessType::Rdp {
        let r = l.rdp(&state.rdp_host, &caller.user.username);
        return Ok(Json(LaunchDto {
            token,
            expires_at,
            access_type,
            ssh: None,
            scp: None,
            sftp: None,
            plink: None,
            freerdp: Some(r.freerdp),
            rdp_file: Some(r.rdp_file),
            inband_user: r.inband_user,
        }));
    }
    let c = l.commands(&state.ssh_host, &caller.user.username);
    Ok(Json(LaunchDto {
        token,
        expires_at,
        access_type,
        ssh: Some(c.ssh),
        scp: Some(c.scp),
        sftp: Some(c.sftp),
        plink: Some(c.plink),
        freerdp: None,
        rdp_file: None,
        inband_user: c.inband_user,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct WaitDto {
    /// The waiting id (`portcullis session permit ID`).
    id: String,
    /// `gateway_authentication` (the user confirms) or `four_eyes` (an authorizer permits).
    kind: String,
    username: String,
    /// ACCOUNT@ASSET.
    target: String,
    client: String,
    connection_policy: String,
    since: String,
    /// When the connection stops waiting and is refused.
    until: String,
    /// Whether you may decide it.
    yours_to_decide: bool,
}

/// Connections waiting for a confirmation (yours) or an authorizer (those you may authorize);
/// Security Policy Administrators and Auditors see all.
#[utoipa::path(get, path = "/api/v1/session-waits", tag = "sessions", operation_id = "list_session_waits",
    responses((status = 200, description = "Waiting connections, oldest first", body = [WaitDto])))]
async fn list_waits(State(state): State<AppState>, caller: Authed<AnyUser>) -> ApiResult<Json<Vec<WaitDto>>> {
    let list = portcullis_app::waiting::list(&state, &caller).await?;
    Ok(Json(
        list.into_iter()
            .map(|(w, may)| WaitDto {
                id: w.id,
                kind: w.kind.as_str().into(),
                username: w.username,
                target: w.target,
                client: w.client,
                connection_policy: w.connection_policy,
                since: ts(w.since),
                until: ts(w.until),
                yours_to_decide: may,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct WaitDecision {
    /// Shown to the user when denied; at most 200 characters.
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WaitDecided {
    id: String,
    kind: String,
    username: String,
    target: String,
    /// `permitted` or `denied`.
    decision: String,
}

/// Lets a waiting connection go on: the user confirms their own connection (gateway
/// authentication), or an authorizer permits someone else's session (four-eyes).
#[utoipa::path(post, path = "/api/v1/session-waits/{id}/permit", tag = "sessions", operation_id = "permit_session_wait",
    params(IdPath), request_body = WaitDecision, responses((status = 200, description = "Permitted", body = WaitDecided)))]
async fn permit_wait(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(body): ApiJson<WaitDecision>,
) -> ApiResult<Json<WaitDecided>> {
    decided(portcullis_app::waiting::decide(&state, &caller, &p.id, true, body.reason.as_deref()).await?, "permitted")
}

/// Refuses a waiting connection; the user sees who refused it and why.
#[utoipa::path(post, path = "/api/v1/session-waits/{id}/deny", tag = "sessions", operation_id = "deny_session_wait",
    params(IdPath), request_body = WaitDecision, responses((status = 200, description = "Denied", body = WaitDecided)))]
async fn deny_wait(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(body): ApiJson<WaitDecision>,
) -> ApiResult<Json<WaitDecided>> {
    decided(portcullis_app::waiting::decide(&state, &caller, &p.id, false, body.reason.as_deref()).await?, "denied")
}

fn decided(w: portcullis_app::waiting::Wait, decision: &str) -> ApiResult<Json<WaitDecided>> {
    Ok(Json(WaitDecided {
        id: w.id,
        kind: w.kind.as_str().into(),
        username: w.username,
        target: w.target,
        decision: decision.into(),
    }))
}

/// A live session's terminal output as it happens (read-only): the recent screen first, then
/// every output byte, then a closing line with why the session ended. Raw terminal bytes
/// (`portcullis session watch ID` writes them to the terminal). Watching is audited.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/live", tag = "sessions", operation_id = "watch_session",
    params(IdPath), responses((status = 200, description = "The terminal output stream", content_type = "application/octet-stream")))]
async fn watch_session(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiPath(p): ApiPath<IdPath>,
) -> ApiResult<Response> {
    use portcullis_recording::LiveFrame;
    use tokio::sync::broadcast::error::RecvError;
    let (_, tap) = uc::watch(&state, &caller, &p.id).await?;
    let view = tap.watch();
    let first = bytes::Bytes::from(view.backlog.clone());
    let ended = view.ended.clone();
    let stream = futures_util::stream::unfold((Some(first), Some(view), ended), |(first, view, ended)| async move {
        if let Some(b) = first {
            return Some((Ok::<_, std::convert::Infallible>(b), (None, view, ended)));
        }
        if let Some(reason) = ended {
            let line = format!("\r\n[Portcullis: session ended: {reason}]\r\n");
            return Some((Ok(bytes::Bytes::from(line)), (None, None, None)));
        }
        let mut view = view?;
        loop {
            match view.frames.recv().await {
                Ok(LiveFrame::Output { data, .. }) => return Some((Ok(data), (None, Some(view), None))),
                Ok(LiveFrame::Resize { .. }) => {}
                Ok(LiveFrame::End { reason }) => {
                    let line = format!("\r\n[Portcullis: session ended: {reason}]\r\n");
                    return Some((Ok(bytes::Bytes::from(line)), (None, None, None)));
                }
                Err(RecvError::Lagged(n)) => {
                    let line = format!("\r\n[Portcullis: {n} output chunks skipped: the watcher fell behind]\r\n");
                    return Some((Ok(bytes::Bytes::from(line)), (None, Some(view), None)));
                }
                Err(RecvError::Closed) => {
                    let line = "\r\n[Portcullis: session ended]\r\n".to_owned();
                    return Some((Ok(bytes::Bytes::from(line)), (None, None, None)));
                }
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(stream))
        .map_err(|_| ApiError::internal())
}
