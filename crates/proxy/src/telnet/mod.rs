//! The Telnet proxy (R-SES-1): the same pipeline as SSH over a cleartext protocol. The user
//! names the target at the proxy's login prompt (`USER#ACCOUNT@ASSET`) and signs in with the
//! Portcullis password (and one-time code); the connection policy, request check and waits
//! follow; the proxy then logs in to the target by answering its login and password prompts
//! with the vaulted credential (the platform's prompt patterns recognize them), records the
//! session in the same format as SSH, and relays until either side leaves or the session is
//! ended. Telnet carries everything in the clear, on both legs: a connection policy must admit
//! it explicitly (none does on a fresh install).
//!
//! Module map: `codec` (the wire format and option negotiation, pure and fuzzed), `client`
//! (the proxy as the client's Telnet server), `target` (the proxy as the target's Telnet
//! client, and the login), `signin` (the login dialogue and authorization), `relay` (the
//! running session).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_app::App as AppState;
use portcullis_core::inventory::{Platform, Protocol};
use portcullis_core::policy::AccountMode;
use portcullis_recording::{Event, EventKind};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::gate::GateLimits;
use crate::serve::{accept_loop, start_session, Shared};

mod client;
mod codec;
mod relay;
mod signin;
mod target;

pub use target::{PromptPatterns, Prompts};

use client::ClientLeg;
use signin::{Admitted, Refused};
use target::{LoginError, TargetLeg};

/// Time the target has to show its prompts and accept the login.
const TARGET_LOGIN: Duration = Duration::from_secs(20);

/// The Telnet proxy's settings.
pub struct TelnetConfig {
    /// Connections open at once (beyond: closed at accept).
    pub max_connections: usize,
    /// Time a client has from connecting to signing in.
    pub auth_timeout: Duration,
    /// Connections between accept and sign-in, in total and from one address.
    pub pre_auth: GateLimits,
    /// The prompt patterns of each platform (others: the defaults).
    pub prompts: HashMap<Platform, Prompts>,
    /// The AA plugins connection policies may name.
    pub aa_plugins: Arc<crate::aa::AaPlugins>,
}

/// Serves Telnet on `listener` until the task is dropped.
pub async fn serve_telnet(state: AppState, cfg: TelnetConfig, listener: TcpListener) {
    let (max, pre_auth) = (cfg.max_connections, cfg.pre_auth);
    let cfg = Arc::new(cfg);
    let app = state.clone();
    accept_loop(state, listener, max, pre_auth, "telnet", move |stream, peer, shared, ticket| {
        let (state, cfg) = (app.clone(), cfg.clone());
        async move { connection(&state, &cfg, stream, peer, shared, ticket).await }
    })
    .await
}

async fn connection(
    state: &AppState,
    cfg: &TelnetConfig,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut ticket: crate::gate::Ticket,
) {
    let listen_port = stream.local_addr().map_or(0, |a| a.port());
    let (read, write) = stream.into_split();
    let mut client = ClientLeg::new(read, write);
    if client.start().await.is_err() {
        return;
    }
    let greeting = "Portcullis Telnet proxy. Sign in as USER#ACCOUNT@ASSET (e.g. alice#root@db1) with your Portcullis password.\nTelnet is not encrypted: your password crosses the network in the clear.\n";
    if client.say(greeting).await.is_err() {
        return;
    }
    // Until sign-in: the grace time and the gate bound it.
    let signed = tokio::select! {
        r = tokio::time::timeout(cfg.auth_timeout, signin::dialogue(state, &mut client, peer)) => match r {
            Ok(r) => r,
            Err(_) => Err(Refused::Before("authentication timed out".into())),
        },
        _ = ticket.evicted.wait_for(|e| *e) => Err(Refused::Before("too many connections waiting to sign in; try again".into())),
    };
    drop(ticket);
    let admitted = match signed {
        Ok((user, login, account, asset)) => {
            let plugins = &cfg.aa_plugins;
            signin::authorize(state, &mut client, (peer, listen_port), plugins, user, login, (&account, &asset)).await
        }
        Err(e) => Err(e),
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(refused) => return refuse(state, &client, peer, refused).await,
    };
    let Admitted { user, access, policy, login, target_secret, authorizers } = admitted;
    let refused = |reason: String| Refused::After { user: Box::new(user.clone()), login: login.clone(), reason };
    let target_name = format!("{}@{}", access.account.name, access.asset.name);
    // The account that logs in: the requested one, or a directory account (Linked Account,
    // Directory Account).
    let login_account = match portcullis_app::session_access::login_account(state, &access).await {
        Ok(a) => a,
        Err(reason) => return refuse(state, &client, peer, refused(reason)).await,
    };
    let password = match target_password(state, &access, &login_account, target_secret).await {
        Ok(p) => p,
        Err(reason) => return refuse(state, &client, peer, refused(reason)).await,
    };
    let Some((address, port)) = portcullis_app::gateway::endpoint(&access.asset, Protocol::Telnet) else {
        let reason = format!("{} has no TELNET service configured in Portcullis", access.asset.name);
        return refuse(state, &client, peer, refused(reason)).await;
    };
    let (host, port) = policy.destination(&address, port);
    let leg = TargetLeg::connect(&host, port, policy.source_address, client.term.clone(), client.size).await;
    let mut target = match leg {
        Ok(t) => t,
        Err(e) => {
            let reason = format!("{} cannot be reached ({host}:{port}): {e}", access.asset.name);
            return refuse(state, &client, peer, refused(reason)).await;
        }
    };
    let default_prompts = Prompts::default();
    let prompts = cfg.prompts.get(&access.asset.platform).unwrap_or(&default_prompts);
    let shown = match target.login(prompts, &login_account.name, password.as_bytes(), TARGET_LOGIN).await {
        Ok(shown) => scrub(shown, password.as_bytes()),
        Err(e) => {
            let reason = login_failure(&access, &target_name, e);
            return refuse(state, &client, peer, refused(reason)).await;
        }
    };
    drop(password);
    let source = peer.to_string();
    let started =
        start_session(state, &shared, &user, &access, &source, Some(&policy), Protocol::Telnet, None, login.clone());
    let recorder = match started.await {
        Ok(r) => r,
        Err(reason) => return refuse(state, &client, peer, refused(reason)).await,
    };
    let session_id = shared.session_id().unwrap_or_default();
    if !authorizers.is_empty() {
        state.waiting.authorized(&session_id, authorizers);
    }
    let (cols, rows) = client.size;
    let now = recorder.now();
    for e in [
        Event::new(now, EventKind::ChannelOpen, relay::CHANNEL, "session"),
        Event::pty(now, relay::CHANNEL, cols.into(), rows.into(), &client.term),
        Event::new(now, EventKind::Shell, relay::CHANNEL, Vec::new()),
        Event::new(now, EventKind::Output, relay::CHANNEL, shown.clone()),
    ] {
        if recorder.event(e).await.is_err() {
            shared.set_end_reason("recording storage failed");
            return;
        }
    }
    // The target echoes (as telnetd does), or the client must echo for itself now.
    if !target.options.him(codec::opt::ECHO) && client.stop_echo().await.is_err() {
        return;
    }
    if client.send(&codec::escape(&shown)).await.is_err() {
        shared.set_end_reason("the client disconnected");
        return;
    }
    let watch = crate::pipeline::content_watch(&policy, &user, &access, &session_id, &source);
    let lines = crate::content::SharedLines::default();
    lines.lock().unwrap_or_else(|p| p.into_inner()).interactive = true;
    let muted = Default::default();
    let relay = relay::Relay { state: state.clone(), shared: shared.clone(), recorder, watch, lines, muted };
    relay.run(client, target).await;
}

