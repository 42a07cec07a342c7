//! The Telnet sign-in, in band: the target named at the proxy's login prompt
//! (`USER#ACCOUNT@ASSET`), the Portcullis password (never echoed) and one-time code; then the
//! same pipeline as every proxy: connection policy, the shell channel rule, the request check,
//! the target password for User Supplied accounts, and the waits for a person.

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_app::session_access::{self, SessionAccess};
use portcullis_app::waiting::{self, Verdict, WaitKind};
use portcullis_app::App as AppState;
use portcullis_core::connection::{parse, ConnectionString};
use portcullis_core::gateway::{ChannelAsk, ChannelKind, ConnectionPolicy};
use portcullis_core::inventory::Protocol;
use portcullis_core::policy::{AccessType, AccountMode};
use portcullis_store::{Actor, ProxyLogin, User};
use zeroize::Zeroizing;

use super::client::ClientLeg;
use crate::aa::{AaPlugins, Conversation, Step};

/// Sign-in attempts on one connection.
const ATTEMPTS: usize = 3;

/// Who signed in, for which target, and what lets them.
pub(super) struct Admitted {
    pub user: User,
    pub access: SessionAccess,
    pub policy: ConnectionPolicy,
    /// The sign-in, when not written yet (it goes with the session start).
    pub login: Option<ProxyLogin>,
    /// User Supplied account mode: the target password the user typed.
    pub target_secret: Option<Zeroizing<String>>,
    /// Who permitted the session (four-eyes).
    pub authorizers: Vec<String>,
}

/// How the sign-in ended without a session.
pub(super) enum Refused {
    /// The client left or gave up, or the socket failed: nothing to tell.
    Gone,
    /// Refused after sign-in: the reason, told to the client and audited.
    After { user: Box<User>, login: Option<ProxyLogin>, reason: String },
    /// No successful sign-in: the message for the client.
    Before(String),
}

fn io_gone(_: std::io::Error) -> Refused {
    Refused::Gone
}

/// Time a signed-in user has to answer a question (an AA plugin's, the target password).
const ANSWER_TIME: Duration = Duration::from_secs(120);

/// An answer to a question after sign-in, within [`ANSWER_TIME`].
async fn answer(client: &mut ClientLeg, echo: bool) -> Result<String, Refused> {
    match tokio::time::timeout(ANSWER_TIME, client.read_line(echo)).await {
        Ok(Ok(Some(a))) => Ok(a),
        Ok(Ok(None) | Err(_)) => Err(Refused::Gone),
        Err(_) => Err(Refused::Before("no answer in time; connect again".into())),
    }
}

/// The login dialogue: until a user signs in (at most [`ATTEMPTS`] tries), and the target
/// they named. Bounded in time by the caller.
pub(super) async fn dialogue(
    state: &AppState,
    client: &mut ClientLeg,
    peer: SocketAddr,
) -> Result<(User, ProxyLogin, String, String), Refused> {
    let source = peer.to_string();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // As a Unix login does: a failed attempt costs time.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        client.say("login: ").await.map_err(io_gone)?;
        let Some(line) = client.read_line(true).await.map_err(io_gone)? else { return Err(Refused::Gone) };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (name, account, asset) = match parse(line) {
            Ok(ConnectionString::Inband { user, account, asset }) => (user, account, asset),
            Ok(ConnectionString::LaunchToken(_)) => {
                client
                    .say("Portcullis: launch tokens are for SSH; sign in as USER#ACCOUNT@ASSET\n")
                    .await
                    .map_err(io_gone)?;
                continue;
            }
            // Launch tokens are for SSH: the Telnet prompt names only the USER#ACCOUNT@ASSET form.
            Err(portcullis_core::connection::ConnectionStringError::Shape) => {
                client
                    .say("Portcullis: name the target as USER#ACCOUNT@ASSET (e.g. alice#root@db1)\n")
                    .await
                    .map_err(io_gone)?;
                continue;
            }
            Err(e) => {
                client.say(&format!("Portcullis: {e}\n")).await.map_err(io_gone)?;
                continue;
            }
        };
        client.say("Password: ").await.map_err(io_gone)?;
        let Some(password) = client.read_line(false).await.map_err(io_gone)? else { return Err(Refused::Gone) };
        let password = Zeroizing::new(password);
        // The one-time code is asked for only once the password is right: the prompts before
        // it are the same for everyone, so they do not tell who has a second factor.
        let mut result = portcullis_app::auth::verify_login(state, &source, &name, password.clone(), None).await;
        if matches!(&result, Err(e) if e.code == "totp_required") {
            client.say("One-time code: ").await.map_err(io_gone)?;
            let Some(code) = client.read_line(true).await.map_err(io_gone)? else { return Err(Refused::Gone) };
            result = portcullis_app::auth::verify_login(state, &source, &name, password, Some(code.trim())).await;
        }
        match result {
            Ok((user, step)) => {
                let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.clone() };
                let login = ProxyLogin {
                    actor,
                    at: state.now(),
                    user_id: user.id.clone(),
                    totp_step: step,
                    key_fingerprint: None,
                    via: "telnet",
                };
                return Ok((user, login, account, asset));
            }
            Err(e) => {
                tracing::info!(%peer, code = e.code, "telnet: sign-in failed");
                client.say(&format!("Portcullis: {}\n", e.message)).await.map_err(io_gone)?;
            }
        }
    }
    Err(Refused::Before("too many failed sign-ins; connect again to try again".into()))
}

