//! Several nodes on one PostgreSQL database (issue 21).
//!
//! - **Live control across nodes**: what one node decides about live sessions (request
//!   transitions — revocation, expiry, check-in —, terminations, the end of a disabled user's
//!   sessions) is published on this node at once and written to `cluster_events`; PostgreSQL's
//!   `NOTIFY` wakes the other nodes, which read new events by cursor and act on the sessions
//!   they hold. A node also reads every second without a notification, and after a reconnect
//!   reads what it missed, so a lost notification delays an event by at most a second. The
//!   proxies' periodic check of each session's access stays the backstop.
//! - **The node registry**: each node heartbeats; a node silent for longer than the lost
//!   timeout is declared lost (once, audited) by a survivor, and its open sessions are ended
//!   ("node lost"), their byte counts read from what the recording holds.
//!
//! On SQLite there is one node: nothing is written or read here but the heartbeat.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use portcullis_core::request::{EndCause, RequestState};
use portcullis_store::{Backend, SessionQuery, Transition};
use serde_json::{json, Value};

use crate::state::App;

/// How the node registry times heartbeats.
#[derive(Debug, Clone, Copy)]
pub struct ClusterSettings {
    pub heartbeat: Duration,
    /// A node silent this long is lost: its sessions are ended by the others.
    pub lost_after: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings { heartbeat: Duration::from_secs(2), lost_after: Duration::from_secs(10) }
    }
}

/// An event for the other nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Transition(Transition),
    /// End this session, wherever it runs, with this reason.
    Terminate {
        session: String,
        reason: String,
    },
    /// End every session of this user.
    TerminateUser {
        user: String,
        reason: String,
    },
    /// A waiting connection (gateway authentication, four-eyes) was decided.
    Decide {
        wait: String,
        verdict: crate::waiting::Verdict,
    },
}

impl Message {
    fn encode(&self) -> (&'static str, String) {
        match self {
            Message::Transition(t) => (
                "transition",
                json!({ "request": t.request_id, "from": t.from.as_str(), "to": t.to.as_str(),
                        "ended_by": t.ended_by.map(EndCause::as_str) })
                .to_string(),
            ),
            Message::Terminate { session, reason } => {
                ("terminate", json!({ "session": session, "reason": reason }).to_string())
            }
            Message::TerminateUser { user, reason } => {
                ("terminate_user", json!({ "user": user, "reason": reason }).to_string())
            }
            Message::Decide { wait, verdict } => {
                let body = match verdict {
                    crate::waiting::Verdict::Permitted { by } => json!({ "wait": wait, "permitted": true, "by": by }),
                    crate::waiting::Verdict::Denied { by, reason } => {
                        json!({ "wait": wait, "permitted": false, "by": by, "reason": reason })
                    }
                };
                ("decide", body.to_string())
            }
        }
    }

    fn decode(kind: &str, body: &str) -> Option<Message> {
        let v: Value = serde_json::from_str(body).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(match kind {
            "transition" => Message::Transition(Transition {
                request_id: s("request")?,
                from: RequestState::parse(&s("from")?)?,
                to: RequestState::parse(&s("to")?)?,
                ended_by: match s("ended_by") {
                    Some(c) => Some(EndCause::parse(&c)?),
                    None => None,
                },
            }),
            "terminate" => Message::Terminate { session: s("session")?, reason: s("reason")? },
            "terminate_user" => Message::TerminateUser { user: s("user")?, reason: s("reason")? },
            "decide" => Message::Decide {
                wait: s("wait")?,
                verdict: if v.get("permitted").and_then(Value::as_bool)? {
                    crate::waiting::Verdict::Permitted { by: s("by")? }
                } else {
                    crate::waiting::Verdict::Denied { by: s("by")?, reason: s("reason")? }
                },
            },
            _ => return None,
        })
    }
}

fn shared(state: &App) -> bool {
    state.store.backend() == Backend::Postgres
}

