//! Connection policies (R-SES-2, 3, 5, 6): the first step of every proxied connection, for
//! every protocol (SSH and Telnet now, RDP next).
//!
//! Policies are tried in order; the first whose protocol, client network, proxy port and
//! target all match applies and decides everything after it: where the target leg goes
//! (address translation), which source address it leaves from (SNAT), which algorithms it may
//! negotiate, and which channels may open, for whom and when. No match: refused.
//!
//! An administrator writes a [`ConnectionPolicySpec`] (stored as given, shown back as given);
//! [`compile`] validates it into a [`ConnectionPolicy`], naming the field of every mistake.
//! Everything here is pure: the clock comes in as a parameter.

use std::net::IpAddr;

use ipnet::IpNet;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use regex::{Regex, RegexBuilder};

use crate::inventory::Protocol;
use crate::schedule::{local_slot, parse_hhmm, TimeRestrictions, Weekdays, Window};
use crate::ValidationError;

/// Bounds on what one policy may hold: every list is checked against these.
pub const MAX_ITEMS: usize = 64;
/// The largest compiled size of one regular expression.
const REGEX_SIZE: usize = 256 * 1024;

mod spec;
pub use spec::*;

/// A target a policy covers, compiled.
#[derive(Debug, Clone)]
pub enum TargetRule {
    Asset { pattern: String, port: Option<u16> },
    Network { net: IpNet, port: Option<u16> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub address: String,
    pub port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct ChannelRule {
    pub kind: ChannelKind,
    pub groups: Vec<String>,
    pub windows: TimeRestrictions,
    pub commands: Vec<Regex>,
    pub destinations: Vec<(String, Option<u16>)>,
}

/// A validated connection policy, ready to match.
#[derive(Debug, Clone)]
pub struct ConnectionPolicy {
    pub id: String,
    pub name: String,
    pub protocol: Protocol,
    pub enabled: bool,
    pub clients: Vec<Net>,
    pub listen_ports: Vec<u16>,
    pub targets: Vec<TargetRule>,
    pub translate: Option<Translation>,
    pub source_address: Option<IpAddr>,
    pub algorithms: AlgorithmsSpec,
    pub channels: Vec<ChannelRule>,
    pub pre_channel_check: bool,
    pub time_zone: TimeZone,
    pub content: crate::content::ContentRules,
    pub gateway_authentication: bool,
    pub four_eyes_groups: Vec<String>,
    pub wait_seconds: u32,
    pub aa_plugin: Option<String>,
    pub usermapping: Vec<String>,
    pub recording: bool,
}

fn bounded<T>(field: &str, list: &[T]) -> Result<(), ValidationError> {
    if list.len() > MAX_ITEMS {
        return Err(ValidationError::new(field, format!("at most {MAX_ITEMS} entries (found {})", list.len())));
    }
    Ok(())
}

/// A network: CIDR (`10.0.0.0/8`) or a single address.
pub fn parse_network(field: &str, text: &str) -> Result<IpNet, ValidationError> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    t.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        ValidationError::new(field, format!("'{text}' is not a network; write e.g. 10.0.0.0/8, 192.0.2.7 or ::1"))
    })
}