/// After sign-in: connection policy, shell channel rule, request check, target password,
/// waits. `target`: the account and asset named.
pub(super) async fn authorize(
    state: &AppState,
    client: &mut ClientLeg,
    (peer, listen_port): (SocketAddr, u16),
    plugins: &AaPlugins,
    user: User,
    login: ProxyLogin,
    (account, asset): (&str, &str),
) -> Result<Admitted, Refused> {
    // A one-time code's step is written at once (no replay); otherwise with the session start.
    let login = if login.totp_step.is_some() {
        if state.store.record_proxy_login(&login).await.is_err() {
            let reason = "Portcullis cannot record the sign-in; try again later".to_owned();
            return Err(Refused::After { user: Box::new(user), login: None, reason });
        }
        None
    } else {
        Some(login)
    };
    let refuse = |user: &User, login: &Option<ProxyLogin>, reason: String| Refused::After {
        user: Box::new(user.clone()),
        login: login.clone(),
        reason,
    };
    let named = state.store.account_by_names(asset, account).await.ok().flatten();
    let asset_row = match &named {
        Some((a, _)) => Some(a.clone()),
        // An account the AA plugin may map: the policy still comes from the asset.
        None => state.store.asset_by_name(asset).await.ok().flatten(),
    };
    let mut admitted = None;
    if let Some(a) = &asset_row {
        match crate::pipeline::admit(state, peer.ip(), listen_port, Protocol::Telnet, &user, a).await {
            Ok(p) => admitted = Some(p),
            Err(reason) => return Err(refuse(&user, &login, reason)),
        }
    }
    let mut account = account.to_owned();
    let mut named = named;
    let mut aa = None;
    if let Some((policy, _)) = &admitted {
        if let Some(plugin) = &policy.aa_plugin {
            let source = peer.to_string();
            let mut conversation = Conversation::new(plugin);
            let outcome = converse(client, plugins, &mut conversation, &user, &source, &account, asset, policy).await?;
            let result = outcome.and_then(|mapped| crate::pipeline::mapped_account(policy, &account, mapped));
            let actor = Actor { id: user.id.clone(), name: user.username.clone(), source };
            let target = format!("{account}@{asset}");
            let refused = result.as_ref().err().map(String::as_str);
            crate::pipeline::audit_aa(state, &actor, &user.id, &conversation, &target, refused).await;
            match result {
                Ok(mapped) if mapped != account => {
                    account = mapped;
                    named = None;
                }
                Ok(_) => {}
                Err(reason) => return Err(refuse(&user, &login, reason)),
            }
            aa = Some(conversation.record());
        }
    }
    let access = match session_access::authorize(state, &user, AccessType::Telnet, &account, asset, named).await {
        Ok(mut a) => {
            a.aa = aa;
            a
        }
        Err(reason) => return Err(refuse(&user, &login, reason)),
    };
    let Some((policy, groups)) = admitted else {
        return Err(refuse(&user, &login, "no connection policy admitted this connection".into()));
    };
    let ask =
        ChannelAsk { kind: ChannelKind::Shell, groups: &groups, at: state.now(), command: None, destination: None };
    if let Err(why) = policy.channel(&ask) {
        return Err(refuse(&user, &login, why));
    }
    let target_secret = match access.settings.account_mode {
        AccountMode::Vaulted | AccountMode::LinkedAccount | AccountMode::DirectoryAccount => None,
        AccountMode::UserSupplied => {
            let prompt = format!("Target password for {}@{}: ", access.account.name, access.asset.name);
            client.say(&prompt).await.map_err(io_gone)?;
            let typed = answer(client, false).await?;
            Some(Zeroizing::new(typed))
        }
    };
    let mut authorizers = Vec::new();
    for kind in crate::pipeline::planned_waits(&policy) {
        match wait(state, client, &user, &access, &policy, &peer.to_string(), kind).await? {
            Ok(Some(by)) => authorizers.push(by),
            Ok(None) => {}
            Err(reason) => return Err(refuse(&user, &login, reason)),
        }
    }
    Ok(Admitted { user, access, policy, login, target_secret, authorizers })
}