/// Sends transitions to the other nodes (in the background: the caller's answer does not wait;
/// a failure is logged, and the other nodes' periodic checks end what it should have ended).
pub(crate) fn send_transitions(state: &App, transitions: Vec<Transition>) {
    if !shared(state) || transitions.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        for t in transitions {
            send(&state, &Message::Transition(t)).await;
        }
    });
}

/// Sends one event to the other nodes; logged if it cannot be stored.
pub async fn send(state: &App, m: &Message) {
    if !shared(state) {
        return;
    }
    let (kind, body) = m.encode();
    if let Err(e) = state.store.publish_cluster_event(&state.node, kind, &body, state.now()).await {
        tracing::warn!(error = %e, kind, "cannot tell the other nodes");
    }
}

fn apply(state: &App, m: Message) {
    match m {
        Message::Transition(t) => {
            let _ = state.events.send(t);
        }
        Message::Terminate { session, reason } => {
            state.live.terminate(&session, &reason);
        }
        Message::TerminateUser { user, reason } => {
            state.live.terminate_user(&user, &reason);
        }
        Message::Decide { wait, verdict } => {
            state.waiting.deliver(&wait, verdict);
        }
    }
}

/// Where this node is in the event table. Ids are taken in order but may commit out of order,
/// so an id skipped over is looked for again for a while (a transaction still committing)
/// before the cursor passes it.
#[derive(Default)]
struct Cursor {
    floor: i64,
    top: i64,
    seen: BTreeSet<i64>,
    gaps: BTreeMap<i64, Instant>,
}

const GAP_WAIT: Duration = Duration::from_secs(10);

impl Cursor {
    async fn read(&mut self, state: &App) -> Result<usize, portcullis_store::StoreError> {
        let mut n = 0;
        let mut from = self.floor.max(self.top - 10_000);
        loop {
            let events = state.store.cluster_events_after(from, 500).await?;
            let more = events.len() == 500;
            from = events.last().map_or(from, |e| e.id);
            for e in events {
                self.gaps.remove(&e.id);
                if e.id <= self.floor || !self.seen.insert(e.id) {
                    continue;
                }
                if e.id > self.top + 1 && e.id - self.top < 10_000 {
                    let now = Instant::now();
                    for g in self.top + 1..e.id {
                        if !self.seen.contains(&g) {
                            self.gaps.entry(g).or_insert(now);
                        }
                    }
                }
                self.top = self.top.max(e.id);
                n += 1;
                if e.origin == *state.node {
                    continue;
                }
                match Message::decode(&e.kind, &e.body) {
                    Some(m) => apply(state, m),
                    None => tracing::warn!(id = e.id, kind = %e.kind, "unknown event from another node"),
                }
            }
            self.gaps.retain(|_, t| t.elapsed() < GAP_WAIT);
            self.floor = self.gaps.keys().next().map_or(self.top, |g| g - 1);
            let floor = self.floor;
            self.seen.retain(|id| *id > floor);
            if !more {
                return Ok(n);
            }
        }
    }
}

