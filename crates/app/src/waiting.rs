//! Connections waiting for a person (R-SES-8, R-SES-9): gateway authentication (the user
//! confirms the connection out of band, signed in to the web UI, CLI or API) and four-eyes (an
//! authorizer — a member of a group the connection policy names, never the user — permits
//! it). The proxy registers the wait and holds the connection; front ends list the waits a
//! caller may decide and decide them. Every step is audited.
//!
//! A connection waits on the node it reached (its verdict channel is in that node's room);
//! the wait itself is a row every node lists, and a decision made through another node
//! reaches the holding node as an event between nodes (`cluster::Message::Decide`).

use std::collections::HashMap;
use std::sync::Mutex;

use portcullis_core::role::Role;
use portcullis_store::{Actor, NewEvent, Outcome};
use serde_json::json;
use tokio::sync::watch;

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// The user confirms.
    Gateway,
    /// An authorizer permits.
    FourEyes,
}

impl WaitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Gateway => "gateway_authentication",
            WaitKind::FourEyes => "four_eyes",
        }
    }

    fn parse(s: &str) -> WaitKind {
        if s == "gateway_authentication" {
            WaitKind::Gateway
        } else {
            WaitKind::FourEyes
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Permitted { by: String },
    Denied { by: String, reason: String },
}

/// A waiting connection, as front ends show it.
#[derive(Debug, Clone)]
pub struct Wait {
    pub id: String,
    pub kind: WaitKind,
    pub user_id: String,
    pub username: String,
    /// ACCOUNT@ASSET.
    pub target: String,
    pub client: String,
    pub connection_policy: String,
    /// Four-eyes: the groups whose members may permit.
    pub groups: Vec<String>,
    pub since: i64,
    pub until: i64,
}

impl Wait {
    fn row(&self, node: &str) -> portcullis_store::WaitRow {
        portcullis_store::WaitRow {
            id: self.id.clone(),
            node: node.to_owned(),
            kind: self.kind.as_str().into(),
            user_id: self.user_id.clone(),
            username: self.username.clone(),
            target: self.target.clone(),
            client: self.client.clone(),
            connection_policy: self.connection_policy.clone(),
            group_ids: self.groups.clone(),
            since: self.since,
            until: self.until,
        }
    }

    fn of(r: portcullis_store::WaitRow) -> Wait {
        Wait {
            id: r.id,
            kind: WaitKind::parse(&r.kind),
            user_id: r.user_id,
            username: r.username,
            target: r.target,
            client: r.client,
            connection_policy: r.connection_policy,
            groups: r.group_ids,
            since: r.since,
            until: r.until,
        }
    }
}

struct Entry {
    verdict: watch::Sender<Option<Verdict>>,
}

#[derive(Default)]
pub struct WaitingRoom {
    inner: Mutex<HashMap<String, Entry>>,
    /// Who permitted each live session under four-eyes (session id → user ids): they may
    /// watch and terminate it.
    authorizers: Mutex<HashMap<String, Vec<String>>>,
}

impl WaitingRoom {
    /// Hands a verdict to a connection waiting here; `false` if none waits under `id`.
    pub fn deliver(&self, id: &str, verdict: Verdict) -> bool {
        match self.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            Some(e) => e.verdict.send(Some(verdict)).is_ok(),
            None => false,
        }
    }

    /// Remembers who permitted a session, for watching and terminating it.
    pub fn authorized(&self, session_id: &str, by: Vec<String>) {
        self.authorizers.lock().unwrap_or_else(|p| p.into_inner()).insert(session_id.to_owned(), by);
    }

    pub fn session_ended(&self, session_id: &str) {
        self.authorizers.lock().unwrap_or_else(|p| p.into_inner()).remove(session_id);
    }

    /// Whether `user_id` permitted the live session `session_id`.
    pub fn is_authorizer(&self, session_id: &str, user_id: &str) -> bool {
        self.authorizers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session_id)
            .is_some_and(|v| v.iter().any(|u| u == user_id))
    }
}

/// Registers a wait; the receiver learns the verdict. Audited `session.waiting`.
pub async fn enter(state: &App, actor: &Actor, wait: Wait) -> watch::Receiver<Option<Verdict>> {
    let (tx, rx) = watch::channel(None);
    let details = json!({
        "wait_id": wait.id, "kind": wait.kind.as_str(), "target": wait.target, "client": wait.client,
        "connection_policy": wait.connection_policy,
    });
    let event = NewEvent::success("session.waiting", "user", &wait.user_id).with_details(details);
    if let Err(e) = state.store.record(actor, state.now(), event).await {
        tracing::error!(error = %e, "cannot audit a waiting connection");
    }
    // Listed by every node; decided through any.
    if let Err(e) = state.store.add_wait(&wait.row(&state.node)).await {
        tracing::error!(error = %e, "cannot list a waiting connection for the other nodes");
    }
    state.waiting.inner.lock().unwrap_or_else(|p| p.into_inner()).insert(wait.id.clone(), Entry { verdict: tx });
    rx
}