/// A host pattern: letters, digits, `.-_:*` (IPv6 addresses included), 1 to 253 characters.
fn host_pattern(field: &str, text: &str) -> Result<String, ValidationError> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*'));
    if !ok {
        return Err(ValidationError::new(
            field,
            format!("'{text}' is not a host name or pattern (letters, digits, . - _ : and * only)"),
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
/// Case-insensitive (host and asset names).
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Iterative matching with one backtrack point: linear in practice, never recursive.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn port_nonzero(field: &str, port: Option<u16>) -> Result<(), ValidationError> {
    if port == Some(0) {
        return Err(ValidationError::new(field, "a port is 1 to 65535"));
    }
    Ok(())
}

fn destination(field: &str, text: &str) -> Result<(String, Option<u16>), ValidationError> {
    let shape = || ValidationError::new(field, format!("'{text}' is not HOST:PORT (e.g. db1.internal:5432, *:443)"));
    let (host, port) = text.rsplit_once(':').ok_or_else(shape)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = match port {
        "*" => None,
        p => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(shape)?),
    };
    Ok((host_pattern(field, host)?, port))
}

fn windows(field: &str, list: &[WindowSpec]) -> Result<TimeRestrictions, ValidationError> {
    bounded(field, list)?;
    let windows = list
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let days = Weekdays::parse(&format!("{field}[{i}].days"), &w.days)?;
            let start = parse_hhmm(&format!("{field}[{i}].start"), &w.start)?;
            let end = parse_hhmm(&format!("{field}[{i}].end"), &w.end)?;
            Window::new(days, start, end).map_err(|e| ValidationError::new(format!("{field}[{i}].end"), e.message))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TimeRestrictions { windows })
}

fn channel_rule(field: &str, spec: &ChannelRuleSpec) -> Result<ChannelRule, ValidationError> {
    let kind = ChannelKind::parse(&spec.kind).ok_or_else(|| {
        ValidationError::new(
            format!("{field}.kind"),
            format!("'{}' is not a channel kind ({})", spec.kind, ChannelKind::names()),
        )
    })?;
    bounded(&format!("{field}.groups"), &spec.groups)?;
    bounded(&format!("{field}.commands"), &spec.commands)?;
    bounded(&format!("{field}.destinations"), &spec.destinations)?;
    if !spec.commands.is_empty() && kind != ChannelKind::Exec {
        return Err(ValidationError::new(format!("{field}.commands"), "only an exec rule has a command list"));
    }
    if !spec.destinations.is_empty() && kind != ChannelKind::LocalForward {
        return Err(ValidationError::new(
            format!("{field}.destinations"),
            "only a local_forward rule has a destination list",
        ));
    }
    let commands = spec
        .commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            RegexBuilder::new(c).size_limit(REGEX_SIZE).build().map_err(|e| {
                ValidationError::new(format!("{field}.commands[{i}]"), format!("not a valid regular expression: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let destinations = spec
        .destinations
        .iter()
        .enumerate()
        .map(|(i, d)| destination(&format!("{field}.destinations[{i}]"), d))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, g) in spec.groups.iter().enumerate() {
        if g.is_empty() || g.len() > 128 {
            return Err(ValidationError::new(format!("{field}.groups[{i}]"), "not a group id"));
        }
    }
    Ok(ChannelRule {
        kind,
        groups: spec.groups.clone(),
        windows: windows(&format!("{field}.windows"), &spec.windows)?,
        commands,
        destinations,
    })
}

/// Validates `spec` into a policy. Errors name the field as the client sent it.
pub fn compile(id: &str, name: &str, spec: &ConnectionPolicySpec) -> Result<ConnectionPolicy, ValidationError> {
    let protocol = Protocol::parse(&spec.protocol).ok_or_else(|| {
        ValidationError::new("protocol", format!("'{}' is not a protocol (ssh, telnet, rdp)", spec.protocol))
    })?;
    bounded("clients", &spec.clients)?;
    bounded("listen_ports", &spec.listen_ports)?;
    bounded("targets", &spec.targets)?;
    bounded("channels", &spec.channels)?;
    let clients = spec
        .clients
        .iter()
        .enumerate()
        .map(|(i, c)| parse_network(&format!("clients[{i}]"), c).map(Net::from))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, p) in spec.listen_ports.iter().enumerate() {
        port_nonzero(&format!("listen_ports[{i}]"), Some(*p))?;
    }
    let targets = spec
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let f = format!("targets[{i}]");
            port_nonzero(&format!("{f}.port"), t.port)?;
            match (&t.asset, &t.network) {
                (Some(a), None) => {
                    Ok(TargetRule::Asset { pattern: host_pattern(&format!("{f}.asset"), a)?, port: t.port })
                }
                (None, Some(n)) => {
                    Ok(TargetRule::Network { net: parse_network(&format!("{f}.network"), n)?, port: t.port })
                }
                _ => Err(ValidationError::new(f, "name either an asset (name or pattern) or a network, not both")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let translate = match &spec.translate {
        Some(t) => {
            crate::validate::address("translate.address", &t.address)?;
            port_nonzero("translate.port", t.port)?;
            Some(Translation { address: t.address.clone(), port: t.port })
        }
        None => None,
    };
    let source_address =
        match &spec.source_address {
            Some(s) => Some(s.trim().parse::<IpAddr>().map_err(|_| {
                ValidationError::new("source_address", format!("'{s}' is not an IP address of this host"))
            })?),
            None => None,
        };
    let a = &spec.algorithms;
    for (field, list) in [("kex", &a.kex), ("ciphers", &a.ciphers), ("macs", &a.macs), ("host_keys", &a.host_keys)] {
        bounded(&format!("algorithms.{field}"), list)?;
        for (i, name) in list.iter().enumerate() {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "-.@_".contains(c));
            if !ok {
                return Err(ValidationError::new(format!("algorithms.{field}[{i}]"), "not an algorithm name"));
            }
        }
    }
    if protocol != Protocol::Ssh && !a.is_default() {
        return Err(ValidationError::new("algorithms", "algorithms apply to SSH policies only"));
    }
    let channels = spec
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| channel_rule(&format!("channels[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, c) in channels.iter().enumerate() {
        let relayed = match protocol {
            Protocol::Ssh => matches!(
                c.kind,
                ChannelKind::Shell
                    | ChannelKind::Exec
                    | ChannelKind::Sftp
                    | ChannelKind::Scp
                    | ChannelKind::LocalForward
            ),
            Protocol::Telnet => c.kind == ChannelKind::Shell,
            Protocol::Rdp => {
                matches!(
                    c.kind,
                    ChannelKind::Clipboard | ChannelKind::Drive | ChannelKind::Audio | ChannelKind::Dynamic
                )
            }
        };
        if !relayed {
            return Err(ValidationError::new(
                format!("channels[{i}].kind"),
                format!("the {protocol} proxy does not relay {} channels; they are always refused", c.kind.as_str()),
            ));
        }
    }
    bounded("four_eyes_groups", &spec.four_eyes_groups)?;
    if !(10..=3600).contains(&spec.wait_seconds) {
        return Err(ValidationError::new("wait_seconds", "10 to 3600 seconds"));
    }
    if let Some(name) = &spec.aa_plugin {
        plugin_name("aa_plugin", name)?;
    }
    bounded("usermapping", &spec.usermapping)?;
    for (i, m) in spec.usermapping.iter().enumerate() {
        account_pattern(&format!("usermapping[{i}]"), m)?;
    }
    if !spec.usermapping.is_empty() && spec.aa_plugin.is_none() {
        return Err(ValidationError::new(
            "usermapping",
            "usermapping applies to an AA plugin's mappings; name the aa_plugin",
        ));
    }
    crate::validate::time_zone("time_zone", &spec.time_zone)?;
    let time_zone = TimeZone::get(&spec.time_zone)
        .map_err(|_| ValidationError::new("time_zone", format!("'{}' is not a known time zone", spec.time_zone)))?;
    Ok(ConnectionPolicy {
        id: id.into(),
        name: name.into(),
        protocol,
        enabled: spec.enabled,
        clients,
        listen_ports: spec.listen_ports.clone(),
        targets,
        translate,
        source_address,
        algorithms: spec.algorithms.clone(),
        channels,
        pre_channel_check: spec.pre_channel_check,
        time_zone,
        content: crate::content::compile(&spec.content)?,
        gateway_authentication: spec.gateway_authentication,
        four_eyes_groups: spec.four_eyes_groups.clone(),
        wait_seconds: spec.wait_seconds,
        aa_plugin: spec.aa_plugin.clone(),
        usermapping: spec.usermapping.clone(),
        recording: spec.recording,
    })
}

/// An AA plugin's name: letters, digits, `-` and `_`, 1 to 64 characters (a key of the
/// server's `[aa_plugins]`).
pub fn plugin_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(ValidationError::new(field, format!("'{name}' is not a plugin name (letters, digits, - and _)")));
    }
    Ok(())
}

/// An account name or pattern: no white space or control characters, 1 to 128 characters.
fn account_pattern(field: &str, text: &str) -> Result<(), ValidationError> {
    let ok = !text.is_empty() && text.len() <= 128 && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(ValidationError::new(
            field,
            format!("'{text}' is not an account name or pattern (no spaces; * for any characters)"),
        ));
    }
    Ok(())
}

/// What a connection policy is matched on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub protocol: Protocol,
    pub client: IpAddr,
    /// The proxy port the client connected to.
    pub listen_port: u16,
    /// The asset's name and the address and port Portcullis reaches it at.
    pub asset: &'a str,
    pub target_address: &'a str,
    pub target_port: u16,
}

/// Why a policy did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Disabled,
    Protocol,
    Client,
    ListenPort,
    Target,
}