/// The password the proxy types for the user: the vaulted one, or the one the user typed
/// (User Supplied).
async fn target_password(
    state: &AppState,
    access: &portcullis_app::session_access::SessionAccess,
    login: &portcullis_store::Account,
    typed: Option<Zeroizing<String>>,
) -> Result<Zeroizing<String>, String> {
    if access.settings.account_mode == AccountMode::UserSupplied {
        return typed.ok_or_else(|| "no target password was typed".to_owned());
    }
    let current = portcullis_app::credentials::current(state, &login.id, "password")
        .await
        .map_err(|_| "Portcullis cannot read the account's credential right now".to_owned())?;
    let Some((_, plain)) = current else {
        let whose = if login.id == access.account.id {
            format!("{}@{}", access.account.name, access.asset.name)
        } else {
            format!("the directory account {}", login.name)
        };
        return Err(format!(
            "the vault holds no password for {whose} (Telnet logs in with a password); ask an administrator"
        ));
    };
    Ok(Zeroizing::new(String::from_utf8_lossy(plain.expose()).into_owned()))
}

fn login_failure(access: &portcullis_app::session_access::SessionAccess, target: &str, e: LoginError) -> String {
    let platform = access.asset.platform;
    match e {
        LoginError::Refused if access.settings.account_mode == AccountMode::UserSupplied => {
            format!("{target} refused the password you typed for it")
        }
        LoginError::Refused => format!(
            "Portcullis could not log in to {target}: the target refused the vaulted credential; ask an administrator to check it"
        ),
        LoginError::NoPrompt { awaited, seen } if seen.is_empty() => format!(
            "Portcullis could not log in to {target}: {} did not show {awaited} in time; an administrator may need to adjust the Telnet prompt patterns of platform {platform}",
            access.asset.name
        ),
        LoginError::NoPrompt { awaited, seen } => format!(
            "Portcullis could not log in to {target}: {} did not show {awaited} in time (it showed \"{seen}\"); an administrator may need to adjust the Telnet prompt patterns of platform {platform}",
            access.asset.name
        ),
        LoginError::Closed => format!("{} closed the connection during the login", access.asset.name),
    }
}

/// The target's output after the login, with the password masked should the target have
/// echoed it (it goes to the user and the recording).
fn scrub(mut shown: Vec<u8>, password: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return shown;
    }
    let mut i = 0;
    while i + password.len() <= shown.len() {
        if &shown[i..i + password.len()] == password {
            shown[i..i + password.len()].fill(b'*');
            i += password.len();
        } else {
            i += 1;
        }
    }
    shown
}

/// Tells the client why it cannot go on, audits a refusal after sign-in, and writes a sign-in
/// not written yet.
async fn refuse(state: &AppState, client: &ClientLeg, peer: SocketAddr, refused: Refused) {
    let message = match refused {
        Refused::Gone => return,
        Refused::Before(m) => m,
        Refused::After { user, login, reason } => {
            if let Some(login) = login {
                if let Err(e) = state.store.record_proxy_login(&login).await {
                    tracing::error!(error = %e, "cannot record a Telnet sign-in");
                }
            }
            let actor =
                portcullis_store::Actor { id: user.id.clone(), name: user.username.clone(), source: peer.to_string() };
            crate::pipeline::audit_refusal(state, &actor, &user.id, &reason, &peer.to_string()).await;
            reason
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), client.say(&format!("Portcullis: {message}\n"))).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_echoed_password_is_masked() {
        assert_eq!(super::scrub(b"x s3cret y s3cret".to_vec(), b"s3cret"), b"x ****** y ******");
        assert_eq!(super::scrub(b"nothing".to_vec(), b"s3cret"), b"nothing");
    }
}
