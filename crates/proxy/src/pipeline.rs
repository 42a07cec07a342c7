//! The steps of the session pipeline that every protocol proxy takes the same way (SSH and
//! Telnet here; RDP next): the connection policy that admits a connection, the waits it
//! plans, the content watch of a started session, and the audit of a refusal.

use std::net::IpAddr;
use std::sync::Arc;

use portcullis_app::session_access::SessionAccess;
use portcullis_app::waiting::{Wait, WaitKind};
use portcullis_app::App as AppState;
use portcullis_core::gateway::{ConnectionPolicy, Facts};
use portcullis_core::inventory::Protocol;
use portcullis_store::{Actor, Asset, NewEvent, Outcome, User};
use serde_json::json;

/// The connection policy for this client and target (R-SES-2): the first that matches, or the
/// message that says what to fix; with the user's group ids (for channel rules' user lists).
/// With a pre-channel check, a connection on which no channel could open now is refused before
/// the target is contacted.
pub(crate) async fn admit(
    state: &AppState,
    client: IpAddr,
    listen_port: u16,
    protocol: Protocol,
    user: &User,
    asset: &Asset,
) -> Result<(ConnectionPolicy, Vec<String>), String> {
    let (address, port) = portcullis_app::gateway::endpoint(asset, protocol).ok_or_else(|| {
        format!("{} has no {} service configured in Portcullis", asset.name, protocol.as_str().to_uppercase())
    })?;
    let facts =
        Facts { protocol, client, listen_port, asset: &asset.name, target_address: &address, target_port: port };
    let policy = portcullis_app::gateway::decide(state, &facts).await?;
    // Group memberships come from the policy snapshot; if it cannot be read, the user counts
    // as in no group (group-restricted channels are refused: fail closed).
    let groups = match state.policies.get(&state.store).await {
        Ok(s) => s.groups_of_user(&user.id).to_vec(),
        Err(_) => Vec::new(),
    };
    if policy.pre_channel_check && !policy.any_channel(&groups, state.now()) {
        return Err(format!(
            "the connection policy '{}' allows you no channel on {} at this time; nothing was opened",
            policy.name, asset.name
        ));
    }
    Ok((policy, groups))
}

/// The waits a connection must pass, from its connection policy, in order.
pub(crate) fn planned_waits(policy: &ConnectionPolicy) -> Vec<WaitKind> {
    let mut waits = Vec::new();
    if policy.gateway_authentication {
        waits.push(WaitKind::Gateway);
    }
    if !policy.four_eyes_groups.is_empty() {
        waits.push(WaitKind::FourEyes);
    }
    waits
}

/// A new wait of `kind` for this connection, for as long as the policy lets it wait.
pub(crate) fn new_wait(
    state: &AppState,
    kind: WaitKind,
    user: &User,
    access: &SessionAccess,
    policy: &ConnectionPolicy,
    client: &str,
) -> Wait {
    let now = state.now();
    Wait {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
        kind,
        user_id: user.id.clone(),
        username: user.username.clone(),
        target: format!("{}@{}", access.account.name, access.asset.name),
        client: client.to_owned(),
        connection_policy: policy.name.clone(),
        groups: policy.four_eyes_groups.clone(),
        since: now,
        until: now + i64::from(policy.wait_seconds) * 1_000_000,
    }
}

/// What a waiting client is told: what it waits for, for how long, and the command.
pub(crate) fn wait_notice(kind: WaitKind, id: &str, minutes: i64) -> String {
    match kind {
        WaitKind::Gateway => format!(
            "This connection waits for you to confirm it, for up to {minutes} minute(s): in the web UI under Live sessions, or run\n  portcullis session confirm {id}"
        ),
        WaitKind::FourEyes => format!(
            "This session waits for an authorizer to permit it, for up to {minutes} minute(s) (waiting id {id}). Authorizers see it under Live sessions in the web UI, or run\n  portcullis session permit {id}"
        ),
    }
}

/// Why a wait ended without a permit.
pub(crate) fn wait_timed_out(kind: WaitKind) -> String {
    let what = match kind {
        WaitKind::Gateway => "the connection was not confirmed in time",
        WaitKind::FourEyes => "no authorizer permitted the session in time",
    };
    format!("{what}; connect again to ask again")
}

/// The session's content watch, when its connection policy has content rules.
pub(crate) fn content_watch(
    policy: &ConnectionPolicy,
    user: &User,
    access: &SessionAccess,
    session_id: &str,
    client: &str,
) -> Option<Arc<crate::content::Watch>> {
    if policy.content.is_empty() {
        return None;
    }
    Some(Arc::new(crate::content::Watch {
        rules: Arc::new(policy.content.clone()),
        policy: policy.name.as_str().into(),
        actor: Actor { id: user.id.clone(), name: user.username.clone(), source: client.to_owned() },
        session_id: session_id.into(),
        target: format!("{}@{}", access.account.name, access.asset.name).into(),
    }))
}

/// Audits a connection refused after sign-in (`session.refused`, with the reason).
pub(crate) async fn audit_refusal(state: &AppState, actor: &Actor, user_id: &str, reason: &str, client: &str) {
    let event = NewEvent::success("session.refused", "user", user_id)
        .with_outcome(Outcome::Denied)
        .with_details(json!({ "reason": reason, "client": client }));
    if let Err(e) = state.store.record(actor, state.now(), event).await {
        tracing::error!(error = %e, "cannot audit a refused session");
    }
}

/// What the AA plugin is told of this connection.
pub(crate) fn aa_facts<'a>(
    protocol: Protocol,
    user: &'a User,
    client: &'a str,
    account: &'a str,
    asset: &'a str,
    policy: &'a ConnectionPolicy,
) -> crate::aa::Facts<'a> {
    crate::aa::Facts {
        protocol: protocol.as_str(),
        user: &user.username,
        user_id: &user.id,
        client,
        account,
        asset,
        connection_policy: &policy.name,
    }
}

/// The account the session uses after the AA plugin allowed it: the one named, or the one the
/// plugin mapped it to where the connection policy's usermapping allows that.
pub(crate) fn mapped_account(policy: &ConnectionPolicy, named: &str, mapped: Option<String>) -> Result<String, String> {
    match mapped {
        None => Ok(named.to_owned()),
        Some(a) if policy.may_map_to(&a) => Ok(a),
        Some(a) => Err(format!(
            "the AA plugin mapped the connection to account '{a}', which the usermapping of connection policy '{}' does not allow; ask a Security Policy Administrator",
            policy.name
        )),
    }
}

/// Audits the AA plugin's verdict (`session.aa`): the plugin, the answers (hidden ones
/// masked), the mapping, and why it refused.
pub(crate) async fn audit_aa(
    state: &AppState,
    actor: &Actor,
    user_id: &str,
    conversation: &crate::aa::Conversation,
    target: &str,
    refused: Option<&str>,
) {
    let mut details = conversation.record();
    details["target"] = json!(target);
    details["client"] = json!(actor.source);
    if let Some(why) = refused {
        details["reason"] = json!(why);
    }
    let outcome = if refused.is_some() { Outcome::Denied } else { Outcome::Success };
    let event = NewEvent::success("session.aa", "user", user_id).with_outcome(outcome).with_details(details);
    if let Err(e) = state.store.record(actor, state.now(), event).await {
        tracing::error!(error = %e, "cannot audit an AA plugin verdict");
    }
}
