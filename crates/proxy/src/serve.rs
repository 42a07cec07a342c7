//! The accept loop, and each session's life: start (row, recording, registry), supervision
//! (revocation, expiry, idleness, termination, recording failure) and the end (reason, byte
//! counts, sealed recording, audit).

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_app::{App as AppState, LiveSession};
use portcullis_core::inventory::Protocol;
use portcullis_core::request::{EndCause, RequestState};
use portcullis_recording::{new_key, EventKind, Recorder, RecorderHandle, RecordingWriter};
use portcullis_store::{Actor, NewSession, SealedRow, User};
use portcullis_vault::{seal, SecretContext};
use russh::keys::PrivateKey;
use russh::{ChannelId, Disconnect, Preferred};
use tokio::net::TcpListener;

use crate::conn::{Access, Conn};
use crate::gate::{Gate, GateLimits};

/// The proxy's settings.
pub struct ProxyConfig {
    pub host_keys: Vec<PrivateKey>,
    /// Connections open at once (beyond: closed at accept).
    pub max_connections: usize,
    /// Time a client has from connecting to signing in (identification, key exchange and
    /// authentication); the session must then start within the same time.
    pub auth_timeout: Duration,
    /// Connections between accept and sign-in, in total and from one address.
    pub pre_auth: GateLimits,
    /// The AA plugins connection policies may name.
    pub aa_plugins: Arc<crate::aa::AaPlugins>,
}

/// Time a client has to send its SSH identification line.
const IDENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connection handler, the relay tasks and the supervisor share.
pub(crate) struct Shared {
    /// Set when the session is ending: every relay task stops waiting and lets go.
    pub stop: tokio::sync::watch::Sender<bool>,
    /// Set when the client has signed in: it leaves the pre-authentication gate.
    pub authenticated: tokio::sync::watch::Sender<bool>,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    /// Microseconds (server clock) of the last byte either way.
    pub last_activity: AtomicI64,
    pub end_reason: Mutex<Option<String>>,
    /// Client channels open now (for the parting message).
    pub channels: Mutex<HashSet<ChannelId>>,
    pub live: Mutex<Option<LiveState>>,
    /// Signed in and waiting for a person (gateway authentication, four-eyes): the sign-in
    /// deadline does not run meanwhile.
    pub waiting: std::sync::atomic::AtomicBool,
}

pub(crate) struct LiveState {
    session_id: String,
    recorder: RecorderHandle,
    supervisor: tokio::task::JoinHandle<()>,
    tap: portcullis_recording::LiveTap,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            stop: tokio::sync::watch::channel(false).0,
            authenticated: tokio::sync::watch::channel(false).0,
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            last_activity: AtomicI64::new(0),
            end_reason: Mutex::new(None),
            channels: Mutex::new(HashSet::new()),
            live: Mutex::new(None),
            waiting: Default::default(),
        }
    }
}

impl Shared {
    /// The live session's id, once it started.
    pub(crate) fn session_id(&self) -> Option<String> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|l| l.session_id.clone())
    }

    /// The live session's tap (what watchers see), once it started.
    pub(crate) fn tap(&self) -> Option<portcullis_recording::LiveTap> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|l| l.tap.clone())
    }

    /// Tells every relay task of the session to stop.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// The first reason given wins.
    pub(crate) fn set_end_reason(&self, reason: &str) {
        let mut r = self.end_reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.to_owned());
        }
    }
}

fn russh_config(cfg: &ProxyConfig) -> russh::server::Config {
    use russh::{cipher, kex, mac};
    use std::borrow::Cow;
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-Portcullis")),
        methods: russh::MethodSet::from(
            &[russh::MethodKind::PublicKey, russh::MethodKind::Password, russh::MethodKind::KeyboardInteractive][..],
        ),
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: cfg.host_keys.clone(),
        // The policy's idle timeout is enforced by the supervisor; this only reaps dead peers.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        max_auth_attempts: 6,
        preferred: Preferred {
            kex: Cow::Borrowed(&[
                kex::MLKEM768X25519_SHA256,
                kex::CURVE25519,
                kex::CURVE25519_PRE_RFC_8731,
                kex::EXTENSION_SUPPORT_AS_SERVER,
                kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
            ]),
            key: Cow::Owned(vec![
                russh::keys::Algorithm::Ed25519,
                russh::keys::Algorithm::Rsa { hash: Some(russh::keys::HashAlg::Sha512) },
                russh::keys::Algorithm::Rsa { hash: Some(russh::keys::HashAlg::Sha256) },
            ]),
            cipher: Cow::Borrowed(&[cipher::CHACHA20_POLY1305, cipher::AES_256_GCM, cipher::AES_128_GCM]),
            mac: Cow::Borrowed(&[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM]),
            // Compression only after sign-in (zlib@openssh.com): an anonymous client never
            // reaches the decompressor (issue 13, finding 21).
            compression: Cow::Borrowed(&[russh::compression::NONE, russh::compression::ZLIB_LEGACY]),
            ..Preferred::default()
        },
        ..Default::default()
    }
}

