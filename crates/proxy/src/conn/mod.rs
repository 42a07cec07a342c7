//! One client connection: authentication, authorization, the leg to the target, and the
//! client's side of every channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use portcullis_app::App as AppState;
use portcullis_connect::HostKeyCheck;
use portcullis_core::connection::{parse, ConnectionString};
use portcullis_core::gateway::{ChannelKind, ConnectionPolicy};
use portcullis_recording::{Event, EventKind, Recorder};
use portcullis_store::{Actor, ProxyLogin, User};
use russh::client;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Pty, Sig};
use zeroize::Zeroizing;

use crate::files::{FileTracker, ScpTracker, SftpTracker};
use crate::serve::{start_session, Shared};

mod aa;
mod channels;
mod signin;
mod upstream;
mod wait;

use upstream::{Preconnect, Up, UpChannel};

/// Channels one connection may have open at once.
const MAX_CHANNELS: usize = 32;

/// Why X11, agent and remote forwarding are refused whatever the policy says.
const UNSUPPORTED: &str = "the Portcullis SSH proxy does not relay it";

/// What an authorized connection may use.
pub(crate) use portcullis_app::session_access::SessionAccess as Access;

pub(crate) struct Conn {
    state: AppState,
    peer: SocketAddr,
    /// The proxy port the client came to (connection policies match on it).
    listen_port: u16,
    /// The connection policy that admitted the connection (R-SES-2), once the target is named.
    gateway: Option<ConnectionPolicy>,
    /// The signed-in user's group ids, for the channel rules' user lists.
    groups: Vec<String>,
    /// The content rules, once the session started (none: nothing to watch).
    watch: Option<std::sync::Arc<crate::content::Watch>>,
    /// A content rule ended the session: nothing more goes to the target.
    muted: bool,
    /// Waits still ahead (gateway authentication, four-eyes), the one running (id, verdict,
    /// deadline) and its kind, and who permitted the session.
    waits: Vec<portcullis_app::waiting::WaitKind>,
    waiting: Option<(String, tokio::sync::watch::Receiver<Option<portcullis_app::waiting::Verdict>>, i64)>,
    current_wait: Option<portcullis_app::waiting::WaitKind>,
    authorizers: Vec<String>,
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
    /// The Portcullis password, right, while the one-time code is asked for next (asked only
    /// after the password, so the first prompt does not tell who has a second factor).
    awaiting_code: Option<Zeroizing<String>>,
    /// The last sign-in needs a one-time code.
    code_wanted: bool,
    /// Started once per connection at most.
    preconnect: Option<Preconnect>,
    /// The key the client offered last and its owner (user name as typed, fingerprint, user):
    /// the signature that follows within the same sign-in needs no second lookup.
    offered_key: Option<(String, String, User)>,
    preconnect_tried: bool,
    /// A sign-in not written yet: it goes into the session-start transaction (one durable
    /// commit fewer per session), or is written on its own before any refusal.
    pending_login: Option<ProxyLogin>,
    /// The AA plugin's conversation while its questions are asked.
    aa: Option<aa::AaPending>,
    /// The server's AA plugins.
    plugins: Arc<crate::aa::AaPlugins>,
}

/// Where the proxy reaches `asset` over SSH.
fn methods() -> MethodSet {
    MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password, MethodKind::KeyboardInteractive][..])
}

fn reject() -> Auth {
    Auth::Reject { proceed_with_methods: Some(methods()), partial_success: false }
}

