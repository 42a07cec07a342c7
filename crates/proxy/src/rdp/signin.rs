//! An RDP connection from its named target to a started session: before any password, only an
//! existing, enabled user and an account in the inventory that a connection policy admits get
//! a target connection (as the SSH proxy's early target leg); the PDUs of the MCS connection
//! are relayed until the client's Client Info PDU, whose sign-in is checked; then the pipeline
//! (AA plugin, request check, waits), the credential, the target's certificate pin, the
//! session's start, and the Client Info PDU with the vaulted credential goes to the target.

use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_app::session_access::{self, SessionAccess};
use portcullis_app::waiting::{self, Verdict, WaitKind};
use portcullis_app::App as AppState;
use portcullis_core::gateway::ConnectionPolicy;
use portcullis_core::inventory::Protocol;
use portcullis_core::policy::{AccessType, AccountMode};
use portcullis_store::{Actor, Asset, NewEvent, Outcome, ProxyLogin, User};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::frames::FrameReader;
use super::wire::{self, errinfo, ClientLogin};
use super::{Named, RdpConfig};
use crate::serve::{start_session, Shared};

pub(super) type ClientTls = tokio_rustls::server::TlsStream<TcpStream>;
pub(super) type TargetTls = tokio_rustls::client::TlsStream<TcpStream>;

/// What is known before the password: who the client says it is, and where it goes.
pub(super) struct Prepared {
    /// USER#ACCOUNT@ASSET as named (in-band sign-in).
    pub inband: Option<String>,
    /// A launch token's user (signed in by the token) and what it gives.
    pub token: Option<(User, SessionAccess)>,
    /// The user named (in-band) or the token's.
    pub user: User,
    pub account: String,
    pub asset: Asset,
    pub destination: (String, u16),
    pub source_address: Option<std::net::IpAddr>,
    pub policy: ConnectionPolicy,
    pub groups: Vec<String>,
}

/// Looks up what the client named; `None` (closed, nothing told) when no target may be
/// contacted: unknown, disabled or locked user, unknown account, unusable launch token, or no
/// connection policy admitting it.
pub(super) async fn prepare(state: &AppState, named: Named, peer: SocketAddr, listen_port: u16) -> Option<Prepared> {
    let source = peer.to_string();
    let (inband, token, user, account, asset) = match named {
        Named::Inband { user, account, asset } => {
            let u = state.store.login_state(&user).await.ok()??.user;
            if u.disabled || u.locked_until.is_some_and(|t| t > state.now()) {
                return None;
            }
            let (asset_row, _) = state.store.account_by_names(&asset, &account).await.ok()??;
            (Some(format!("{user}#{account}@{asset}")), None, u, account, asset_row)
        }
        Named::Token(t) => {
            let (user, access) = session_access::redeem_launch_token(state, &t, &source, "rdp").await?;
            let access = match access.and_then(|a| {
                if a.request.access_type == AccessType::Rdp {
                    Ok(a)
                } else {
                    Err(format!("the launch token is for a {} request, not RDP", a.request.access_type.as_str()))
                }
            }) {
                Ok(a) => a,
                Err(reason) => {
                    audit_refusal(state, &user, &reason, &source).await;
                    return None;
                }
            };
            let (account, asset) = (access.account.name.clone(), access.asset.clone());
            (None, Some((user.clone(), access)), user, account, asset)
        }
    };
    let (policy, groups) =
        match crate::pipeline::admit(state, peer.ip(), listen_port, Protocol::Rdp, &user, &asset).await {
            Ok(p) => p,
            Err(reason) => {
                tracing::info!(%peer, user = %user.username, %reason, "rdp: not admitted");
                if token.is_some() {
                    audit_refusal(state, &user, &reason, &source).await;
                }
                return None;
            }
        };
    let (address, port) = portcullis_app::gateway::endpoint(&asset, Protocol::Rdp)?;
    let destination = policy.destination(&address, port);
    let source_address = policy.source_address;
    Some(Prepared { inband, token, user, account, asset, destination, source_address, policy, groups })
}

pub(super) async fn audit_refusal(state: &AppState, user: &User, reason: &str, source: &str) {
    let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.to_owned() };
    crate::pipeline::audit_refusal(state, &actor, &user.id, reason, source).await;
}

/// One connection after both TLS handshakes.
pub(super) struct Connection<'a> {
    pub state: &'a AppState,
    pub cfg: &'a RdpConfig,
    pub peer: SocketAddr,
    pub shared: &'a Arc<Shared>,
    pub ticket: Option<crate::gate::Ticket>,
    /// The target certificate's fingerprint.
    pub seen: String,
    /// The security protocols the client requested.
    pub requested: u32,
}

