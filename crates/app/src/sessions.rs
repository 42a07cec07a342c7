//! Sessions as use cases: the live registry of this node, who may see which session, listing,
//! terminating, opening a recording (verify, export) and one-time launch tokens. Protocol
//! proxies register their sessions here; front ends end them through here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use portcullis_core::policy::AccessType;
use portcullis_core::request::RequestState;
use portcullis_recording::{LiveTap, RecordingKey};
use portcullis_store::{NewEvent, Outcome, SessionQuery, SessionRecord};
use portcullis_vault::{open, SecretContext};
use serde_json::json;

use crate::access::{self, Relation};
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// Live proxied sessions on this node, so that any front end can end them.
#[derive(Default)]
pub struct LiveSessions {
    inner: Mutex<HashMap<String, LiveSession>>,
    /// Sessions of other nodes followed from their recordings for watchers here.
    followed: Mutex<HashMap<String, portcullis_recording::LiveTap>>,
}

/// A live session's handle: send a reason to end it.
#[derive(Clone)]
pub struct LiveSession {
    pub request_id: String,
    pub user_id: String,
    pub kill: tokio::sync::mpsc::UnboundedSender<String>,
    /// What the recorder takes, for live watchers.
    pub tap: portcullis_recording::LiveTap,
}

impl LiveSessions {
    pub fn register(&self, id: &str, session: LiveSession) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), session);
    }

    pub fn remove(&self, id: &str) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Asks a live session to end; `false` if it is not live here.
    pub fn terminate(&self, id: &str, reason: &str) -> bool {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        s.is_some_and(|s| s.kill.send(reason.to_owned()).is_ok())
    }

    fn tap(&self, id: &str) -> Option<portcullis_recording::LiveTap> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).get(id).map(|s| s.tap.clone())
    }

    /// Asks every live session of a user to end; how many were asked.
    pub fn terminate_user(&self, user_id: &str, reason: &str) -> usize {
        let sessions: Vec<LiveSession> = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.user_id == user_id)
            .cloned()
            .collect();
        sessions.iter().filter(|s| s.kill.send(reason.to_owned()).is_ok()).count()
    }

    /// Asks every live session here to end; how many were asked.
    pub fn terminate_all(&self, reason: &str) -> usize {
        let sessions: Vec<LiveSession> =
            self.inner.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        sessions.iter().filter(|s| s.kill.send(reason.to_owned()).is_ok()).count()
    }

    /// Whether a session is live on this node.
    pub fn holds(&self, id: &str) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).contains_key(id)
    }

    /// The tap of a session of another node this node follows, if any.
    pub fn followed(&self, id: &str) -> Option<portcullis_recording::LiveTap> {
        self.followed.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    pub fn follow(&self, id: &str, tap: portcullis_recording::LiveTap) {
        self.followed.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), tap);
    }

    pub fn unfollow(&self, id: &str) {
        self.followed.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// The users with live sessions here.
    pub fn users(&self) -> Vec<String> {
        let mut users: Vec<String> =
            self.inner.lock().unwrap_or_else(|p| p.into_inner()).values().map(|s| s.user_id.clone()).collect();
        users.sort();
        users.dedup();
        users
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Loads a session and the caller's relation to its request; "not found" if the caller may
/// not see it (their own sessions, and those of requests they may see).
pub async fn visible(state: &App, caller: &Caller, id: &str) -> AppResult<(SessionRecord, Relation)> {
    let s = state.store.session(id).await?;
    let own = s.user_id == caller.user.id;
    let rel = match &s.request_id {
        Some(r) => match state.store.request(r).await {
            Ok(req) => Some(access::relation(&*state.policies.get(&state.store).await?, caller, &req)),
            Err(_) => None,
        },
        None => None,
    };
    let mut rel = rel.unwrap_or(Relation { requester: own, ..Relation::of_roles(caller) });
    // Whoever permitted a four-eyes session may watch and terminate it, like an approver.
    rel.approver |= state.waiting.is_authorizer(&s.id, &caller.user.id);
    if !(own || rel.any()) {
        return Err(AppError::not_found("session"));
    }
    Ok((s, rel))
}

/// Sessions the caller may see, newest first: all for Security Policy Administrators and
/// Auditors; those of a request they approve or review (with `request_id`); else their own.
pub async fn list(
    state: &App,
    caller: &Caller,
    live: Option<bool>,
    request_id: Option<String>,
    limit: i64,
) -> AppResult<Vec<SessionRecord>> {
    if !(1..=1000).contains(&limit) {
        return Err(AppError::invalid("limit", "must be 1 to 1000"));
    }
    let mut everyone = access::sees_everything(caller);
    if let Some(r) = &request_id {
        // Approvers and reviewers see the sessions of requests they can see.
        let (_, rel) = crate::requests::relation_to(state, caller, r).await?;
        everyone |= rel.approver || rel.reviewer || rel.admin || rel.auditor;
    }
    let query =
        SessionQuery { live, request_id, user_id: (!everyone).then(|| caller.user.id.clone()), node: None, limit };
    Ok(state.store.sessions(&query).await?)
}

/// Ends a live session at once (an approver of its request, or a Security Policy
/// Administrator); the user sees the reason. Returns the session as it ended.
pub async fn terminate(state: &App, caller: &Caller, id: &str, reason: Option<&str>) -> AppResult<SessionRecord> {
    if reason.is_some_and(|r| r.len() > 200 || r.chars().any(char::is_control)) {
        return Err(AppError::invalid("reason", "at most 200 characters, no control characters"));
    }
    let (s, rel) = visible(state, caller, id).await?;
    access::may_terminate(&rel)?;
    if s.ended_at.is_some() {
        return Err(AppError::conflict("session_ended", "the session has already ended"));
    }
    let reason =
        format!("terminated by {}{}", caller.user.username, reason.map(|r| format!(": {r}")).unwrap_or_default());
    state
        .store
        .record(
            &caller.actor(),
            state.now(),
            NewEvent::success("session.terminate", "session", &s.id).with_details(json!({ "reason": reason })),
        )
        .await?;
    if !state.live.terminate(&s.id, &reason) {
        // Held by another node: it is told through the database.
        let node = s.node.clone().unwrap_or_default();
        if node.is_empty() || node == *state.node || !crate::cluster::is_up(state, &node).await? {
            return Err(AppError::conflict(
                "session_not_live",
                "no server holds this session any more; it will be ended as its server is found lost",
            ));
        }
        crate::cluster::send(state, &crate::cluster::Message::Terminate { session: s.id.clone(), reason }).await;
    }
    // The proxy closes the row; wait briefly so the answer shows the end.
    for _ in 0..40 {
        let now = state.store.session(&s.id).await?;
        if now.ended_at.is_some() {
            return Ok(now);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(state.store.session(&s.id).await?)
}

/// Watches a live session as it happens (read-only): an approver of its request, a reviewer,
/// a Security Policy Administrator or an Auditor: those who may end it or replay it. Audited
/// as `session.watch`.
pub async fn watch(state: &App, caller: &Caller, id: &str) -> AppResult<(SessionRecord, LiveTap)> {
    let (s, tap) = watch_unaudited(state, caller, id).await?;
    state.store.record(&caller.actor(), state.now(), NewEvent::success("session.watch", "session", &s.id)).await?;
    Ok((s, tap))
}

/// As [`watch`], without the audit event: for the pictures a watch page, opened (and audited)
/// once, polls.
pub async fn watch_unaudited(state: &App, caller: &Caller, id: &str) -> AppResult<(SessionRecord, LiveTap)> {
    let (s, rel) = visible(state, caller, id).await?;
    access::may_watch(&rel)?;
    if s.ended_at.is_some() {
        return Err(AppError::conflict(
            "session_ended",
            "the session has ended; its recording can be replayed on the request's page",
        ));
    }
    let tap = match state.live.tap(&s.id) {
        Some(tap) => tap,
        // Held by another node: followed from its recording on the shared directory.
        None => crate::follow::tap(state, &s).await?,
    };
    Ok((s, tap))
}

/// A recording the caller may replay: its file and its opened data key.
pub struct OpenRecording {
    pub session: SessionRecord,
    pub path: PathBuf,
    pub key: RecordingKey,
}

/// Opens a session's recording for a caller who may replay it (reviewers, Security Policy
/// Administrators, Auditors). When the session's policy asks for approval to view recordings,
/// the caller needs an approved view ([`crate::recording_views`]).
pub async fn recording(state: &App, caller: &Caller, id: &str) -> AppResult<OpenRecording> {
    let (s, rel) = visible(state, caller, id).await?;
    access::may_replay(&rel)?;
    crate::recording_views::check(state, caller, &s).await?;
    open_recording(state, s).await
}

/// Opens a recording to verify it (its integrity, not its content: no viewing approval needed).
pub async fn recording_to_verify(state: &App, caller: &Caller, id: &str) -> AppResult<OpenRecording> {
    let (s, rel) = visible(state, caller, id).await?;
    access::may_replay(&rel)?;
    open_recording(state, s).await
}

pub(crate) async fn open_recording(state: &App, s: SessionRecord) -> AppResult<OpenRecording> {
    let file = s.recording.clone().ok_or_else(|| AppError::not_found("recording"))?;
    let sealed = crate::credentials::unrow(state.store.session_recording_key(&s.id).await?)?;
    let plain =
        open(&state.vault, &SecretContext { account_id: s.id.clone(), kind: "recording".into(), version: 1 }, &sealed)
            .map_err(|e| {
                tracing::error!(session = %s.id, error = %e, "recording key cannot be opened");
                AppError::internal()
            })?;
    let bytes: [u8; 32] = plain.expose().try_into().map_err(|_| AppError::internal())?;
    let path = crate::archive::local_path(state, &s, &file).await?;
    Ok(OpenRecording { path, key: zeroize::Zeroizing::new(bytes), session: s })
}

/// Closes the sessions an earlier run of this node left open (the server stopped without
/// ending them), and those recorded before nodes were named.
pub async fn close_orphans(state: &App) -> AppResult<u64> {
    let mut n = 0;
    for node in [state.node.to_string(), String::new()] {
        let q = SessionQuery { live: Some(true), node: Some(node), limit: 1000, ..SessionQuery::default() };
        let open = state.store.sessions(&q).await?;
        n += open.len() as u64;
        close_open(state, open, "server stopped during the session").await?;
    }
    Ok(n)
}

/// Ends sessions nobody holds any more (`why`: the server stopped, the node was lost). What
/// the recording holds survives: the session keeps the byte counts read from it and ends at
/// its last recorded activity, and its end reason says where the recording was cut.
pub async fn close_open(state: &App, open: Vec<SessionRecord>, why: &str) -> AppResult<()> {
    for s in open {
        let (id, started) = (s.id.clone(), s.started_at);
        let read = match open_recording(state, s).await {
            Ok(OpenRecording { path, key, session }) => {
                let sid = session.id.clone();
                tokio::task::spawn_blocking(move || portcullis_recording::verify_allowing_cut(&path, &sid, &key))
                    .await
                    .ok()
            }
            Err(_) => None,
        };
        let (end, reason, up, down) = match read {
            Some(Ok(r)) => {
                let at = started + i64::try_from(r.duration_micros).unwrap_or(0);
                let how = if r.sealed {
                    "the recording is complete".to_owned()
                } else {
                    format!("the recording was cut after chunk {}", r.chunks)
                };
                let (up, down) = (i64::try_from(r.bytes_up).unwrap_or(0), i64::try_from(r.bytes_down).unwrap_or(0));
                (at, format!("{why}; {how}"), up, down)
            }
            Some(Err(e)) => (state.now(), format!("{why}; the recording is damaged: {e}"), 0, 0),
            None => (state.now(), format!("{why}; no readable recording"), 0, 0),
        };
        state.store.end_session(&portcullis_store::Actor::system(), end.max(started), &id, &reason, up, down).await?;
    }
    Ok(())
}

/// Audits a verification's verdict.
pub async fn audit_verify(state: &App, caller: &Caller, session_id: &str, problem: Option<&str>) -> AppResult<()> {
    let mut event = NewEvent::success("session.recording_verify", "session", session_id)
        .with_details(json!({ "intact": problem.is_none(), "problem": problem }));
    if problem.is_some() {
        event = event.with_outcome(Outcome::Failure);
    }
    state.store.record(&caller.actor(), state.now(), event).await?;
    Ok(())
}

/// Audits an export before it streams: `Ok(cut)` exports (`cut`: the recording ends after
/// that many chunks without its seal), `Err(problem)` was refused as damaged.
pub async fn audit_export(
    state: &App,
    caller: &Caller,
    session_id: &str,
    format: &str,
    verdict: Result<Option<u64>, &str>,
) -> AppResult<()> {
    let mut event = NewEvent::success("session.recording_export", "session", session_id);
    event = match verdict {
        Ok(cut) => event.with_details(json!({ "format": format, "cut_after_chunk": cut })),
        Err(problem) => {
            event.with_outcome(Outcome::Failure).with_details(json!({ "format": format, "problem": problem }))
        }
    };
    state.store.record(&caller.actor(), state.now(), event).await?;
    Ok(())
}

/// A one-time launch token and what it opens.
pub struct Launch {
    pub token: zeroize::Zeroizing<String>,
    pub expires_at: i64,
    pub account_name: String,
    pub asset_name: String,
    /// SSH or RDP: which proxy the token is for.
    pub access_type: AccessType,
    /// The policy asks for the target's password (User Supplied): the RDP password carries
    /// it, so the token is the connection's load-balancing info, not the NLA password.
    pub user_supplied: bool,
}

/// What starts an RDP session with a launch token.
pub struct RdpLaunch {
    /// The FreeRDP command line.
    pub freerdp: String,
    /// An `.rdp` file for mstsc and other clients.
    pub rdp_file: String,
    /// The in-band user name, for signing in with the Portcullis password.
    pub inband_user: String,
}

/// Ready-to-paste command lines for a launch token (each uses the token's one use).
pub struct LaunchCommands {
    pub ssh: String,
    pub scp: String,
    pub sftp: String,
    pub plink: String,
    /// The in-band user name, for clients that prompt for a password (the user's own).
    pub inband_user: String,
}

impl Launch {
    /// The FreeRDP command and `.rdp` file for the RDP proxy at `rdp_host` (host:port).
    pub fn rdp(&self, rdp_host: &str, username: &str) -> RdpLaunch {
        let t = self.token.as_str();
        let host = if rdp_host.is_empty() { "HOST:3389" } else { rdp_host };
        let inband_user = format!("{username}#{}@{}", self.account_name, self.asset_name);
        if self.user_supplied {
            // The RDP password is the target's: the token travels as load-balancing info (TLS).
            return RdpLaunch {
                freerdp: format!("xfreerdp /v:{host} /load-balance-info:{t} /u:{username} /p:TARGET-PASSWORD /sec:tls"),
                rdp_file: format!(
                    "full address:s:{host}\r\nloadbalanceinfo:s:{t}\r\nusername:s:{username}\r\nenablecredsspsupport:i:0\r\nauthentication level:i:0\r\nprompt for credentials:i:1\r\n"
                ),
                inband_user,
            };
        }
        // The token is the password for NLA (CredSSP): proved, never sent in the clear; a
        // client that asks for the password takes the token pasted.
        RdpLaunch {
            freerdp: format!("xfreerdp /v:{host} /u:{inband_user} /p:{t}"),
            rdp_file: format!(
                "full address:s:{host}\r\nusername:s:{inband_user}\r\nenablecredsspsupport:i:1\r\nauthentication level:i:0\r\nprompt for credentials:i:1\r\n"
            ),
            inband_user,
        }
    }

    /// The commands for the SSH proxy at `ssh_host` (host:port), for `username`.
    pub fn commands(&self, ssh_host: &str, username: &str) -> LaunchCommands {
        let (h, port) = ssh_host.rsplit_once(':').unwrap_or((ssh_host, "2222"));
        let t = self.token.as_str();
        LaunchCommands {
            ssh: format!("ssh -p {port} {t}@{h}"),
            scp: format!("scp -P {port} FILE {t}@{h}:"),
            sftp: format!("sftp -P {port} {t}@{h}"),
            plink: format!("plink -ssh -P {port} {t}@{h}"),
            inband_user: format!("{username}#{}@{}", self.account_name, self.asset_name),
        }
    }
}

/// Start session: a one-time launch token for an available SSH request (the requester only),
/// valid once, until the request's end or 15 minutes.
pub async fn launch(state: &App, caller: &Caller, request_id: &str) -> AppResult<Launch> {
    let (r, rel) = crate::requests::relation_to(state, caller, request_id).await?;
    if !rel.requester {
        return Err(AppError::forbidden("only the requester may start the request's session"));
    }
    if !matches!(r.access_type, AccessType::Ssh | AccessType::Rdp) {
        return Err(AppError::conflict(
            "wrong_access_type",
            format!(
                "this is a {} request; launch tokens are for SSH and RDP requests{}",
                r.access_type.as_str(),
                if r.access_type == AccessType::Telnet { " (Telnet: sign in at the proxy's prompt)" } else { "" }
            ),
        ));
    }
    if r.state != RequestState::Available {
        return Err(crate::requests::not_available(r.state, "a session starts"));
    }
    let now = state.now();
    if !(r.start_at <= now && now < r.end_at) {
        return Err(AppError::conflict(
            "outside_window",
            "the request's access period is not now (it has not started or has ended); no launch token was made",
        ));
    }
    if !state.store.service_enabled(portcullis_store::SESSION_REQUESTS_SETTING).await? {
        return Err(AppError::refused(
            "service_disabled",
            "session access is switched off by an Appliance Administrator; no launch token was made",
        ));
    }
    let account = state.store.account(&r.account_id).await?;
    let asset = state.store.asset(&r.asset_id).await?;
    let token = crate::auth::new_token(portcullis_core::connection::LAUNCH_TOKEN_PREFIX);
    let expires_at = r.end_at.min(now + 15 * 60 * 1_000_000);
    let rdp = r.access_type == AccessType::Rdp;
    let sealed = rdp.then(|| crate::session_access::seal_launch_token(state, &token));
    let hash = crate::auth::token_hash(&token);
    let (actor, user_id) = (caller.actor(), &caller.user.id);
    state.store.create_launch_token(&actor, now, &hash, sealed.as_deref(), &r.id, user_id, expires_at).await?;
    let user_supplied = rdp
        && state.store.policy(&r.policy_id).await?.settings.account_mode
            == portcullis_core::policy::AccountMode::UserSupplied;
    let (account_name, asset_name, access_type) = (account.name, asset.name, r.access_type);
    Ok(Launch { token, expires_at, account_name, asset_name, access_type, user_supplied })
}