/// The AA plugin's conversation: its questions asked at prompts, until it allows (with the
/// account it mapped to, if any) or refuses (`Ok(Err(reason))`).
#[allow(clippy::too_many_arguments)]
async fn converse(
    client: &mut ClientLeg,
    plugins: &AaPlugins,
    conversation: &mut Conversation,
    user: &User,
    source: &str,
    account: &str,
    asset: &str,
    policy: &ConnectionPolicy,
) -> Result<Result<Option<String>, String>, Refused> {
    let facts = crate::pipeline::aa_facts(Protocol::Telnet, user, source, account, asset, policy);
    let mut step = conversation.start(plugins, &facts).await;
    loop {
        match step {
            Ok(Step::Allowed { account }) => return Ok(Ok(account)),
            Err(why) => return Ok(Err(why)),
            Ok(Step::Ask(questions)) => {
                let mut answers = Vec::new();
                for q in questions {
                    client.say(&q.prompt).await.map_err(io_gone)?;
                    let a = answer(client, q.echo).await?;
                    answers.push(a);
                }
                step = conversation.answer(plugins, &facts, answers).await;
            }
        }
    }
}

/// One wait for a person: the client is told what it waits for and how long; `Ok(Some(by))`
/// when an authorizer permitted (four-eyes), `Ok(None)` when confirmed, `Err(reason)` when
/// denied or not decided in time.
async fn wait(
    state: &AppState,
    client: &mut ClientLeg,
    user: &User,
    access: &SessionAccess,
    policy: &ConnectionPolicy,
    source: &str,
    kind: WaitKind,
) -> Result<Result<Option<String>, String>, Refused> {
    let wait = crate::pipeline::new_wait(state, kind, user, access, policy, source);
    let (id, until) = (wait.id.clone(), wait.until);
    let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.to_owned() };
    let mut rx = waiting::enter(state, &actor, wait).await;
    let minutes = ((until - state.now()) / 60_000_000).max(1);
    let notice = crate::pipeline::wait_notice(kind, &id, minutes);
    if client.say(&format!("\n{notice}\n")).await.is_err() {
        waiting::leave(state, &id).await;
        return Err(Refused::Gone);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_micros(u64::try_from(until - state.now()).unwrap_or(0));
    // `None`: the client went away while waiting.
    let verdict = loop {
        tokio::select! {
            v = rx.wait_for(|v| v.is_some()) => break Some(v.ok().and_then(|v| v.clone())),
            _ = tokio::time::sleep_until(deadline) => break Some(None),
            r = client.read_input() => match r {
                // Typed while waiting: nothing is passed on.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break None,
            },
        }
    };
    waiting::leave(state, &id).await;
    let Some(verdict) = verdict else { return Err(Refused::Gone) };
    Ok(match verdict {
        Some(Verdict::Permitted { by }) => {
            let _ = client.say("Permitted.\n").await;
            Ok((kind == WaitKind::FourEyes).then_some(by))
        }
        Some(Verdict::Denied { reason, .. }) => Err(reason),
        None => Err(crate::pipeline::wait_timed_out(kind)),
    })
}