/// What the MCS connection showed: channel names by id, the I/O channel.
#[derive(Default, Clone)]
pub(super) struct Channels {
    pub names: Vec<String>,
    pub ids: Vec<u16>,
    pub io: u16,
    /// The client's MCS user channel.
    pub user: u16,
    /// The client's bulk compression (Client Info), when it asked for it.
    pub compression: Option<&'static str>,
}

impl Connection<'_> {
    pub(super) async fn go(mut self, mut client: ClientTls, mut target: TargetTls, pre: Prepared) {
        let mut readers = (FrameReader::default(), FrameReader::default());
        let protocols = (self.requested, wire::PROTOCOL_SSL);
        let Some((login, channels)) = mcs(&mut client, &mut target, &mut readers, protocols).await else { return };
        let source = self.peer.to_string();
        let signed = self.sign_in(&login, &pre, &source).await;
        let (user, proxy_login) = match signed {
            Ok(s) => s,
            Err(why) => {
                tracing::info!(peer = %self.peer, user = %pre.user.username, reason = %why, "rdp: sign-in refused");
                return refuse_client(&mut client, &channels, errinfo::DENIED).await;
            }
        };
        drop(self.ticket.take());
        self.shared.authenticated.send_replace(true);
        let typed = login.password().map(|p| Zeroizing::new(p.to_owned()));
        let admitted = self.authorize(&user, &pre, &source, typed, true).await;
        let authorized = match admitted {
            Ok(a) => a,
            Err(reason) => {
                if let Some(l) = &proxy_login {
                    let _ = self.state.store.record_proxy_login(l).await;
                }
                audit_refusal(self.state, &user, &reason, &source).await;
                return refuse_client(&mut client, &channels, errinfo::INSUFFICIENT_PRIVILEGES).await;
            }
        };
        let signed = Signed { user, proxy_login, authorized };
        self.finish(Legs { client, target, readers, target_nla: false }, channels, login, &pre, signed).await;
    }

    /// A signed-in, authorized connection whose client sent its Client Info PDU: the session
    /// starts, the target gets the credential, the relay runs.
    pub(super) async fn finish(
        &self,
        legs: Legs,
        channels: Channels,
        mut login: ClientLogin,
        pre: &Prepared,
        signed: Signed,
    ) {
        let Legs { mut client, mut target, readers, target_nla } = legs;
        let Signed { user, proxy_login, authorized: (access, password, authorizers) } = signed;
        let source = self.peer.to_string();
        let Some(info) = login.rewritten(&access.account.name, &password) else {
            return refuse_client(&mut client, &channels, errinfo::DENIED).await;
        };
        drop(password);
        let started = start_session(
            self.state,
            self.shared,
            &user,
            &access,
            &source,
            Some(&pre.policy),
            Protocol::Rdp,
            None,
            proxy_login,
        );
        let recorder = match started.await {
            Ok(r) => r,
            Err(reason) => {
                audit_refusal(self.state, &user, &reason, &source).await;
                return refuse_client(&mut client, &channels, errinfo::INSUFFICIENT_PRIVILEGES).await;
            }
        };
        let session_id = self.shared.session_id().unwrap_or_default();
        if !authorizers.is_empty() {
            self.state.waiting.authorized(&session_id, authorizers);
        }
        if target.write_all(&info).await.is_err() {
            self.shared.set_end_reason("the target closed the connection");
            return;
        }
        drop(info);
        let refused = super::relay::refused_channels(self.state, &pre.policy, &pre.groups, &channels);
        let relay = super::relay::Relay {
            state: self.state.clone(),
            shared: self.shared.clone(),
            recorder,
            channels,
            refused,
            target_name: format!("{}@{}", access.account.name, access.asset.name),
            actor: Actor { id: user.id.clone(), name: user.username.clone(), source },
            session_id,
            logon_timeout: self.cfg.logon_timeout,
            logon_notice_only: access.asset.platform == portcullis_core::inventory::Platform::Windows,
            logged_on: target_nla,
        };
        let rest = (readers.0.into_rest(), readers.1.into_rest());
        relay.run(client, target, rest).await;
    }

    /// The Portcullis sign-in in the Client Info PDU (in-band), or the launch token's user;
    /// with the sign-in record still to be written.
    async fn sign_in(
        &self,
        login: &ClientLogin,
        pre: &Prepared,
        source: &str,
    ) -> Result<(User, Option<ProxyLogin>), String> {
        if let Some((user, _)) = &pre.token {
            return Ok((user.clone(), None));
        }
        let named = pre.inband.as_deref().unwrap_or_default();
        if login.username() != named {
            return Err(format!("the user name '{}' is not the one the connection named", login.username()));
        }
        let password = Zeroizing::new(login.password().unwrap_or_default().to_owned());
        let (user, _) = match portcullis_app::auth::verify_login(self.state, source, &pre.user.username, password, None)
            .await
        {
            Ok(u) => u,
            Err(e) if e.code == "totp_required" => {
                return Err(
                    "the user has a one-time code, which an RDP client cannot send: start the session with a launch token (portcullis request launch)".into(),
                )
            }
            Err(e) => return Err(e.message),
        };
        let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.to_owned() };
        let login = ProxyLogin {
            actor,
            at: self.state.now(),
            user_id: user.id.clone(),
            totp_step: None,
            key_fingerprint: None,
            via: "rdp",
        };
        Ok((user, Some(login)))
    }

    /// After sign-in: the AA plugin, the request check, the credential, the certificate pin,
    /// the waits. The access, the password for the target, and who permitted the session.
    pub(super) async fn authorize(
        &self,
        user: &User,
        pre: &Prepared,
        source: &str,
        typed: Option<Zeroizing<String>>,
        pin_now: bool,
    ) -> Result<Authorized, String> {
        let state = self.state;
        let mut account = pre.account.clone();
        let mut aa = None;
        if let Some(plugin) = &pre.policy.aa_plugin {
            let mut conversation = crate::aa::Conversation::new(plugin);
            let facts = crate::pipeline::aa_facts(Protocol::Rdp, user, source, &account, &pre.asset.name, &pre.policy);
            let result = match conversation.start(&self.cfg.aa_plugins, &facts).await {
                Ok(crate::aa::Step::Allowed { account: mapped }) if pre.token.is_none() => {
                    crate::pipeline::mapped_account(&pre.policy, &account, mapped)
                }
                Ok(crate::aa::Step::Allowed { .. }) => Ok(account.clone()),
                Ok(crate::aa::Step::Ask(_)) => Err(
                    "the connection policy's AA plugin asks questions, which an RDP client cannot answer; ask a Security Policy Administrator".to_owned(),
                ),
                Err(why) => Err(why),
            };
            let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.to_owned() };
            let target = format!("{account}@{}", pre.asset.name);
            crate::pipeline::audit_aa(
                state,
                &actor,
                &user.id,
                &conversation,
                &target,
                result.as_ref().err().map(String::as_str),
            )
            .await;
            account = result?;
            aa = Some(conversation.record());
        }
        let mut access = match &pre.token {
            Some((_, access)) => access.clone(),
            None => session_access::authorize(state, user, AccessType::Rdp, &account, &pre.asset.name, None).await?,
        };
        access.aa = aa;
        let password = match access.settings.account_mode {
            AccountMode::Vaulted => vaulted(state, &access).await?,
            AccountMode::UserSupplied if pre.token.is_some() => {
                typed.filter(|t| !t.is_empty()).ok_or("type the target account's password as the RDP password")?
            }
            AccountMode::UserSupplied => return Err(
                "the policy asks you for the target's password: start the session with a launch token (portcullis request launch) and give the target password as the RDP password".into(),
            ),
            other => {
                return Err(format!(
                    "the policy's account mode ({}) is not supported by the RDP proxy; ask an administrator",
                    other.as_str()
                ))
            }
        };
        if pin_now {
            self.check_pin(&access.asset).await?;
        }
        let mut authorizers = Vec::new();
        for kind in crate::pipeline::planned_waits(&pre.policy) {
            if let Some(by) = self.wait(user, &access, &pre.policy, source, kind).await? {
                authorizers.push(by);
            }
        }
        Ok((access, password, authorizers))
    }

    /// The target's certificate against the asset's pin: pinned now if none is; a different
    /// one refuses (and alerts).
    pub(super) async fn check_pin(&self, asset: &Asset) -> Result<(), String> {
        let state = self.state;
        match &asset.tls_fingerprint {
            None => {
                let _ = state.store.pin_tls_fingerprint(state.now(), &asset.id, &self.seen).await;
                Ok(())
            }
            Some(pinned) if *pinned == self.seen => Ok(()),
            Some(pinned) => {
                let event = NewEvent::success("asset.tls_fingerprint_mismatch", "asset", &asset.id)
                    .with_outcome(Outcome::Failure)
                    .with_details(json!({ "pinned": pinned, "seen": self.seen, "alert": true }));
                let _ = state.store.record(&Actor::system(), state.now(), event).await;
                Err(format!(
                    "the RDP certificate of {} is not the pinned one (pinned {pinned}, presented {}); nothing was sent to it. An Asset Administrator must check the asset and clear the pin (portcullis asset update {} --clear-tls-fingerprint)",
                    asset.name, self.seen, asset.name
                ))
            }
        }
    }

    /// A wait for a person. The RDP client cannot be told (its screen is not there yet): the
    /// wait shows under Live sessions and in `portcullis session waiting`.
    async fn wait(
        &self,
        user: &User,
        access: &SessionAccess,
        policy: &ConnectionPolicy,
        source: &str,
        kind: WaitKind,
    ) -> Result<Option<String>, String> {
        let state = self.state;
        let wait = crate::pipeline::new_wait(state, kind, user, access, policy, source);
        let (id, until) = (wait.id.clone(), wait.until);
        let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.to_owned() };
        let mut rx = waiting::enter(state, &actor, wait).await;
        self.shared.waiting.store(true, std::sync::atomic::Ordering::Relaxed);
        let left = std::time::Duration::from_micros(u64::try_from(until - state.now()).unwrap_or(0));
        let verdict = tokio::time::timeout(left, rx.wait_for(|v| v.is_some())).await.ok().and_then(|v| v.ok()?.clone());
        self.shared.waiting.store(false, std::sync::atomic::Ordering::Relaxed);
        waiting::leave(state, &id).await;
        match verdict {
            Some(Verdict::Permitted { by }) => Ok((kind == WaitKind::FourEyes).then_some(by)),
            Some(Verdict::Denied { reason, .. }) => Err(reason),
            None => Err(crate::pipeline::wait_timed_out(kind)),
        }
    }
}