/// Delivers the other nodes' events to this one (PostgreSQL; returns at once on SQLite).
pub async fn run_events(state: App) {
    if !shared(&state) {
        return;
    }
    let mut cursor = Cursor::default();
    loop {
        match state.store.last_cluster_event().await {
            Ok(id) => {
                (cursor.floor, cursor.top) = (id, id);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the other nodes' events; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let mut down = false;
    loop {
        let mut listener = match state.store.listen().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                if !std::mem::replace(&mut down, true) {
                    tracing::warn!(error = %e, "cannot listen for the other nodes' events; reading every second meanwhile");
                }
                let _ = cursor.read(&state).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if std::mem::replace(&mut down, false) {
            tracing::info!("listening for the other nodes' events again");
        }
        // What came while this node was not listening.
        let _ = cursor.read(&state).await;
        loop {
            match tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await {
                // A notification, or a second without one: read.
                Ok(Ok(Some(_))) | Err(_) => {}
                // The connection was lost (the listener reconnects at its next call): read
                // what may have been missed.
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "lost the connection that listens for the other nodes' events");
                    down = true;
                    break;
                }
            }
            if let Err(e) = cursor.read(&state).await {
                tracing::debug!(error = %e, "cannot read the other nodes' events");
            }
        }
    }
}

/// Registers this node, then heartbeats; declares lost the nodes that stopped and ends their
/// sessions. Events older than an hour are purged here too.
pub async fn run_heartbeats(state: App, settings: ClusterSettings) {
    // One node on SQLite: nobody to tell, so a heartbeat a minute keeps the registry readable
    // without a write (and its sync) every few seconds.
    let every = if shared(&state) { settings.heartbeat } else { Duration::from_secs(60) };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lost_after = i64::try_from(settings.lost_after.as_micros()).unwrap_or(i64::MAX);
    let mut passes = 0u64;
    // Since when this node's own heartbeats have all gone through: it judges the others only
    // after a whole timeout of that, so that a database outage, which stops every node's
    // heartbeats alike, makes nobody look lost.
    let mut healthy_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        passes += 1;
        let now = state.now();
        let beat = state.store.heartbeat(&state.node, now).await;
        if beat.is_err() {
            healthy_since = None;
        } else if healthy_since.is_none() {
            healthy_since = Some(Instant::now());
        }
        match beat {
            Ok(true) => {}
            Ok(false) => {
                // The others declared this node lost (it could not reach the database for
                // longer than the timeout) and ended its sessions: end them here too.
                let n = state.live.terminate_all("this server lost contact with the others; reconnect");
                tracing::error!(node = %state.node, sessions = n, "this node was declared lost by the others; its sessions were ended; registering again");
                if let Err(e) = state.store.register_node(&state.node, now, env!("CARGO_PKG_VERSION")).await {
                    tracing::warn!(error = %e, "cannot register this node");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot heartbeat");
                continue;
            }
        }
        if !shared(&state) || healthy_since.is_none_or(|t| t.elapsed() < settings.lost_after) {
            continue;
        }
        if let Err(e) = find_lost(&state, now - lost_after, passes.is_multiple_of(30)).await {
            tracing::warn!(code = e.code, message = %e.message, "cannot check the other nodes");
        }
        if passes.is_multiple_of(1800) {
            let _ = state.store.purge_cluster_events(now - 3_600_000_000).await;
        }
    }
}

/// Declares lost the nodes silent since `before`, and ends the sessions that nodes no longer up
/// left open. The waiting connections of a node go when it is declared lost, and — in case that
/// failed half-way, or it stopped — every minute or so (`sweep`).
async fn find_lost(state: &App, before: i64, sweep: bool) -> crate::error::AppResult<()> {
    let nodes = state.store.nodes().await?;
    let mut declared = std::collections::HashSet::new();
    for n in &nodes {
        if n.name != *state.node
            && n.state == "up"
            && n.heartbeat_at < before
            && state.store.declare_lost(&state.node, &n.name, before, state.now()).await?
        {
            tracing::warn!(node = %n.name, "node lost: it stopped heartbeating; ending its sessions");
            declared.insert(n.name.clone());
        }
    }
    let open: std::collections::HashMap<String, i64> = state.store.live_sessions_by_node().await?.into_iter().collect();
    for n in nodes.iter().filter(|n| n.name != *state.node && (n.state != "up" || declared.contains(&n.name))) {
        if sweep || declared.contains(&n.name) {
            // Its waiting connections went with it.
            state.store.remove_waits_of(&n.name, state.now() - 3_600_000_000).await?;
        }
        if open.get(&n.name).copied().unwrap_or(0) == 0 {
            continue;
        }
        let q = SessionQuery { live: Some(true), node: Some(n.name.clone()), limit: 1000, ..SessionQuery::default() };
        let sessions = state.store.sessions(&q).await?;
        let last = jiff::Timestamp::from_microsecond(n.heartbeat_at).map(|t| t.to_string()).unwrap_or_default();
        let why = if n.state == "stopped" {
            format!("node {} was shut down during the session", n.name)
        } else {
            format!("node lost: {} stopped answering (last heartbeat {last})", n.name)
        };
        crate::sessions::close_open(state, sessions, &why).await?;
    }
    Ok(())
}

/// Whether this node does `work` now: one node at a time holds its lease, renewed at each call
/// for `hold`; when that node stops, another takes over once the lease ran out. Always on
/// SQLite (one node).
pub async fn lead(state: &App, work: &str, hold: Duration) -> bool {
    if !shared(state) {
        return true;
    }
    let now = state.now();
    let until = now.saturating_add(i64::try_from(hold.as_micros()).unwrap_or(i64::MAX));
    match state.store.lease_work(work, &state.node, now, until).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, work, "cannot take the lease on shared work");
            false
        }
    }
}