/// Leaves the room (the connection was decided, timed out or went away).
pub async fn leave(state: &App, id: &str) {
    state.waiting.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    if let Err(e) = state.store.remove_wait(id).await {
        tracing::warn!(error = %e, "cannot remove a waiting connection from the list");
    }
}

/// Whether `caller` may decide `wait`; `Err` says why not.
fn may_decide(caller: &Caller, wait: &Wait, groups: &[String]) -> AppResult<()> {
    match wait.kind {
        WaitKind::Gateway if wait.user_id == caller.user.id => Ok(()),
        WaitKind::Gateway => Err(AppError::forbidden("only the user who is connecting confirms their own connection")),
        WaitKind::FourEyes if wait.user_id == caller.user.id => {
            Err(AppError::forbidden("nobody authorizes their own session; another authorizer must"))
        }
        WaitKind::FourEyes if wait.groups.iter().any(|g| groups.contains(g)) => Ok(()),
        WaitKind::FourEyes => Err(AppError::forbidden(format!(
            "only members of the groups the connection policy '{}' names may authorize this session",
            wait.connection_policy
        ))),
    }
}

/// The waits `caller` may see: their own, those they may authorize, and all for Security
/// Policy Administrators and Auditors.
pub async fn list(state: &App, caller: &Caller) -> AppResult<Vec<(Wait, bool)>> {
    let rules = state.policies.get(&state.store).await?;
    let groups = rules.groups_of_user(&caller.user.id);
    let all = [Role::SecurityPolicyAdmin, Role::Auditor].iter().any(|r| caller.has(*r));
    Ok(state
        .store
        .waits(state.now())
        .await?
        .into_iter()
        .map(Wait::of)
        .filter_map(|w| {
            let may = may_decide(caller, &w, groups).is_ok();
            (may || all || w.user_id == caller.user.id).then_some((w, may))
        })
        .collect())
}

/// Confirms or permits (`permit`) or denies a waiting connection.
pub async fn decide(state: &App, caller: &Caller, id: &str, permit: bool, reason: Option<&str>) -> AppResult<Wait> {
    if reason.is_some_and(|r| r.len() > 200 || r.chars().any(char::is_control)) {
        return Err(AppError::invalid("reason", "at most 200 characters, no control characters"));
    }
    let row = state.store.wait(id).await?.ok_or_else(|| AppError::not_found("waiting connection"))?;
    let node = row.node.clone();
    let wait = Wait::of(row);
    let rules = state.policies.get(&state.store).await?;
    if let Err(e) = may_decide(caller, &wait, rules.groups_of_user(&caller.user.id)) {
        let details = json!({ "wait_id": id, "kind": wait.kind.as_str(), "reason": e.message });
        let event = NewEvent::success("session.authorize", "user", &wait.user_id)
            .with_outcome(Outcome::Denied)
            .with_details(details);
        let _ = state.store.record(&caller.actor(), state.now(), event).await;
        return Err(e);
    }
    let by = caller.user.username.clone();
    let verdict = if permit {
        Verdict::Permitted { by: caller.user.id.clone() }
    } else {
        let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
        let what = match wait.kind {
            WaitKind::Gateway => "you declined the connection",
            WaitKind::FourEyes => "the authorizer denied the session",
        };
        Verdict::Denied { by: caller.user.id.clone(), reason: format!("{what} ({by}){why}") }
    };
    let action = match (wait.kind, permit) {
        (WaitKind::Gateway, true) => "session.confirm",
        (WaitKind::FourEyes, true) => "session.permit",
        (_, false) => "session.deny",
    };
    // Taken once, whichever node it is decided through.
    if wait.until <= state.now() || !state.store.remove_wait(id).await? {
        return Err(AppError::conflict("wait_over", "the connection stopped waiting before your decision"));
    }
    let details = json!({
        "wait_id": id, "kind": wait.kind.as_str(), "user": wait.username, "target": wait.target,
        "client": wait.client, "reason": reason, "node": node,
    });
    state
        .store
        .record(&caller.actor(), state.now(), NewEvent::success(action, "user", &wait.user_id).with_details(details))
        .await?;
    if !state.waiting.deliver(id, verdict.clone()) {
        // The connection waits on another node: the decision goes there.
        crate::cluster::send(state, &crate::cluster::Message::Decide { wait: id.to_owned(), verdict }).await;
    }
    Ok(wait)
}