/// Both legs after TLS, with what their readers hold.
pub(super) struct Legs {
    pub client: ClientTls,
    pub target: TargetTls,
    pub readers: (FrameReader, FrameReader),
    /// The target accepted the credential over NLA already.
    pub target_nla: bool,
}

/// What authorizing a connection gives: the access, the target's password, who permitted it.
pub(super) type Authorized = (SessionAccess, Zeroizing<String>, Vec<String>);

/// A signed-in user, the sign-in record still to be written, and the authorization.
pub(super) struct Signed {
    pub user: User,
    pub proxy_login: Option<ProxyLogin>,
    pub authorized: Authorized,
}

/// The MCS connection, relayed until the client's Client Info PDU (whose bytes are wiped: it
/// holds a password); what the MCS PDUs showed of the channels.
/// `protocols`: what the client requested, and what the target selected (the Connect
/// Initial and Response are made to agree with each leg's negotiation).
pub(super) async fn mcs(
    client: &mut ClientTls,
    target: &mut TargetTls,
    (from_client, from_target): &mut (FrameReader, FrameReader),
    (requested, selected): (u32, u32),
) -> Option<(ClientLogin, Channels)> {
    let mut channels = Channels { io: 1003, ..Default::default() };
    let login = loop {
        tokio::select! {
            f = from_client.next(client) => {
                let f = f.ok()??;
                if let Some(login) = wire::client_login(&f) {
                    if let Ok(mut buf) = f.try_into_mut() {
                        zeroize::Zeroize::zeroize(&mut buf[..]);
                    }
                    break login;
                }
                if let Some(names) = wire::requested_channels(&f) {
                    channels.names = names;
                    let mut f = f.to_vec();
                    wire::set_selected_protocol(&mut f, selected);
                    target.write_all(&f).await.ok()?;
                    continue;
                }
                target.write_all(&f).await.ok()?;
            }
            f = from_target.next(target) => {
                let f = f.ok()??;
                if let Some(user) = wire::attach_user_confirm(&f) {
                    channels.user = user;
                }
                if let Some((io, ids)) = wire::granted_channels(&f) {
                    channels.io = io;
                    channels.ids = ids;
                    let mut f = f.to_vec();
                    wire::set_requested_protocols(&mut f, requested);
                    client.write_all(&f).await.ok()?;
                    continue;
                }
                client.write_all(&f).await.ok()?;
            }
        }
    };
    channels.compression = login.compression();
    Some((login, channels))
}

/// The vaulted password of the account.
async fn vaulted(state: &AppState, access: &SessionAccess) -> Result<Zeroizing<String>, String> {
    let current = portcullis_app::credentials::current(state, &access.account.id, "password")
        .await
        .map_err(|_| "Portcullis cannot read the account's credential right now".to_owned())?;
    let Some((_, plain)) = current else {
        return Err(format!(
            "the vault holds no password for {}@{} (RDP logs in with a password); ask an administrator",
            access.account.name, access.asset.name
        ));
    };
    Ok(Zeroizing::new(String::from_utf8_lossy(plain.expose()).into_owned()))
}

/// Tells the client why it is refused (a Set Error Info code its user sees) and closes.
async fn refuse_client(client: &mut ClientTls, channels: &Channels, code: u32) {
    let pdus = wire::error_and_disconnect(channels.io, 1002, 0, code, false);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let _ = client.write_all(&pdus).await;
        let _ = client.shutdown().await;
    })
    .await;
}