/// Whether a node is registered and not lost.
pub async fn is_up(state: &App, name: &str) -> crate::error::AppResult<bool> {
    Ok(state.store.nodes().await?.iter().any(|n| n.name == name && n.state == "up"))
}

/// Registers this node at start. On PostgreSQL, a node of the same name that still heartbeats
/// is another running process: refused, with what to change (a crashed node's fresh heartbeat
/// is told apart by waiting two heartbeats for the next one).
pub async fn join(state: &App, settings: ClusterSettings) -> Result<(), String> {
    let fresh = |n: &portcullis_store::NodeRecord, now: i64| {
        n.state == "up" && n.heartbeat_at > now - i64::try_from(settings.lost_after.as_micros()).unwrap_or(i64::MAX)
    };
    let find = || async {
        let nodes = state.store.nodes().await.map_err(|e| format!("cannot read the node registry: {e}"))?;
        Ok::<_, String>(nodes.into_iter().find(|n| n.name == *state.node))
    };
    if shared(state) {
        if let Some(before) = find().await?.filter(|n| fresh(n, state.now())) {
            tokio::time::sleep(settings.heartbeat * 2 + Duration::from_millis(500)).await;
            if let Some(after) = find().await? {
                if after.state == "up" && after.heartbeat_at != before.heartbeat_at {
                    return Err(format!(
                        "another running server already uses the node name {:?} on this database: give each node its own [node] name (PORTCULLIS_NODE_NAME)",
                        state.node
                    ));
                }
            }
        }
    }
    state
        .store
        .register_node(&state.node, state.now(), env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| format!("cannot register this node: {e}"))?;
    state.metrics.node(&state.node);
    // Connections that waited here before a restart are gone.
    state
        .store
        .remove_waits_of(&state.node, state.now() - 3_600_000_000)
        .await
        .map_err(|e| format!("cannot clear this node's waiting connections: {e}"))?;
    Ok(())
}

/// Marks this node stopped (a clean shutdown): the others end what it left open.
pub async fn leave(state: &App) {
    if let Err(e) = state.store.node_stopped(&state.node, state.now()).await {
        tracing::warn!(error = %e, "cannot mark this node stopped");
    }
    // Its waiting connections end with it.
    let _ = state.store.remove_waits_of(&state.node, state.now() - 3_600_000_000).await;
}

/// A node as operators see it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node: portcullis_store::NodeRecord,
    pub live_sessions: i64,
    /// The node answering.
    pub this_node: bool,
}

/// The nodes on this database, with their live sessions (Auditors and Appliance
/// Administrators).
pub async fn nodes(state: &App, caller: &crate::auth::Caller) -> crate::error::AppResult<Vec<NodeView>> {
    use portcullis_core::role::Role;
    if !(caller.has(Role::Auditor) || caller.has(Role::ApplianceAdmin)) {
        return Err(crate::error::AppError::forbidden("the node list is for the roles: auditor, appliance_admin"));
    }
    let counts: std::collections::HashMap<String, i64> =
        state.store.live_sessions_by_node().await?.into_iter().collect();
    Ok(state
        .store
        .nodes()
        .await?
        .into_iter()
        .map(|n| NodeView {
            live_sessions: counts.get(&n.name).copied().unwrap_or(0),
            this_node: n.name == *state.node,
            node: n,
        })
        .collect())
}
