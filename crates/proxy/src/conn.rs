//! One client connection: authentication, authorization, the leg to the target, and the
//! client's side of every channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use portcullis_api::AppState;
use portcullis_connect::{ConnectError, Credential, HostKeyCheck, Login, Target};
use portcullis_core::connection::{parse, ConnectionString};
use portcullis_core::policy::{AccessType, AccountMode, PolicySettings};
use portcullis_core::request::RequestState;
use portcullis_recording::{Event, EventKind, Recorder};
use portcullis_store::{AccessRequest, Account, Actor, Asset, NewEvent, Outcome, ProxyLogin, User};
use russh::client;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelWriteHalf, Disconnect, MethodKind, MethodSet, Pty, Sig};
use serde_json::json;
use zeroize::Zeroizing;

use crate::files::{FileTracker, ScpTracker, SftpTracker, SharedTracker};
use crate::serve::{start_session, Shared};

/// Channels one connection may have open at once.
const MAX_CHANNELS: usize = 32;

/// What an authorized connection may use.
#[derive(Clone)]
pub(crate) struct Access {
    pub request: AccessRequest,
    pub account: Account,
    pub asset: Asset,
    pub settings: PolicySettings,
}

struct UpChannel {
    /// To the channel's uplink task, which forwards to the target in order.
    tx: tokio::sync::mpsc::Sender<Up>,
    number: u32,
    files: SharedTracker,
}

/// What the client sends on a channel, forwarded to the target in the order received.
pub(crate) enum Up {
    Data(bytes::Bytes),
    Eof,
    Close,
    Pty { term: String, cols: u32, rows: u32, px: u32, py: u32, modes: Vec<(Pty, u32)> },
    Shell,
    Exec(Vec<u8>),
    Subsystem(String),
    Env(String, String),
    WindowChange(u32, u32, u32, u32),
    Signal(Sig),
}

/// Forwards one channel's client side to the target. A task of its own, so that the
/// connection's event loop never waits on a target that is itself waiting for a slow client
/// (which would leave the loop unable to see the client leave or to be told to end).
async fn uplink(
    write: ChannelWriteHalf<client::Msg>,
    mut rx: tokio::sync::mpsc::Receiver<Up>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = stop.wait_for(|v| *v) => None,
        };
        let Some(msg) = msg else { break };
        let close = matches!(msg, Up::Close);
        let op = async {
            match msg {
                Up::Data(d) => write.data_bytes(d).await,
                Up::Eof => write.eof().await,
                Up::Close => write.close().await,
                Up::Pty { term, cols, rows, px, py, modes } => {
                    write.request_pty(true, &term, cols, rows, px, py, &modes).await
                }
                Up::Shell => write.request_shell(true).await,
                Up::Exec(c) => write.exec(true, c).await,
                Up::Subsystem(n) => write.request_subsystem(true, n).await,
                Up::Env(k, v) => write.set_env(false, k, v).await,
                Up::WindowChange(c, r, x, y) => write.window_change(c, r, x, y).await,
                Up::Signal(s) => write.signal(s).await,
            }
        };
        let result = tokio::select! {
            r = op => r,
            _ = stop.wait_for(|v| *v) => break,
        };
        if result.is_err() || close {
            break;
        }
    }
}

/// The target's connection (TCP and key exchange, no login), started when the client first
/// names it, so that it runs while the client's password is verified. Dropped unused (the
/// sign-in failed, or another target was authorized) it is closed.
struct Preconnect {
    target: Target,
    task: tokio::task::JoinHandle<Result<portcullis_connect::SshClient, ConnectError>>,
}