impl Miss {
    pub fn code(self) -> &'static str {
        match self {
            Miss::Disabled => "disabled",
            Miss::Protocol => "protocol",
            Miss::Client => "client",
            Miss::ListenPort => "listen_port",
            Miss::Target => "target",
        }
    }
}

/// A network as one 128-bit prefix and mask (IPv4 as IPv4-mapped IPv6), so that matching an
/// address is two operations, and IPv4 clients seen over IPv6 match IPv4 networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    bits: u128,
    mask: u128,
}

impl From<IpNet> for Net {
    fn from(n: IpNet) -> Net {
        let (bits, prefix) = match n {
            IpNet::V4(v4) => (v4.network().to_ipv6_mapped().to_bits(), u32::from(v4.prefix_len()) + 96),
            IpNet::V6(v6) => (v6.network().to_bits(), u32::from(v6.prefix_len())),
        };
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        Net { bits: bits & mask, mask }
    }
}

impl Net {
    pub fn contains(self, addr: u128) -> bool {
        addr & self.mask == self.bits
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = self.mask.leading_ones();
        let v6 = std::net::Ipv6Addr::from_bits(self.bits);
        match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => write!(f, "{v4}/{}", prefix - 96),
            _ => write!(f, "{v6}/{prefix}"),
        }
    }
}

