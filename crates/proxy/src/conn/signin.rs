//! Sign-in and authorization: the Portcullis user (password, one-time code, public key,
//! launch token), the target they name, and the available request that lets them use it.

use portcullis_app::session_access;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_app::App as AppState;
use portcullis_core::connection::{parse, ConnectionString};
use portcullis_core::inventory::Protocol;
use portcullis_core::policy::{AccessType, AccountMode};
use portcullis_store::{Actor, Asset, ProxyLogin, User};
use russh::server::Auth;
use russh::{MethodKind, MethodSet};
use zeroize::Zeroizing;

use crate::serve::Shared;

use super::upstream::{ssh_target, Preconnect};
use super::*;

impl Conn {
    pub(crate) fn new(
        state: AppState,
        peer: SocketAddr,
        listen_port: u16,
        shared: Arc<Shared>,
        plugins: Arc<crate::aa::AaPlugins>,
    ) -> Conn {
        Conn {
            state,
            peer,
            listen_port,
            gateway: None,
            groups: Vec::new(),
            watch: None,
            muted: false,
            waits: Vec::new(),
            waiting: None,
            current_wait: None,
            authorizers: Vec::new(),
            shared,
            user: None,
            access: None,
            upstream: None,
            channels: HashMap::new(),
            recorder: None,
            next_number: 0,
            target_secret: None,
            want_target_secret: false,
            awaiting_code: None,
            code_wanted: false,
            preconnect: None,
            preconnect_tried: false,
            offered_key: None,
            pending_login: None,
            aa: None,
            plugins,
        }
    }

    /// Starts the connection to the target the signed-in user names (TCP and key exchange
    /// only: no credential is read or sent before the request check succeeds), so that it
    /// overlaps the request check and the audit writes. Never before authentication (an
    /// anonymous client touches no target and learns nothing of the inventory), and only where
    /// the connection policy sends the target leg.
    fn preconnect(&mut self, asset: &Asset) {
        if std::mem::replace(&mut self.preconnect_tried, true) {
            return;
        }
        let Ok((target, leg)) = self.leg_to(asset) else { return };
        let t = target.clone();
        let task = tokio::spawn(async move { portcullis_connect::connect_session_via(&t, &leg).await });
        self.preconnect = Some(Preconnect { target, task });
    }

    /// The connection policy for this client and target (see [`crate::pipeline::admit`]).
    pub(super) async fn admit(&mut self, user: &User, asset: &Asset) -> Result<(), String> {
        let (policy, groups) =
            crate::pipeline::admit(&self.state, self.peer.ip(), self.listen_port, Protocol::Ssh, user, asset).await?;
        self.groups = groups;
        self.gateway = Some(policy);
        self.plan_waits();
        Ok(())
    }

    /// Where the target leg goes and how, by the connection policy.
    pub(super) fn leg_to(
        &self,
        asset: &Asset,
    ) -> Result<(portcullis_connect::Target, portcullis_connect::Leg), String> {
        let mut target = ssh_target(asset)?;
        let policy = self.gateway.as_ref().ok_or_else(|| "no connection policy admitted this connection".to_owned())?;
        (target.host, target.port) = policy.destination(&target.host, target.port);
        let a = &policy.algorithms;
        let leg = portcullis_connect::Leg {
            source: policy.source_address,
            kex: a.kex.clone(),
            ciphers: a.ciphers.clone(),
            macs: a.macs.clone(),
            host_keys: a.host_keys.clone(),
        };
        Ok((target, leg))
    }

    pub(super) fn source(&self) -> String {
        self.peer.to_string()
    }

    pub(super) fn actor(&self) -> Actor {
        match &self.user {
            Some(u) => Actor { id: u.id.clone(), name: u.username.clone(), source: self.source() },
            None => Actor { id: String::new(), name: "unknown".into(), source: self.source() },
        }
    }

