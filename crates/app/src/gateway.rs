//! Connection policies as use cases (R-SES-2, 3, 5, 6): listing and changing them (Security
//! Policy Administrators; Auditors read), "which policy would a connection get, and why not
//! the others", and the decision every proxy asks for when a client names a target.
//!
//! The compiled policies are cached in memory and rebuilt when the stored generation moves
//! (a change through any node is seen at the next connection).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use portcullis_core::gateway::{self, ConnectionPolicy, ConnectionPolicySpec, Facts, Miss};
use portcullis_core::inventory::Protocol;
use portcullis_core::role::Role;
use portcullis_store::{Asset, GroupKind, StoredConnectionPolicy};

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// The compiled policies of one generation, in order.
pub struct GatewaySnapshot {
    pub generation: i64,
    pub policies: Vec<ConnectionPolicy>,
}

#[derive(Default)]
pub struct GatewayCache {
    current: RwLock<Option<Arc<GatewaySnapshot>>>,
    rebuilding: tokio::sync::Mutex<()>,
}

impl GatewayCache {
    fn cached(&self, generation: i64) -> Option<Arc<GatewaySnapshot>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|s| s.generation == generation).cloned()
    }

    /// The policies of the stored generation, rebuilt if it moved.
    pub async fn get(&self, store: &portcullis_store::Store) -> AppResult<Arc<GatewaySnapshot>> {
        let generation = store.connection_policy_generation().await?;
        if let Some(s) = self.cached(generation) {
            return Ok(s);
        }
        let _one = self.rebuilding.lock().await;
        let generation = store.connection_policy_generation().await?;
        if let Some(s) = self.cached(generation) {
            return Ok(s);
        }
        let mut policies = Vec::new();
        for stored in store.connection_policies().await? {
            // Stored policies were validated when written; one that no longer compiles (a
            // time zone dropped from the database, say) is skipped and matches nothing:
            // failing closed for that rule, loudly.
            match compile(&stored) {
                Ok(p) => policies.push(p),
                Err(e) => tracing::error!(policy = %stored.name, error = %e, "connection policy skipped"),
            }
        }
        let snapshot = Arc::new(GatewaySnapshot { generation, policies });
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }
}

fn compile(stored: &StoredConnectionPolicy) -> AppResult<ConnectionPolicy> {
    let spec: ConnectionPolicySpec = serde_json::from_str(&stored.spec)
        .map_err(|e| AppError::invalid("spec", format!("stored policy is not readable: {e}")))?;
    Ok(gateway::compile(&stored.id, &stored.name, &spec)?)
}

/// A stored policy with its rules parsed.
pub struct PolicyView {
    pub stored: StoredConnectionPolicy,
    pub spec: ConnectionPolicySpec,
}

fn view(stored: StoredConnectionPolicy) -> PolicyView {
    let spec = serde_json::from_str(&stored.spec).unwrap_or_else(|_| gateway::default_spec());
    PolicyView { stored, spec }
}

fn may_read(caller: &Caller) -> AppResult<()> {
    if [Role::SecurityPolicyAdmin, Role::Auditor, Role::ApplianceAdmin].iter().any(|r| caller.has(*r)) {
        return Ok(());
    }
    Err(AppError::forbidden(
        "connection policies are shown to Security Policy Administrators, Auditors and Appliance Administrators",
    ))
}

fn may_change(caller: &Caller) -> AppResult<()> {
    if caller.has(Role::SecurityPolicyAdmin) {
        return Ok(());
    }
    Err(AppError::forbidden("only a Security Policy Administrator changes connection policies"))
}

pub async fn list(state: &App, caller: &Caller) -> AppResult<Vec<PolicyView>> {
    may_read(caller)?;
    Ok(state.store.connection_policies().await?.into_iter().map(view).collect())
}

pub async fn get(state: &App, caller: &Caller, id: &str) -> AppResult<PolicyView> {
    may_read(caller)?;
    Ok(view(state.store.connection_policy(id).await?))
}