impl Drop for Preconnect {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct Conn {
    state: AppState,
    peer: SocketAddr,
    shared: Arc<Shared>,
    user: Option<User>,
    access: Option<Result<Access, String>>,
    upstream: Option<client::Handle<HostKeyCheck>>,
    channels: HashMap<ChannelId, UpChannel>,
    recorder: Option<Recorder>,
    next_number: u32,
    /// User Supplied account mode: the target credential the user typed (never stored).
    target_secret: Option<Zeroizing<String>>,
    /// Signed in, but the policy wants the user to type the target's password still.
    want_target_secret: bool,
    /// Started once per connection at most.
    preconnect: Option<Preconnect>,
    /// The asset and account the pre-connection looked up (asset name, account name as
    /// typed): authorization a moment later reuses them.
    named: Option<(String, String, Asset, Account)>,
    /// The key the client offered last and its owner (user name as typed, fingerprint, user):
    /// the signature that follows within the same sign-in needs no second lookup.
    offered_key: Option<(String, String, User)>,
    preconnect_tried: bool,
    /// A sign-in not written yet: it goes into the session-start transaction (one durable
    /// commit fewer per session), or is written on its own before any refusal.
    pending_login: Option<ProxyLogin>,
}

/// Where the proxy reaches `asset` over SSH.
fn ssh_target(asset: &Asset) -> Result<Target, String> {
    let port = asset
        .protocols
        .iter()
        .find(|p| p.protocol == portcullis_core::inventory::Protocol::Ssh)
        .map(|p| p.port)
        .ok_or_else(|| format!("{} has no SSH service configured in Portcullis", asset.name))?;
    Ok(Target { host: asset.address.clone(), port, host_key: asset.host_key.clone(), timeout: Duration::from_secs(15) })
}

fn same_target(a: &Target, b: &Target) -> bool {
    a.host == b.host && a.port == b.port && a.host_key == b.host_key
}

fn methods() -> MethodSet {
    MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password, MethodKind::KeyboardInteractive][..])
}

fn reject() -> Auth {
    Auth::Reject { proceed_with_methods: Some(methods()), partial_success: false }
}

impl Conn {
    pub(crate) fn new(state: AppState, peer: SocketAddr, shared: Arc<Shared>) -> Conn {
        Conn {
            state,
            peer,
            shared,
            user: None,
            access: None,
            upstream: None,
            channels: HashMap::new(),
            recorder: None,
            next_number: 0,
            target_secret: None,
            want_target_secret: false,
            preconnect: None,
            preconnect_tried: false,
            named: None,
            offered_key: None,
            pending_login: None,
        }
    }

    /// Starts the connection to the target the client names (TCP and key exchange only: no
    /// credential is read or sent before the sign-in and the request check succeed). Only for
    /// an existing, enabled Portcullis user and an account in the inventory, once per
    /// connection; bounded by the proxy's connection limit and sign-in timeout like the rest
    /// of an unauthenticated connection.
    async fn preconnect(&mut self, username: &str) {
        if std::mem::replace(&mut self.preconnect_tried, true) {
            return;
        }
        let Ok(ConnectionString::Inband { user, account, asset }) = parse(username) else { return };
        let store = &self.state.store;
        let now = self.state.now();
        match store.login_state(&user).await {
            Ok(Some(s)) if !s.user.disabled && s.user.locked_until.is_none_or(|t| t <= now) => {}
            _ => return,
        }
        let Ok(Some((found_asset, found_account))) = store.account_by_names(&asset, &account).await else { return };
        let Ok(target) = ssh_target(&found_asset) else { return };
        let t = target.clone();
        let task = tokio::spawn(async move { portcullis_connect::connect_session(&t).await });
        self.preconnect = Some(Preconnect { target, task });
        self.named = Some((asset, account, found_asset, found_account));
    }

    fn source(&self) -> String {
        self.peer.to_string()
    }

    fn actor(&self) -> Actor {
        match &self.user {
            Some(u) => Actor { id: u.id.clone(), name: u.username.clone(), source: self.source() },
            None => Actor { id: String::new(), name: "unknown".into(), source: self.source() },
        }
    }