    /// Checks the Portcullis sign-in, then whether an available request allows this target now.
    pub(super) async fn sign_in(&mut self, username: &str, password: Zeroizing<String>, code: Option<&str>) -> Auth {
        let (user_name, account, asset) = match parse(username) {
            Ok(ConnectionString::Inband { user, account, asset }) => (user, account, asset),
            Ok(ConnectionString::LaunchToken(_)) => return reject(),
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "ssh: bad connection string");
                return reject();
            }
        };
        let source = self.source();
        match portcullis_app::auth::verify_login(&self.state, &source, &user_name, password, code).await {
            Ok((user, step)) => {
                let actor = Actor { id: user.id.clone(), name: user.username.clone(), source };
                let login = ProxyLogin {
                    actor,
                    at: self.state.now(),
                    user_id: user.id.clone(),
                    totp_step: step,
                    key_fingerprint: None,
                    via: "ssh",
                };
                self.access = self.authorize(&user, &account, &asset).await;
                self.user = Some(user);
                let auth = self.signed_in();
                self.login_succeeded(login, auth).await
            }
            Err(e) if e.code == "totp_required" => {
                self.code_wanted = true;
                Auth::Reject {
                    proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
                    partial_success: false,
                }
            }
            Err(_) => reject(),
        }
    }

    /// The user authenticated (`auth` says what comes next). A complete sign-in without a
    /// one-time code is kept to be written with the session start; anything else is written
    /// now: a used one-time code must be remembered at once (no replay), and a sign-in that
    /// goes on to ask for the target's password may never reach the session start. `Reject`
    /// if it cannot be written (fail closed: no unaudited sign-in).
    pub(super) async fn login_succeeded(&mut self, login: ProxyLogin, auth: Auth) -> Auth {
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
    pub(super) async fn write_pending_login(&mut self) {
        if let Some(login) = self.pending_login.take() {
            if let Err(e) = self.state.store.record_proxy_login(&login).await {
                tracing::error!(error = %e, "cannot record an SSH sign-in");
            }
        }
    }

    /// The Portcullis sign-in succeeded: done, unless the policy wants the target credential
    /// typed too (User Supplied), which keyboard-interactive then asks for.
    pub(super) fn signed_in(&mut self) -> Auth {
        if self.aa.is_some() {
            // The AA plugin's questions come through keyboard-interactive.
            return Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
                partial_success: true,
            };
        }
        let user_supplied = matches!(&self.access, Some(Ok(a)) if a.settings.account_mode == AccountMode::UserSupplied);
        if user_supplied && self.target_secret.is_none() {
            self.want_target_secret = true;
            return Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
                partial_success: true,
            };
        }
        if self.must_wait() {
            // Keyboard-interactive carries the notice of what the connection waits for.
            return Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
                partial_success: true,
            };
        }
        Auth::Accept
    }

    pub(super) fn target_prompt(&self) -> Auth {
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

    /// The connection policy for the named target, the AA plugin it names, then the request
    /// check. `None`: the AA plugin asked questions (keyboard-interactive asks them).
    pub(super) async fn authorize(
        &mut self,
        user: &User,
        account_name: &str,
        asset_name: &str,
    ) -> Option<Result<Access, String>> {
        let named = self.state.store.account_by_names(asset_name, account_name).await.ok().flatten();
        let asset = match &named {
            Some((a, _)) => Some(a.clone()),
            // An account the AA plugin may map: the policy still comes from the asset.
            None => self.state.store.asset_by_name(asset_name).await.ok().flatten(),
        };
        if let Some(asset) = &asset {
            if let Err(why) = self.admit(user, asset).await {
                return Some(Err(why));
            }
            self.preconnect(asset);
        }
        if let Some(plugin) = self.gateway.as_ref().and_then(|p| p.aa_plugin.clone()) {
            let conversation = crate::aa::Conversation::new(&plugin);
            return self.aa_begin(user, conversation, account_name, asset_name, None).await;
        }
        Some(self.request_check(user, account_name, asset_name, named).await)
    }

    /// Whether an available request lets `user` use ACCOUNT@ASSET now.
    pub(super) async fn request_check(
        &mut self,
        user: &User,
        account_name: &str,
        asset_name: &str,
        named: Option<(Asset, portcullis_store::Account)>,
    ) -> Result<Access, String> {
        session_access::authorize(&self.state, user, AccessType::Ssh, account_name, asset_name, named).await
    }

    /// The user named in the connection string, if `key` is registered to them; with the
    /// key's fingerprint.
    pub(super) async fn key_owner(&self, username: &str, key: &russh::keys::PublicKey) -> Option<(User, String)> {
        let Ok(ConnectionString::Inband { user, .. }) = parse(username) else { return None };
        let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
        let u = session_access::key_owner(&self.state, &user, &fingerprint).await?;
        Some((u, fingerprint))
    }

    pub(super) async fn launch_token(&mut self, token: &str) -> Auth {
        let Some((user, mut access)) =
            session_access::redeem_launch_token(&self.state, token, &self.source(), "ssh").await
        else {
            return reject();
        };
        if let Ok(a) = &access {
            if let Err(why) = self.admit(&user, &a.asset).await {
                access = Err(why);
            }
        }
        self.access = Some(access.clone());
        if let (Ok(a), Some(plugin)) = (access, self.gateway.as_ref().and_then(|p| p.aa_plugin.clone())) {
            // The token fixes the account: the plugin may ask and decide, not map.
            let (account, asset) = (a.account.name.clone(), a.asset.name.clone());
            let conversation = crate::aa::Conversation::new(&plugin);
            self.access = self.aa_begin(&user, conversation, &account, &asset, Some(a)).await;
        }
        self.user = Some(user);
        self.signed_in()
    }
}