/// Validates a policy: its rules, and that the groups its channel rules name exist.
async fn validated(state: &App, name: &str, spec: &ConnectionPolicySpec, position: Option<i64>) -> AppResult<String> {
    portcullis_core::validate::name("name", name)?;
    if position.is_some_and(|p| p < 1) {
        return Err(AppError::invalid("position", "1 is tried first; give 1 or more"));
    }
    gateway::compile("new", name, spec)?;
    let a = &spec.algorithms;
    let leg = portcullis_connect::Leg {
        source: None,
        kex: a.kex.clone(),
        ciphers: a.ciphers.clone(),
        macs: a.macs.clone(),
        host_keys: a.host_keys.clone(),
    };
    if let Err((list, name)) = portcullis_connect::check_algorithms(&leg) {
        return Err(AppError::invalid(
            format!("algorithms.{list}"),
            format!("'{name}' is not an algorithm the SSH proxy implements"),
        ));
    }
    if let Some(plugin) = spec.aa_plugin.as_ref().filter(|p| !state.aa_plugins.contains(p)) {
        let configured = match state.aa_plugins.is_empty() {
            true => "none configured".to_owned(),
            false => format!("configured: {}", state.aa_plugins.join(", ")),
        };
        return Err(AppError::invalid(
            "aa_plugin",
            format!("no AA plugin named '{plugin}' is configured on this server ({configured}); define it under [aa_plugins.{plugin}] in the server's configuration file"),
        ));
    }
    for (i, g) in spec.four_eyes_groups.iter().enumerate() {
        if state.store.group(GroupKind::User, g).await.is_err() {
            return Err(AppError::invalid(
                format!("four_eyes_groups[{i}]"),
                format!("there is no user group with id '{g}'"),
            ));
        }
    }
    for (i, rule) in spec.channels.iter().enumerate() {
        for (j, g) in rule.groups.iter().enumerate() {
            if state.store.group(GroupKind::User, g).await.is_err() {
                return Err(AppError::invalid(
                    format!("channels[{i}].groups[{j}]"),
                    format!("there is no user group with id '{g}'"),
                ));
            }
        }
    }
    serde_json::to_string(spec).map_err(|e| AppError::invalid("spec", e.to_string()))
}

pub async fn create(
    state: &App,
    caller: &Caller,
    name: &str,
    spec: &ConnectionPolicySpec,
    position: Option<i64>,
) -> AppResult<PolicyView> {
    may_change(caller)?;
    let json = validated(state, name, spec, position).await?;
    let stored = state.store.create_connection_policy(&caller.actor(), state.now(), name, &json, position).await?;
    Ok(view(stored))
}

pub async fn replace(
    state: &App,
    caller: &Caller,
    id: &str,
    name: &str,
    spec: &ConnectionPolicySpec,
    position: Option<i64>,
) -> AppResult<PolicyView> {
    may_change(caller)?;
    let json = validated(state, name, spec, position).await?;
    let stored = state.store.replace_connection_policy(&caller.actor(), state.now(), id, name, &json, position).await?;
    Ok(view(stored))
}

pub async fn delete(state: &App, caller: &Caller, id: &str) -> AppResult<()> {
    may_change(caller)?;
    Ok(state.store.delete_connection_policy(&caller.actor(), state.now(), id).await?)
}

/// Where an asset is reached by `protocol`: its address and the protocol's port.
pub fn endpoint(asset: &Asset, protocol: Protocol) -> Option<(String, u16)> {
    asset.protocols.iter().find(|p| p.protocol == protocol).map(|p| (asset.address.clone(), p.port))
}

/// One policy's verdict in an explanation.
pub struct Verdict {
    pub policy_id: String,
    pub policy_name: String,
    pub position: usize,
    /// `applies`, or what did not match: `disabled`, `protocol`, `client`, `listen_port`, `target`.
    pub outcome: &'static str,
    pub reason: String,
}

pub struct Explanation {
    pub applies: Option<(String, String)>,
    /// Where the target leg would go (after translation) and from which source address.
    pub destination: Option<(String, u16)>,
    pub source_address: Option<String>,
    pub verdicts: Vec<Verdict>,
    /// The policies after the one that applies (never consulted).
    pub not_consulted: usize,
}

