//! The leg to the target: the pre-connection, the login with the vaulted credential, and the
//! per-channel uplink that carries the client's data to it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use portcullis_connect::{ConnectError, Credential, Login, Target};
use portcullis_core::policy::AccountMode;
use portcullis_recording::{Event, EventKind};
use portcullis_store::{Actor, Asset, NewEvent, Outcome};
use russh::client;
use russh::server::{ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelWriteHalf, Disconnect, Pty, Sig};
use serde_json::json;

use crate::content::Tracks;

use super::*;

pub(super) struct UpChannel {
    /// To the channel's uplink task, which forwards to the target in order.
    pub(super) tx: tokio::sync::mpsc::Sender<Up>,
    pub(super) number: u32,
    pub(super) tracks: Tracks,
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
pub(super) async fn uplink(
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
pub(super) struct Preconnect {
    pub(super) target: Target,
    pub(super) task: tokio::task::JoinHandle<Result<portcullis_connect::SshClient, ConnectError>>,
}

impl Drop for Preconnect {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn ssh_target(asset: &Asset) -> Result<Target, String> {
    let port = asset
        .protocols
        .iter()
        .find(|p| p.protocol == portcullis_core::inventory::Protocol::Ssh)
        .map(|p| p.port)
        .ok_or_else(|| format!("{} has no SSH service configured in Portcullis", asset.name))?;
    Ok(Target { host: asset.address.clone(), port, host_key: asset.host_key.clone(), timeout: Duration::from_secs(15) })
}

pub(super) fn same_target(a: &Target, b: &Target) -> bool {
    a.host == b.host && a.port == b.port && a.host_key == b.host_key
}

impl Conn {
    /// Logs in to the target with the vaulted credential.
    pub(super) async fn connect_upstream(&mut self, access: &Access) -> Result<portcullis_connect::SshClient, String> {
        let asset = &access.asset;
        let (target, leg) = self.leg_to(asset)?;
        let state = &self.state;
        // The account that logs in: the requested one, or a directory account (linked to the
        // user, or named by the policy).
        let login = portcullis_app::session_access::login_account(state, access).await?;
        let (key, password) = if access.settings.account_mode == AccountMode::UserSupplied {
            // The user's own credential for the target, typed at sign-in; nothing vaulted.
            let typed =
                self.target_secret.as_ref().map(|s| (0, portcullis_vault::Plaintext::new(s.as_bytes().to_vec())));
            (Ok(None), Ok(typed))
        } else {
            (
                portcullis_app::credentials::current(state, &login.id, "ssh_key").await,
                portcullis_app::credentials::current(state, &login.id, "password").await,
            )
        };
        let (Ok(key), Ok(password)) = (key, password) else {
            return Err("Portcullis cannot read the account's credential right now".into());
        };
        if key.is_none() && password.is_none() {
            return Err(format!(
                "the vault holds no credential for {}; ask an administrator",
                login_name(&login, access)
            ));
        }
        let connected = match self.preconnect.take() {
            Some(mut p) if same_target(&p.target, &target) => {
                (&mut p.task).await.unwrap_or_else(|_| Err(ConnectError::Unreachable("connection task ended".into())))
            }
            _ => portcullis_connect::connect_session_via(&target, &leg).await,
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
        let mut result = Err(ConnectError::AuthenticationFailed(login.name.clone()));
        if let Some((_, k)) = &key {
            result = client.authenticate(Login { username: &login.name, credential: Credential::PrivateKey(k) }).await;
        }
        if let (Err(_), Some((_, p))) = (&result, &password) {
            result = client.authenticate(Login { username: &login.name, credential: Credential::Password(p) }).await;
        }
        result.map_err(|e| self.upstream_error(access, &e))?;
        if asset.host_key.is_none() && !client.host_key().is_empty() {
            let _ = state.store.pin_host_key(state.now(), &asset.id, client.host_key()).await;
        }
        Ok(client)
    }

    pub(super) fn upstream_error(&self, access: &Access, e: &ConnectError) -> String {
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

    pub(super) async fn refuse(&mut self, session: &mut Session, reason: &str) {
        self.write_pending_login().await;
        let user_id = self.user.as_ref().map_or("", |u| u.id.as_str());
        crate::pipeline::audit_refusal(&self.state, &self.actor(), user_id, reason, &self.source()).await;
        let _ = session.disconnect(Disconnect::ByApplication, &format!("Portcullis: {reason}"), "en");
    }

    pub(super) async fn record(&mut self, e: Event) -> Result<(), russh::Error> {
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
    pub(super) async fn up(&mut self, channel: ChannelId, msg: Up) -> Result<(), russh::Error> {
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

    pub(super) fn now_rec(&self) -> u64 {
        self.recorder.as_ref().map_or(0, |r| r.now())
    }

    pub(super) fn touch(&self) {
        self.shared.last_activity.store(self.state.now(), Ordering::Relaxed);
    }

    pub(super) async fn open_upstream_channel(
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
        let tracks = Tracks { watch: self.watch.clone(), ..Tracks::default() };
        tokio::spawn(crate::relay::pump(
            up_read,
            client_write,
            session.handle(),
            id,
            number,
            recorder,
            self.shared.clone(),
            self.state.clone(),
            tracks.clone(),
            session_channel,
        ));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(uplink(up_write, rx, self.shared.stop.subscribe()));
        self.channels.insert(id, UpChannel { tx, number, tracks });
        reply.accept().await;
        Ok(())
    }
}

/// How a login account is named in messages: ACCOUNT@ASSET, or for a directory account used on
/// another asset, "the directory account ACCOUNT@DIRECTORY".
fn login_name(login: &portcullis_store::Account, access: &Access) -> String {
    if login.id == access.account.id {
        format!("{}@{}", access.account.name, access.asset.name)
    } else {
        format!("the directory account {} (for {}@{})", login.name, access.account.name, access.asset.name)
    }
}