    /// Checks the Portcullis sign-in, then whether an available request allows this target now.
    async fn sign_in(&mut self, username: &str, password: Zeroizing<String>, code: Option<&str>) -> Auth {
        let (user_name, account, asset) = match parse(username) {
            Ok(ConnectionString::Inband { user, account, asset }) => (user, account, asset),
            Ok(ConnectionString::LaunchToken(_)) => return reject(),
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "ssh: bad connection string");
                return reject();
            }
        };
        let source = self.source();
        match portcullis_api::auth::verify_login(&self.state, &source, &user_name, password, code).await {
            Ok((user, step)) => {
                let actor = Actor { id: user.id.clone(), name: user.username.clone(), source };
                let login = ProxyLogin {
                    actor,
                    at: self.state.now(),
                    user_id: user.id.clone(),
                    totp_step: step,
                    key_fingerprint: None,
                };
                self.access = Some(self.authorize(&user, &account, &asset).await);
                self.user = Some(user);
                let auth = self.signed_in();
                self.login_succeeded(login, auth).await
            }
            Err(e) if e.code == "totp_required" => Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
                partial_success: false,
            },
            Err(_) => reject(),
        }
    }

    /// The user authenticated (`auth` says what comes next). A complete sign-in without a
    /// one-time code is kept to be written with the session start; anything else is written
    /// now: a used one-time code must be remembered at once (no replay), and a sign-in that
    /// goes on to ask for the target's password may never reach the session start. `Reject`
    /// if it cannot be written (fail closed: no unaudited sign-in).
    async fn login_succeeded(&mut self, login: ProxyLogin, auth: Auth) -> Auth {
        if matches!(auth, Auth::Accept) && login.totp_step.is_none() {
            self.pending_login = Some(login);
            return auth;
        }
        match self.state.store.record_proxy_login(&login).await {
            Ok(()) => auth,
            Err(_) => reject(),
        }
    }

    /// Writes a sign-in kept for the session start, when the session will not start.
    async fn write_pending_login(&mut self) {
        if let Some(login) = self.pending_login.take() {
            if let Err(e) = self.state.store.record_proxy_login(&login).await {
                tracing::error!(error = %e, "cannot record an SSH sign-in");
            }
        }
    }

    /// The Portcullis sign-in succeeded: done, unless the policy wants the target credential
    /// typed too (User Supplied), which keyboard-interactive then asks for.
    fn signed_in(&mut self) -> Auth {
        let user_supplied = matches!(&self.access, Some(Ok(a)) if a.settings.account_mode == AccountMode::UserSupplied);
        if user_supplied && self.target_secret.is_none() {
            self.want_target_secret = true;
            return Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
                partial_success: true,
            };
        }
        Auth::Accept
    }

    fn target_prompt(&self) -> Auth {
        let target = match &self.access {
            Some(Ok(a)) => format!("{}@{}", a.account.name, a.asset.name),
            _ => "the target".into(),
        };
        Auth::Partial {
            name: "Portcullis".into(),
            instructions: "This policy uses your own credential for the target.".into(),
            prompts: vec![(std::borrow::Cow::Owned(format!("Target password for {target}: ")), false)].into(),
        }
    }

    async fn authorize(&mut self, user: &User, account_name: &str, asset_name: &str) -> Result<Access, String> {
        let target = format!("{account_name}@{asset_name}");
        let store = &self.state.store;
        let internal = |_| "Portcullis cannot check your access right now; try again later".to_owned();
        if !store.service_enabled(portcullis_store::SESSION_REQUESTS_SETTING).await.map_err(internal)? {
            return Err("session access is turned off by the administrators".into());
        }
        let named = match self.named.take() {
            Some((a, b, asset, account)) if a == asset_name && b == account_name => Some((asset, account)),
            _ => store.account_by_names(asset_name, account_name).await.map_err(internal)?,
        };
        let Some((asset, account)) = named else {
            return Err(format!("there is no account {target} in Portcullis; check the account and asset names"));
        };
        let requests = store.requests_for_connect(&user.id, &account.id, AccessType::Ssh).await.map_err(internal)?;
        let request = crate::decide(&requests, self.state.now(), &target)?.clone();
        self.access_for(request, account, asset).await
    }

    async fn access_for(&self, request: AccessRequest, account: Account, asset: Asset) -> Result<Access, String> {
        let internal = |_| "Portcullis cannot check your access right now; try again later".to_owned();
        let policy = self.state.store.policy(&request.policy_id).await.map_err(internal)?;
        if !matches!(policy.settings.account_mode, AccountMode::Vaulted | AccountMode::UserSupplied) {
            return Err(format!(
                "the policy's account mode ({}) is not supported by the SSH proxy yet; ask an administrator",
                policy.settings.account_mode.as_str()
            ));
        }
        Ok(Access { request, account, asset, settings: policy.settings })
    }

    /// The user named in the connection string, if `key` is registered to them; with the
    /// key's fingerprint.
    async fn key_owner(&self, username: &str, key: &russh::keys::PublicKey) -> Option<(User, String)> {
        let Ok(ConnectionString::Inband { user, .. }) = parse(username) else { return None };
        let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
        let owner = self.state.store.user_key_owner(&fingerprint).await.ok()??;
        let u = self.state.store.login_state(&user).await.ok()??.user;
        (u.id == owner).then_some((u, fingerprint))
    }

    async fn launch_token(&mut self, token: &str) -> Auth {
        let hash = portcullis_api::auth::token_hash(token);
        let now = self.state.now();
        let Ok(Some((request_id, user_id))) = self.state.store.use_launch_token(now, &hash).await else {
            return reject();
        };
        let (Ok(user), Ok(request)) =
            (self.state.store.user(&user_id).await, self.state.store.request(&request_id).await)
        else {
            return reject();
        };
        if user.disabled || request.requester_id != user.id {
            return reject();
        }
        let access = if request.state == RequestState::Available && request.start_at <= now && now < request.end_at {
            match (self.state.store.account(&request.account_id).await, self.state.store.asset(&request.asset_id).await)
            {
                (Ok(account), Ok(asset)) => self.access_for(request, account, asset).await,
                _ => Err("the request's account no longer exists".into()),
            }
        } else {
            Err(format!(
                "the request is {}; a launch token works only while it is available",
                request.state.as_str().replace('_', " ")
            ))
        };
        let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: self.source() };
        let login = ProxyLogin { actor, at: now, user_id: user.id.clone(), totp_step: None, key_fingerprint: None };
        let _ = self.state.store.record_proxy_login(&login).await;
        self.access = Some(access);
        self.user = Some(user);
        Auth::Accept
    }

    /// Logs in to the target with the vaulted credential.
    async fn connect_upstream(&mut self, access: &Access) -> Result<portcullis_connect::SshClient, String> {
        let asset = &access.asset;
        let target = ssh_target(asset)?;
        let state = &self.state;
        let (key, password) = if access.settings.account_mode == AccountMode::UserSupplied {
            // The user's own credential for the target, typed at sign-in; nothing vaulted.
            let typed =
                self.target_secret.as_ref().map(|s| (0, portcullis_vault::Plaintext::new(s.as_bytes().to_vec())));
            (Ok(None), Ok(typed))
        } else {
            (
                portcullis_api::credential_service::current(state, &access.account.id, "ssh_key").await,
                portcullis_api::credential_service::current(state, &access.account.id, "password").await,
            )
        };
        let (Ok(key), Ok(password)) = (key, password) else {
            return Err("Portcullis cannot read the account's credential right now".into());
        };
        if key.is_none() && password.is_none() {
            return Err(format!(
                "the vault holds no credential for {}@{}; ask an administrator",
                access.account.name, asset.name
            ));
        }
        let connected = match self.preconnect.take() {
            Some(mut p) if same_target(&p.target, &target) => {
                (&mut p.task).await.unwrap_or_else(|_| Err(ConnectError::Unreachable("connection task ended".into())))
            }
            _ => portcullis_connect::connect_session(&target).await,
        };
        let mut client = match connected {
            Ok(c) => c,
            Err(e) => {
                if matches!(e, ConnectError::HostKeyMismatch { .. }) {
                    let details = json!({ "error": e.to_string(), "alert": true, "via": "ssh proxy" });
                    let _ = state
                        .store
                        .record(
                            &Actor::system(),
                            state.now(),
                            NewEvent::success("asset.host_key_mismatch", "asset", &asset.id)
                                .with_outcome(Outcome::Failure)
                                .with_details(details),
                        )
                        .await;
                }
                return Err(self.upstream_error(access, &e));
            }
        };
        let mut result = Err(ConnectError::AuthenticationFailed(access.account.name.clone()));
        if let Some((_, k)) = &key {
            result = client
                .authenticate(Login { username: &access.account.name, credential: Credential::PrivateKey(k) })
                .await;
        }
        if let (Err(_), Some((_, p))) = (&result, &password) {
            result = client
                .authenticate(Login { username: &access.account.name, credential: Credential::Password(p) })
                .await;
        }
        result.map_err(|e| self.upstream_error(access, &e))?;
        if asset.host_key.is_none() && !client.host_key().is_empty() {
            let _ = state.store.pin_host_key(state.now(), &asset.id, client.host_key()).await;
        }
        Ok(client)
    }

    fn upstream_error(&self, access: &Access, e: &ConnectError) -> String {
        let target = format!("{}@{}", access.account.name, access.asset.name);
        match e {
            ConnectError::HostKeyMismatch { .. } => {
                format!("the host key of {} does not match the one Portcullis pinned; the connection was refused and administrators alerted", access.asset.name)
            }
            ConnectError::AuthenticationFailed(_) if access.settings.account_mode == AccountMode::UserSupplied => {
                format!("{target} refused the password you typed for it")
            }
            ConnectError::AuthenticationFailed(_) => format!(
                "Portcullis could not log in to {target}: the target refused the vaulted credential; ask an administrator to check it"
            ),
            ConnectError::Unreachable(m) => format!("{} cannot be reached: {m}", access.asset.name),
            ConnectError::Timeout(_) => format!("{} did not answer in time", access.asset.name),
            other => format!("Portcullis could not log in to {target}: {other}"),
        }
    }

    async fn refuse(&mut self, session: &mut Session, reason: &str) {
        self.write_pending_login().await;
        let _ = self
            .state
            .store
            .record(
                &self.actor(),
                self.state.now(),
                NewEvent::success("session.refused", "user", self.user.as_ref().map_or("", |u| u.id.as_str()))
                    .with_outcome(Outcome::Denied)
                    .with_details(json!({ "reason": reason, "client": self.source() })),
            )
            .await;
        let _ = session.disconnect(Disconnect::ByApplication, &format!("Portcullis: {reason}"), "en");
    }

    async fn record(&mut self, e: Event) -> Result<(), russh::Error> {
        if let Some(r) = &self.recorder {
            if r.event(e).await.is_err() {
                self.shared.set_end_reason("recording storage failed");
                return Err(russh::Error::Disconnect);
            }
        }
        Ok(())
    }

    /// Queues `msg` for the target; waits only while the channel's queue is full, and gives
    /// up when the session is being ended.
    async fn up(&mut self, channel: ChannelId, msg: Up) -> Result<(), russh::Error> {
        let Some(tx) = self.channels.get(&channel).map(|c| c.tx.clone()) else { return Ok(()) };
        let mut stop = self.shared.stop.subscribe();
        tokio::select! {
            r = tx.send(msg) => {
                if r.is_err() {
                    self.channels.remove(&channel);
                }
                Ok(())
            }
            _ = stop.wait_for(|v| *v) => Err(russh::Error::Disconnect),
        }
    }

    fn now_rec(&self) -> u64 {
        self.recorder.as_ref().map_or(0, |r| r.now())
    }

    fn touch(&self) {
        self.shared.last_activity.store(self.state.now(), Ordering::Relaxed);
    }

    async fn open_upstream_channel(
        &mut self,
        client_channel: Channel<Msg>,
        upstream: Result<Channel<client::Msg>, russh::Error>,
        reply: ChannelOpenHandle,
        session: &mut Session,
        description: String,
    ) -> Result<(), russh::Error> {
        let Ok(up) = upstream else {
            reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        let id = client_channel.id();
        let number = self.next_number;
        self.next_number += 1;
        let (up_read, up_write) = up.split();
        let (client_read, client_write) = client_channel.split();
        // Client data arrives through the handler callbacks; an undrained read half would
        // stall the session, so it goes now.
        drop(client_read);
        let session_channel = description == "session";
        self.record(Event::new(self.now_rec(), EventKind::ChannelOpen, number, description)).await?;
        self.shared.channels.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        let recorder = self.recorder.clone().ok_or(russh::Error::Disconnect)?;
        let files: SharedTracker = Default::default();
        tokio::spawn(crate::relay::pump(
            up_read,
            client_write,
            session.handle(),
            id,
            number,
            recorder,
            self.shared.clone(),
            self.state.clone(),
            files.clone(),
            session_channel,
        ));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(uplink(up_write, rx, self.shared.stop.subscribe()));
        self.channels.insert(id, UpChannel { tx, number, files });
        reply.accept().await;
        Ok(())
    }
}