/// Serves SSH on `listener` until the task is dropped.
pub async fn serve(state: AppState, cfg: ProxyConfig, listener: TcpListener) {
    let config = Arc::new(russh_config(&cfg));
    let (auth_timeout, plugins) = (cfg.auth_timeout, cfg.aa_plugins.clone());
    let app = state.clone();
    accept_loop(state, listener, cfg.max_connections, cfg.pre_auth, "ssh", move |stream, peer, shared, ticket| {
        let (state, config, plugins) = (app.clone(), config.clone(), plugins.clone());
        async move {
            let port = stream.local_addr().map_or(0, |a| a.port());
            let handler = Conn::new(state, peer, port, shared.clone(), plugins);
            connection(config, stream, peer, handler, shared, ticket, auth_timeout).await;
        }
    })
    .await
}

/// The accept loop of every proxy: at most `max_connections` open (beyond: closed at accept),
/// the pre-authentication gate, and per connection a task that runs `connection` and then
/// [`finish`] (the session's end, if one started).
pub(crate) async fn accept_loop<F, Fut>(
    state: AppState,
    listener: TcpListener,
    max_connections: usize,
    pre_auth: GateLimits,
    protocol: &'static str,
    connection: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr, Arc<Shared>, crate::gate::Ticket) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let gate = Gate::new(protocol, pre_auth);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, protocol, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, protocol, "too many connections; refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ticket = gate.admit(peer.ip());
        let shared = Arc::new(Shared::default());
        let running = connection(stream, peer, shared.clone(), ticket);
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            running.await;
            finish(&state, &shared).await;
        });
    }
}

/// One connection: bounded in time and by the gate until the client signs in, then until the
/// session starts, then for as long as the session lasts.
async fn connection(
    config: Arc<russh::server::Config>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    handler: Conn,
    shared: Arc<Shared>,
    mut ticket: crate::gate::Ticket,
    auth_timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + auth_timeout;
    // A second handle on the socket, held until sign-in: a client that stalls mid key exchange
    // does not read the polite disconnect, so the socket is shut down under it.
    let cutter = match std::os::fd::AsFd::as_fd(&stream).try_clone_to_owned() {
        Ok(fd) => std::net::TcpStream::from(fd),
        Err(e) => return tracing::warn!(%peer, error = %e, "ssh: cannot hold the connection; closed"),
    };
    let started = tokio::select! {
        r = tokio::time::timeout(IDENT_TIMEOUT.min(auth_timeout), russh::server::run_stream(config, stream, handler)) => r,
        _ = ticket.evicted.wait_for(|e| *e) => {
            tracing::debug!(%peer, "ssh: dropped before identification to make room");
            return;
        }
    };
    let running = match started {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "ssh handshake failed"),
        Err(_) => return tracing::debug!(%peer, "ssh: no identification in time; closed"),
    };
    let handle = running.handle();
    tokio::pin!(running);
    let mut authenticated = shared.authenticated.subscribe();
    // Until sign-in: the grace time and the gate bound it.
    let why = tokio::select! {
        r = &mut running => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "ssh session ended with an error");
            }
            return;
        }
        _ = authenticated.wait_for(|a| *a) => None,
        _ = tokio::time::sleep_until(deadline) => Some("Portcullis: authentication timed out"),
        _ = ticket.evicted.wait_for(|e| *e) => Some("Portcullis: too many connections waiting to sign in; try again"),
    };
    drop(ticket);
    if let Some(why) = why {
        let _ = handle.disconnect(Disconnect::ByApplication, why.into(), "en".into()).await;
        if tokio::time::timeout(Duration::from_secs(1), &mut running).await.is_err() {
            let _ = cutter.shutdown(std::net::Shutdown::Both);
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut running).await;
        }
        return;
    }
    drop(cutter);
    // Signed in: the session must start within the same grace time.
    let guard = {
        let shared = shared.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut deadline = deadline;
            let mut waited = false;
            loop {
                tokio::time::sleep_until(deadline).await;
                if shared.waiting.load(Ordering::Relaxed) {
                    // A person decides; the wait has its own limit.
                    waited = true;
                    deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    continue;
                }
                if std::mem::take(&mut waited) {
                    // Decided: the session start gets the grace time again.
                    deadline = tokio::time::Instant::now() + auth_timeout;
                    continue;
                }
                break;
            }
            let started = shared.live.lock().unwrap_or_else(|p| p.into_inner()).is_some();
            if !started {
                let _ = handle
                    .disconnect(Disconnect::ByApplication, "Portcullis: authentication timed out".into(), "en".into())
                    .await;
            }
        })
    };
    if let Err(e) = running.await {
        tracing::debug!(%peer, error = %e, "ssh session ended with an error");
    }
    guard.abort();
}