impl Drop for Conn {
    /// A connection that ends between the sign-in and the session start (it cannot in russh's
    /// order of calls, but a shutdown can cut anything short) still has its sign-in audited.
    fn drop(&mut self) {
        if let Some((id, _, _)) = self.waiting.take() {
            let state = self.state.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { portcullis_app::waiting::leave(&state, &id).await });
            }
        }
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
        Ok(reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.sign_in(user, Zeroizing::new(password.to_owned()), None).await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Only say yes for a key registered to the named user (nothing else is revealed).
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
            via: "ssh",
        };
        self.access = self.authorize(&owner, &account, &asset).await;
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
        if self.aa.is_some() {
            return Ok(self.aa_answer(response).await);
        }
        if self.want_target_secret {
            let Some(mut response) = response else { return Ok(self.target_prompt()) };
            let Some(secret) = response.next() else { return Ok(reject()) };
            self.target_secret = Some(Zeroizing::new(String::from_utf8_lossy(&secret).into_owned()));
            self.want_target_secret = false;
            if self.must_wait() {
                return Ok(self.wait_step(false).await);
            }
            return Ok(Auth::Accept);
        }
        if self.must_wait() {
            return Ok(self.wait_step(response.is_some()).await);
        }
        let Some(response) = response else {
            self.awaiting_code = None;
            let prompts = vec![(std::borrow::Cow::Borrowed("Portcullis password: "), false)];
            return Ok(Auth::Partial { name: "Portcullis".into(), instructions: "".into(), prompts: prompts.into() });
        };
        let answers: Vec<Zeroizing<String>> =
            response.take(2).map(|b| Zeroizing::new(String::from_utf8_lossy(&b).into_owned())).collect();
        let (password, code) = match self.awaiting_code.take() {
            Some(password) => (password, answers.first().map(|c| c.trim().to_owned())),
            None => {
                let Some(password) = answers.first().cloned() else { return Ok(reject()) };
                (password, answers.get(1).map(|c| c.trim().to_owned()))
            }
        };
        self.code_wanted = false;
        let auth = self.sign_in(user, password.clone(), code.as_deref()).await;
        if self.code_wanted && code.is_none() {
            // The password was right: the one-time code next, in the same conversation.
            self.awaiting_code = Some(password);
            let prompts = vec![(std::borrow::Cow::Borrowed("One-time code: "), true)];
            return Ok(Auth::Partial { name: "Portcullis".into(), instructions: "".into(), prompts: prompts.into() });
        }
        if self.aa.is_some() {
            // Same conversation: the AA plugin's questions next.
            return Ok(self.aa_prompts());
        }
        if self.want_target_secret {
            // Same conversation: ask for the target's password next.
            return Ok(self.target_prompt());
        }
        if self.must_wait() && !matches!(auth, Auth::Reject { partial_success: false, .. }) {
            // Same conversation: the wait's notice next.
            return Ok(self.wait_step(false).await);
        }
        Ok(auth)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.shared.authenticated.send_replace(true);
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
        let source = self.source();
        let handle = Some(session.handle());
        let ssh = portcullis_core::inventory::Protocol::Ssh;
        let started = start_session(
            &self.state,
            &self.shared,
            &user,
            &access,
            &source,
            self.gateway.as_ref(),
            ssh,
            handle,
            login,
        );
        match started.await {
            Ok(recorder) => {
                // Written with the session start.
                self.pending_login = None;
                self.watch = self.content_watch(&user, &access);
                if let Some(id) = self.shared.session_id().filter(|_| !self.authorizers.is_empty()) {
                    self.state.waiting.authorized(&id, std::mem::take(&mut self.authorizers));
                }
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
        let description =
            format!("direct-tcpip {host_to_connect}:{port_to_connect} from {originator_address}:{originator_port}");
        let refusal = match &self.access {
            Some(Ok(a)) if !a.settings.port_forwarding => {
                Some(format!("the access policy '{}' does not allow port forwarding", a.policy_name))
            }
            _ => {
                let port = u16::try_from(port_to_connect).unwrap_or(0);
                let dest = Some((host_to_connect, port));
                self.channel_verdict(ChannelKind::LocalForward, None, dest).err()
            }
        };
        let Some(up) = self.upstream.as_ref().filter(|_| refusal.is_none() && self.channels.len() < MAX_CHANNELS)
        else {
            let why = refusal.unwrap_or_else(|| "too many channels are open".into());
            self.channel_refused(None, ChannelKind::LocalForward, &format!("{description}: {why}")).await?;
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        let upstream =
            up.channel_open_direct_tcpip(host_to_connect, port_to_connect, originator_address, originator_port).await;
        self.open_upstream_channel(channel, upstream, reply, session, description).await
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        let Some(number) = self.channels.get(&channel).map(|c| c.number) else { return Ok(()) };
        if self.muted {
            return Ok(());
        }
        self.shared.bytes_up.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.touch();
        // One copy of the client's bytes, shared by the recorder and the target leg.
        let bytes = bytes::Bytes::copy_from_slice(data);
        self.record(Event::new(self.now_rec(), EventKind::Input, number, bytes.clone())).await?;
        let tracks = self.channels.get(&channel).map(|c| c.tracks.clone()).unwrap_or_default();
        let ops =
            tracks.files.lock().unwrap_or_else(|p| p.into_inner()).as_mut().map(|t| t.client(data)).unwrap_or_default();
        for op in &ops {
            self.record(Event::new(self.now_rec(), EventKind::File, number, op.to_string().into_bytes())).await?;
        }
        if let Some(w) = &tracks.watch {
            let hit = [w.typed(&tracks.lines, data), w.files(&ops)].into_iter().flatten().max_by_key(|h| h.action);
            if let Some(hit) = hit {
                if self.content_hit(number, &hit).await {
                    // The line that matched never reaches the target.
                    return Ok(());
                }
            }
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
        if !self.channel_allowed(channel, session, ChannelKind::Shell, None, None).await? {
            return Ok(());
        }
        self.record(Event::new(self.now_rec(), EventKind::Shell, number, Vec::new())).await?;
        if let Some(c) = self.channels.get(&channel) {
            c.tracks.lines.lock().unwrap_or_else(|p| p.into_inner()).interactive = true;
        }
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
        let scp = ScpTracker::for_command(data);
        let command = String::from_utf8_lossy(data).into_owned();
        let (kind, listed) = match &scp {
            Some(_) => (ChannelKind::Scp, None),
            None => (ChannelKind::Exec, Some(command.as_str())),
        };
        if !self.channel_allowed(channel, session, kind, listed, None).await? {
            return Ok(());
        }
        self.record(Event::new(self.now_rec(), EventKind::Exec, number, data.to_vec())).await?;
        if let Some(hit) = self.watch.as_ref().and_then(|w| w.command(&command)) {
            if self.content_hit(number, &hit).await {
                return Ok(());
            }
        }
        if let (Some(c), Some(t)) = (self.channels.get(&channel), scp) {
            *c.tracks.files.lock().unwrap_or_else(|p| p.into_inner()) = Some(FileTracker::Scp(t));
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
        if !self.channel_allowed(channel, session, ChannelKind::Sftp, None, None).await? {
            return Ok(());
        }
        self.record(Event::new(self.now_rec(), EventKind::Subsystem, number, name.as_bytes().to_vec())).await?;
        if let Some(c) = self.channels.get(&channel) {
            *c.tracks.files.lock().unwrap_or_else(|p| p.into_inner()) = Some(FileTracker::Sftp(SftpTracker::default()));
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
        self.channel_refused(Some(channel), ChannelKind::X11, UNSUPPORTED).await?;
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(&mut self, channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        self.channel_refused(Some(channel), ChannelKind::Agent, UNSUPPORTED).await?;
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let why = format!("{address}:{port}: {UNSUPPORTED}");
        self.channel_refused(None, ChannelKind::RemoteForward, &why).await?;
        Ok(false)
    }
}