impl Drop for Conn {
    /// A connection that ends between the sign-in and the session start (it cannot in russh's
    /// order of calls, but a shutdown can cut anything short) still has its sign-in audited.
    fn drop(&mut self) {
        if let Some(login) = self.pending_login.take() {
            let store = self.state.store.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = store.record_proxy_login(&login).await {
                        tracing::error!(error = %e, "cannot record an SSH sign-in");
                    }
                });
            }
        }
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if let Ok(ConnectionString::LaunchToken(token)) = parse(user) {
            return Ok(self.launch_token(&token).await);
        }
        // OpenSSH asks with "none" first: the target's connection can start while the
        // client gets its password.
        self.preconnect(user).await;
        Ok(reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.preconnect(user).await;
        Ok(self.sign_in(user, Zeroizing::new(password.to_owned()), None).await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Only say yes for a key registered to the named user (nothing else is revealed).
        self.preconnect(user).await;
        Ok(match self.key_owner(user, offer.public_key).await {
            Some((owner, fingerprint)) => {
                self.offered_key = Some((user.to_owned(), fingerprint, owner));
                Auth::Accept
            }
            None => reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
        let known = match self.offered_key.take() {
            Some((u, f, owner)) if u == user && f == fingerprint => Some((owner, f)),
            _ => self.key_owner(user, key.public_key).await,
        };
        let Some((owner, fingerprint)) = known else { return Ok(reject()) };
        let Ok(ConnectionString::Inband { account, asset, .. }) = parse(user) else { return Ok(reject()) };
        let now = self.state.now();
        if owner.disabled || owner.locked_until.is_some_and(|t| t > now) {
            return Ok(reject());
        }
        let actor = Actor { id: owner.id.clone(), name: owner.username.clone(), source: self.source() };
        let login = ProxyLogin {
            actor,
            at: now,
            user_id: owner.id.clone(),
            totp_step: None,
            key_fingerprint: Some(fingerprint),
        };
        self.access = Some(self.authorize(&owner, &account, &asset).await);
        self.user = Some(owner);
        let auth = self.signed_in();
        Ok(self.login_succeeded(login, auth).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if self.want_target_secret {
            let Some(mut response) = response else { return Ok(self.target_prompt()) };
            let Some(secret) = response.next() else { return Ok(reject()) };
            self.target_secret = Some(Zeroizing::new(String::from_utf8_lossy(&secret).into_owned()));
            self.want_target_secret = false;
            return Ok(Auth::Accept);
        }
        let Some(response) = response else {
            self.preconnect(user).await;
            let mut prompts = vec![(std::borrow::Cow::Borrowed("Portcullis password: "), false)];
            if let Ok(ConnectionString::Inband { user: name, .. }) = parse(user) {
                if let Ok(Some(s)) = self.state.store.login_state(&name).await {
                    if s.user.totp_enabled {
                        prompts.push((std::borrow::Cow::Borrowed("One-time code: "), true));
                    }
                }
            }
            return Ok(Auth::Partial { name: "Portcullis".into(), instructions: "".into(), prompts: prompts.into() });
        };
        let answers: Vec<Zeroizing<String>> =
            response.take(2).map(|b| Zeroizing::new(String::from_utf8_lossy(&b).into_owned())).collect();
        let Some(password) = answers.first().cloned() else { return Ok(reject()) };
        let code = answers.get(1).map(|c| c.trim().to_owned());
        let auth = self.sign_in(user, password, code.as_deref()).await;
        if self.want_target_secret {
            // Same conversation: ask for the target's password next.
            return Ok(self.target_prompt());
        }
        Ok(auth)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let access = match self.access.clone() {
            Some(Ok(a)) => a,
            Some(Err(reason)) => {
                self.refuse(session, &reason).await;
                return Ok(());
            }
            None => {
                self.refuse(session, "not authorized").await;
                return Ok(());
            }
        };
        let client = match self.connect_upstream(&access).await {
            Ok(c) => c,
            Err(reason) => {
                self.refuse(session, &reason).await;
                return Ok(());
            }
        };
        let user = self.user.clone().ok_or(russh::Error::Disconnect)?;
        let login = self.pending_login.clone();
        match start_session(&self.state, &self.shared, &user, &access, &self.source(), session.handle(), login).await {
            Ok(recorder) => {
                // Written with the session start.
                self.pending_login = None;
                self.recorder = Some(recorder);
                self.upstream = Some(client.into_handle());
                self.touch();
            }
            Err(reason) => self.refuse(session, &reason).await,
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(up) = self.upstream.as_ref() else {
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        if self.channels.len() >= MAX_CHANNELS {
            reply.reject(russh::ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        let upstream = up.channel_open_session().await;
        self.open_upstream_channel(channel, upstream, reply, session, "session".into()).await
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = matches!(&self.access, Some(Ok(a)) if a.settings.port_forwarding);
        let description =
            format!("direct-tcpip {host_to_connect}:{port_to_connect} from {originator_address}:{originator_port}");
        let Some(up) = self.upstream.as_ref().filter(|_| allowed && self.channels.len() < MAX_CHANNELS) else {
            let refused = format!("refused {description}");
            let number = self.next_number;
            self.record(Event::new(self.now_rec(), EventKind::ChannelOpen, number, refused)).await?;
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        let upstream =
            up.channel_open_direct_tcpip(host_to_connect, port_to_connect, originator_address, originator_port).await;
        self.open_upstream_channel(channel, upstream, reply, session, description).await
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        let Some(number) = self.channels.get(&channel).map(|c| c.number) else { return Ok(()) };
        self.shared.bytes_up.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.touch();
        // One copy of the client's bytes, shared by the recorder and the target leg.
        let bytes = bytes::Bytes::copy_from_slice(data);
        self.record(Event::new(self.now_rec(), EventKind::Input, number, bytes.clone())).await?;
        let ops = match self.channels.get(&channel) {
            Some(c) => {
                c.files.lock().unwrap_or_else(|p| p.into_inner()).as_mut().map(|t| t.client(data)).unwrap_or_default()
            }
            None => vec![],
        };
        for op in ops {
            self.record(Event::new(self.now_rec(), EventKind::File, number, op.to_string().into_bytes())).await?;
        }
        self.up(channel, Up::Data(bytes)).await
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.up(channel, Up::Eof).await
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        let r = self.up(channel, Up::Close).await;
        self.channels.remove(&channel);
        r
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(number) = self.channels.get(&channel).map(|c| c.number) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        self.record(Event::pty(self.now_rec(), number, col_width, row_height, term)).await?;
        let pty = Up::Pty {
            term: term.into(),
            cols: col_width,
            rows: row_height,
            px: pix_width,
            py: pix_height,
            modes: modes.to_vec(),
        };
        self.up(channel, pty).await
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        let Some(number) = self.channels.get(&channel).map(|c| c.number) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        self.record(Event::new(self.now_rec(), EventKind::Shell, number, Vec::new())).await?;
        self.up(channel, Up::Shell).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(number) = self.channels.get(&channel).map(|c| c.number) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        self.record(Event::new(self.now_rec(), EventKind::Exec, number, data.to_vec())).await?;
        if let Some(c) = self.channels.get(&channel) {
            if let Some(t) = ScpTracker::for_command(data) {
                *c.files.lock().unwrap_or_else(|p| p.into_inner()) = Some(FileTracker::Scp(t));
            }
        }
        self.up(channel, Up::Exec(data.to_vec())).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(number) = self.channels.get(&channel).map(|c| c.number).filter(|_| name == "sftp") else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        self.record(Event::new(self.now_rec(), EventKind::Subsystem, number, name.as_bytes().to_vec())).await?;
        if let Some(c) = self.channels.get(&channel) {
            *c.files.lock().unwrap_or_else(|p| p.into_inner()) = Some(FileTracker::Sftp(SftpTracker::default()));
        }
        self.up(channel, Up::Subsystem(name.into())).await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(number) = self.channels.get(&channel).map(|c| c.number) else { return Ok(()) };
        let text = format!("{variable_name}={variable_value}");
        self.record(Event::new(self.now_rec(), EventKind::Env, number, text.into_bytes())).await?;
        self.up(channel, Up::Env(variable_name.into(), variable_value.into())).await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(number) = self.channels.get(&channel).map(|c| c.number) else { return Ok(()) };
        self.record(Event::resize(self.now_rec(), number, col_width, row_height)).await?;
        self.up(channel, Up::WindowChange(col_width, row_height, pix_width, pix_height)).await
    }

    async fn signal(&mut self, channel: ChannelId, signal: Sig, _session: &mut Session) -> Result<(), Self::Error> {
        let Some(number) = self.channels.get(&channel).map(|c| c.number) else { return Ok(()) };
        self.record(Event::new(self.now_rec(), EventKind::Signal, number, format!("{signal:?}").into_bytes())).await?;
        self.up(channel, Up::Signal(signal)).await
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }
}