/// Opens the session: database row (audited), recording, registry entry, supervisor. `handle`:
/// the SSH connection, told why the session ends; other protocols watch [`Shared::stop`] and
/// [`Shared::end_reason`].
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_session(
    state: &AppState,
    shared: &Arc<Shared>,
    user: &User,
    access: &Access,
    client: &str,
    policy: Option<&portcullis_core::gateway::ConnectionPolicy>,
    protocol: Protocol,
    handle: Option<russh::server::Handle>,
    login: Option<portcullis_store::ProxyLogin>,
) -> Result<Recorder, String> {
    let id = uuid::Uuid::new_v4().to_string();
    let file = format!("{id}.pcrec");
    let storage_failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "cannot start a session recording");
        "session recording storage is unavailable; the session cannot start".to_owned()
    };
    tokio::fs::create_dir_all(state.recordings.as_path()).await.map_err(|e| storage_failed(&e))?;
    let key = new_key();
    let sealed =
        seal(&state.vault, &SecretContext { account_id: id.clone(), kind: "recording".into(), version: 1 }, &key[..]);
    let mut writer =
        RecordingWriter::create(&state.recordings.join(&file), &id, &key).await.map_err(|e| storage_failed(&e))?;
    let streams = policy.is_none_or(|p| p.recording);
    if !streams {
        writer = writer.without_streams();
    }
    // 64 events of at most 32 KiB: a session's recording backlog stays under 2 MiB.
    let tap = portcullis_recording::LiveTap::new();
    let started = state.now();
    // The search index sees every event as it is recorded: live sessions are searchable.
    let observer = state.search.as_ref().map(|ix| {
        let facts = portcullis_search::Facts {
            session_id: id.clone(),
            user: user.username.clone(),
            account: access.account.name.clone(),
            asset: access.asset.name.clone(),
            protocol: protocol.as_str().into(),
            client: client.to_owned(),
            started_at: started,
        };
        let mut feed = ix.live(facts);
        Box::new(move |e: Option<&portcullis_recording::Event>| match e {
            Some(e) => feed.event(e),
            None => feed.quiet(),
        }) as portcullis_recording::Observer
    });
    let recorder = writer.spawn_observed(64, Some(tap.clone()), observer);
    let sender = recorder.sender().ok_or_else(|| "recording failed".to_owned())?;
    let mut meta = serde_json::json!({
        "session_id": id, "protocol": protocol.as_str(), "user": user.username, "user_id": user.id, "request_id": access.request.id,
        "account": access.account.name, "asset": access.asset.name, "address": access.asset.address, "client": client,
        "connection_policy": policy.map(|p| p.name.as_str()), "access_policy": access.policy_name,
        "recording": if streams { "full" } else { "metadata only (the connection policy records no terminal streams)" },
        "started_at": jiff::Timestamp::from_microsecond(started).map(|t| t.to_string()).unwrap_or_default(),
    });
    if let Some(aa) = &access.aa {
        meta["aa"] = aa.clone();
    }
    sender.record(EventKind::Meta, 0, meta.to_string().into_bytes()).await.map_err(|e| storage_failed(&e))?;
    let new = NewSession {
        id: id.clone(),
        user_id: user.id.clone(),
        username: user.username.clone(),
        request_id: access.request.id.clone(),
        account_id: access.account.id.clone(),
        asset_id: access.asset.id.clone(),
        protocol: protocol.as_str().into(),
        client_addr: client.to_owned(),
        recording: file,
        recording_key: SealedRow {
            ciphertext: sealed.ciphertext,
            nonce: sealed.nonce.to_vec(),
            wrapped_dek: sealed.wrapped_dek,
            dek_nonce: sealed.dek_nonce.to_vec(),
            kek_id: sealed.kek_id,
        },
        node: state.node.to_string(),
    };
    let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: client.to_owned() };
    state.store.start_session(&actor, started, &new, login.as_ref()).await.map_err(|e| {
        tracing::error!(error = %e, "cannot record the session start");
        "Portcullis cannot record the session start; try again later".to_owned()
    })?;
    let (kill, kill_rx) = tokio::sync::mpsc::unbounded_channel();
    state.live.register(
        &id,
        LiveSession { request_id: access.request.id.clone(), user_id: user.id.clone(), kill, tap: tap.clone() },
    );
    shared.last_activity.store(state.now(), Ordering::Relaxed);
    let idle = Duration::from_secs(u64::try_from(access.settings.idle_timeout_minutes.max(1)).unwrap_or(10) * 60);
    let supervisor = tokio::spawn(supervise(
        state.clone(),
        shared.clone(),
        access.request.clone(),
        idle,
        handle,
        kill_rx,
        sender.clone(),
    ));
    *shared.live.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(LiveState { session_id: id, recorder, supervisor, tap });
    Ok(sender)
}