fn reason(p: &ConnectionPolicy, miss: Option<Miss>, f: &Facts) -> String {
    let list = |v: Vec<String>| v.join(", ");
    match miss {
        None => "the first enabled policy that matches this connection".into(),
        Some(Miss::Disabled) => "disabled".into(),
        Some(Miss::Protocol) => format!("for {}, not {}", p.protocol, f.protocol),
        Some(Miss::Client) => {
            format!("client {} is not in {}", f.client, list(p.clients.iter().map(|n| n.to_string()).collect()))
        }
        Some(Miss::ListenPort) => format!(
            "the client came to port {}, the policy covers {}",
            f.listen_port,
            list(p.listen_ports.iter().map(|n| n.to_string()).collect())
        ),
        Some(Miss::Target) => {
            format!("target {} ({}:{}) is not among its targets", f.asset, f.target_address, f.target_port)
        }
    }
}

/// Which policy a connection with these facts gets, and why each policy before it did not.
pub async fn explain_facts(state: &App, facts: &Facts<'_>) -> AppResult<Explanation> {
    let snap = state.gateway.get(&state.store).await?;
    let verdicts = gateway::explain(&snap.policies, facts);
    let applies = verdicts.last().filter(|(_, m)| m.is_none()).map(|(p, _)| *p);
    let consulted = verdicts.len();
    Ok(Explanation {
        applies: applies.map(|p| (p.id.clone(), p.name.clone())),
        destination: applies.map(|p| p.destination(facts.target_address, facts.target_port)),
        source_address: applies.and_then(|p| p.source_address.map(|a| a.to_string())),
        verdicts: verdicts
            .into_iter()
            .enumerate()
            .map(|(i, (p, m))| Verdict {
                policy_id: p.id.clone(),
                policy_name: p.name.clone(),
                position: i + 1,
                outcome: m.map_or("applies", Miss::code),
                reason: reason(p, m, facts),
            })
            .collect(),
        not_consulted: snap.policies.len() - consulted,
    })
}

/// `explain` for an administrator: a client address, the proxy port, a protocol and an asset
/// by name.
pub async fn explain(
    state: &App,
    caller: &Caller,
    protocol: &str,
    client: &str,
    listen_port: Option<u16>,
    asset_name: &str,
) -> AppResult<Explanation> {
    may_read(caller)?;
    let protocol = Protocol::parse(protocol)
        .ok_or_else(|| AppError::invalid("protocol", format!("'{protocol}' is not ssh, telnet or rdp")))?;
    let client: IpAddr = client
        .trim()
        .parse()
        .map_err(|_| AppError::invalid("client", format!("'{client}' is not an IP address, e.g. 10.1.2.3")))?;
    let asset = state
        .store
        .asset_by_name(asset_name)
        .await?
        .ok_or_else(|| AppError::invalid("asset", format!("there is no asset named '{asset_name}'")))?;
    let (address, port) = endpoint(&asset, protocol).ok_or_else(|| {
        AppError::invalid("asset", format!("{} has no {} service configured in Portcullis", asset.name, protocol))
    })?;
    let listen_port = listen_port.unwrap_or(default_listen_port(state, protocol));
    let facts =
        Facts { protocol, client, listen_port, asset: &asset.name, target_address: &address, target_port: port };
    explain_facts(state, &facts).await
}

fn default_listen_port(state: &App, protocol: Protocol) -> u16 {
    match protocol {
        Protocol::Ssh => state.ssh_host.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(2222),
        Protocol::Telnet => Some(state.telnet_port).filter(|p| *p != 0).unwrap_or(2323),
        Protocol::Rdp => 3389,
    }
}

/// What a proxy gets for a connection: the policy that applies, or the message that tells the
/// user what to fix (R-SES-15).
pub async fn decide(state: &App, facts: &Facts<'_>) -> Result<ConnectionPolicy, String> {
    let snap = state
        .gateway
        .get(&state.store)
        .await
        .map_err(|_| "Portcullis cannot check its connection policies right now; try again later".to_owned())?;
    gateway::select(&snap.policies, facts).cloned().ok_or_else(|| {
        format!(
            "no connection policy admits {} from {} to {} on proxy port {}; ask a Security Policy Administrator to add one (portcullis connection-policy explain --protocol {} --client {} --asset {})",
            facts.protocol.as_str().to_uppercase(),
            facts.client,
            facts.asset,
            facts.listen_port,
            facts.protocol,
            facts.client,
            facts.asset
        )
    })
}