/// An address as [`Net`] compares it.
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// Clients seen over IPv6 as IPv4-mapped addresses match IPv4 networks.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl ConnectionPolicy {
    /// `None` if the policy applies to the connection, else the first thing that does not match.
    pub fn miss(&self, f: &Facts) -> Option<Miss> {
        if !self.enabled {
            return Some(Miss::Disabled);
        }
        if self.protocol != f.protocol {
            return Some(Miss::Protocol);
        }
        let client = bits(f.client);
        if !self.clients.is_empty() && !self.clients.iter().any(|n| n.contains(client)) {
            return Some(Miss::Client);
        }
        if !self.listen_ports.is_empty() && !self.listen_ports.contains(&f.listen_port) {
            return Some(Miss::ListenPort);
        }
        if !self.targets.is_empty() && !self.targets.iter().any(|t| t.matches(f)) {
            return Some(Miss::Target);
        }
        None
    }

    /// Where the target leg goes: the translation, or the asset's own address and port.
    /// Whether the AA plugin may map a connection to `account` (usermapping).
    pub fn may_map_to(&self, account: &str) -> bool {
        self.usermapping.iter().any(|p| wildcard(p, account))
    }

    pub fn destination(&self, address: &str, port: u16) -> (String, u16) {
        match &self.translate {
            Some(t) => (t.address.clone(), t.port.unwrap_or(port)),
            None => (address.to_owned(), port),
        }
    }

    /// May a channel of this kind open now for a member of `groups`? `Err` says why not.
    pub fn channel(&self, ask: &ChannelAsk) -> Result<(), String> {
        let slot = Timestamp::from_microsecond(ask.at).map(|t| local_slot(t, &self.time_zone)).ok();
        let mut why = format!("the connection policy '{}' does not allow {}", self.name, ask.describe());
        for rule in self.channels.iter().filter(|r| r.kind == ask.kind) {
            if !rule.groups.is_empty() && !rule.groups.iter().any(|g| ask.groups.contains(g)) {
                why = format!("{} is allowed only to members of certain groups, and you are not one", ask.describe());
                continue;
            }
            if !slot.is_some_and(|s| rule.windows.permits_slot(s)) {
                why =
                    format!("{} is not allowed at this time by the connection policy '{}'", ask.describe(), self.name);
                continue;
            }
            if let Some(cmd) = ask.command {
                if !rule.commands.is_empty() && !rule.commands.iter().any(|r| r.is_match(cmd)) {
                    why = format!("the command is not on the allowed list of the connection policy '{}'", self.name);
                    continue;
                }
            }
            if let Some((host, port)) = ask.destination {
                let fits = |(h, p): &(String, Option<u16>)| wildcard(h, host) && p.is_none_or(|p| p == port);
                if !rule.destinations.is_empty() && !rule.destinations.iter().any(fits) {
                    why = format!("forwarding to {host}:{port} is not on the allowed list of '{}'", self.name);
                    continue;
                }
            }
            return Ok(());
        }
        Err(why)
    }

    /// Whether any channel at all could open now for a member of `groups` (the pre-channel
    /// check, made before the target is contacted).
    pub fn any_channel(&self, groups: &[String], at: i64) -> bool {
        ChannelKind::ALL.iter().any(|&kind| {
            let ask = ChannelAsk { kind, groups, at, command: None, destination: None };
            self.channel(&ask).is_ok()
        })
    }
}