/// Why the session ends, from the request's new state and how its access ended (a request
/// revoked under a policy requiring review waits for review, yet was revoked).
fn reason_for(to: RequestState, ended_by: Option<EndCause>) -> &'static str {
    match (to, ended_by) {
        (RequestState::Revoked, _) | (_, Some(EndCause::Revocation)) => "the request was revoked",
        (RequestState::Expired, _) | (_, Some(EndCause::Expiry)) => "the request expired",
        (RequestState::Complete | RequestState::PendingReview, _) => "the request was checked in",
        (RequestState::Canceled, _) => "the request was canceled",
        _ => "the request is no longer available",
    }
}

/// Ends the session when its request stops being available, at the request's end, after the
/// idle timeout, on an administrator's termination, or when the recording fails.
async fn supervise(
    state: AppState,
    shared: Arc<Shared>,
    request: portcullis_store::AccessRequest,
    idle: Duration,
    handle: Option<russh::server::Handle>,
    mut kill: tokio::sync::mpsc::UnboundedReceiver<String>,
    recorder: Recorder,
) {
    let mut events = state.events.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let reason: String = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(t) if t.request_id == request.id && t.to != RequestState::Available => break reason_for(t.to, t.ended_by).into(),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    match state.store.request(&request.id).await {
                        Ok(r) if r.state != RequestState::Available => break reason_for(r.state, r.ended_by).into(),
                        _ => {}
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break "the server is shutting down".into(),
            },
            _ = tick.tick() => {
                let now = state.now();
                if now >= request.end_at {
                    break "the request's access period ended".into();
                }
                let quiet = now - shared.last_activity.load(Ordering::Relaxed);
                if quiet >= i64::try_from(idle.as_micros()).unwrap_or(i64::MAX) {
                    let minutes = idle.as_secs() / 60;
                    break format!("no activity for {minutes} minute{}", if minutes == 1 { "" } else { "s" });
                }
            }
            Some(reason) = kill.recv() => break reason,
            _ = recorder.closed() => break "the session recording failed".into(),
        }
    };
    shared.set_end_reason(&reason);
    if let Some(handle) = handle {
        let message = format!("\r\nPortcullis: session ended: {reason}\r\n");
        let channels: Vec<ChannelId> =
            shared.channels.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        for id in channels {
            let _ = handle.extended_data(id, 1, message.clone().into_bytes()).await;
        }
        let why = format!("Portcullis: session ended: {reason}");
        let _ = handle.disconnect(Disconnect::ByApplication, why, "en".into()).await;
    }
    // Whatever waits on the client or the target lets go, so the connection ends even when
    // a peer has stopped reading.
    shared.stop();
}

/// After the connection is gone: seal the recording, close the row, leave the registry.
async fn finish(state: &AppState, shared: &Shared) {
    shared.stop();
    let live = shared.live.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(live) = live else { return };
    live.supervisor.abort();
    let _ = live.supervisor.await;
    state.live.remove(&live.session_id);
    state.waiting.session_ended(&live.session_id);
    let reason = shared
        .end_reason
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| "the client disconnected".into());
    match live.recorder.finish(&reason).await {
        Ok(stats) => {
            tracing::info!(session = %live.session_id, events = stats.events, stored = stats.stored_bytes, %reason, "session recording sealed")
        }
        Err(e) => tracing::error!(session = %live.session_id, error = %e, "the session recording could not be sealed"),
    }
    let up = i64::try_from(shared.bytes_up.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let down = i64::try_from(shared.bytes_down.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    if let Err(e) = state.store.end_session(&Actor::system(), state.now(), &live.session_id, &reason, up, down).await {
        tracing::error!(session = %live.session_id, error = %e, "cannot record the session end");
    }
}