impl TargetRule {
    fn matches(&self, f: &Facts) -> bool {
        match self {
            TargetRule::Asset { pattern, port } => {
                wildcard(pattern, f.asset) && port.is_none_or(|p| p == f.target_port)
            }
            TargetRule::Network { net, port } => {
                f.target_address.parse::<IpAddr>().is_ok_and(|ip| net.contains(&canonical(ip)))
                    && port.is_none_or(|p| p == f.target_port)
            }
        }
    }
}

/// A channel a client asks for.
#[derive(Debug, Clone, Copy)]
pub struct ChannelAsk<'a> {
    pub kind: ChannelKind,
    /// The user's group ids.
    pub groups: &'a [String],
    pub at: i64,
    pub command: Option<&'a str>,
    pub destination: Option<(&'a str, u16)>,
}

impl ChannelAsk<'_> {
    fn describe(&self) -> String {
        match self.kind {
            ChannelKind::Shell => "an interactive shell".into(),
            ChannelKind::Exec => "running a command".into(),
            ChannelKind::Sftp => "SFTP".into(),
            ChannelKind::Scp => "SCP".into(),
            ChannelKind::LocalForward => "port forwarding".into(),
            ChannelKind::RemoteForward => "remote port forwarding".into(),
            ChannelKind::X11 => "X11 forwarding".into(),
            ChannelKind::Agent => "agent forwarding".into(),
            ChannelKind::Clipboard => "the shared clipboard".into(),
            ChannelKind::Drive => "drive and device redirection".into(),
            ChannelKind::Audio => "audio output".into(),
            ChannelKind::Dynamic => "dynamic virtual channels".into(),
        }
    }
}

/// The policy that applies: the first in order that matches.
pub fn select<'p>(policies: &'p [ConnectionPolicy], facts: &Facts) -> Option<&'p ConnectionPolicy> {
    policies.iter().find(|p| p.miss(facts).is_none())
}

/// Each policy in order up to and including the one that applies, with why it did not.
pub fn explain<'p>(policies: &'p [ConnectionPolicy], facts: &Facts) -> Vec<(&'p ConnectionPolicy, Option<Miss>)> {
    let mut out = Vec::new();
    for p in policies {
        let miss = p.miss(facts);
        out.push((p, miss));
        if miss.is_none() {
            break;
        }
    }
    out
}

/// The policy a fresh installation starts with: SSH from anywhere to any asset, shell, exec,
/// SFTP, SCP and local port forwarding (still subject to each access policy's own setting).
/// Telnet and RDP need a policy of their own: their legs are cleartext or need settings.
pub fn default_spec() -> ConnectionPolicySpec {
    let rule = |kind: &str| ChannelRuleSpec {
        kind: kind.into(),
        groups: vec![],
        windows: vec![],
        commands: vec![],
        destinations: vec![],
    };
    ConnectionPolicySpec {
        protocol: "ssh".into(),
        enabled: true,
        clients: vec![],
        listen_ports: vec![],
        targets: vec![],
        translate: None,
        source_address: None,
        algorithms: AlgorithmsSpec::default(),
        channels: ["shell", "exec", "sftp", "scp", "local_forward"].into_iter().map(rule).collect(),
        pre_channel_check: false,
        time_zone: "UTC".into(),
        content: vec![],
        gateway_authentication: false,
        four_eyes_groups: vec![],
        wait_seconds: 300,
        aa_plugin: None,
        usermapping: vec![],
        recording: true,
    }
}

#[cfg(test)]
mod tests;
