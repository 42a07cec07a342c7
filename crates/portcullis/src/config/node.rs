//! `[node]`: this node's name and heartbeat, for several nodes on one PostgreSQL database
//! (issue 21). Environment overrides: `PORTCULLIS_NODE_NAME`, `…_HEARTBEAT_SECONDS`,
//! `…_LOST_AFTER_SECONDS`.

use std::time::Duration;

use serde::Deserialize;

use super::{key_error, Config, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's name, unique among the nodes on one database; empty: the host's name.
    pub name: String,
    /// How often the node tells the others it is alive.
    pub heartbeat_seconds: u64,
    /// A node silent this long is lost: the others end its sessions.
    pub lost_after_seconds: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { name: String::new(), heartbeat_seconds: 2, lost_after_seconds: 10 }
    }
}

fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(63)
        .collect();
    if name.is_empty() {
        "portcullis".into()
    } else {
        name
    }
}

impl Config {
    /// This node's name: `[node] name`, else the host's name.
    pub fn node_name(&self) -> Result<String, ConfigError> {
        let n = &self.node.name;
        if n.is_empty() {
            return Ok(host_name());
        }
        let ok = n.len() <= 63
            && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
        if !ok {
            return Err(key_error("node.name", "1 to 63 characters: lower-case letters, digits, '-', '.', '_'"));
        }
        Ok(n.clone())
    }

    pub fn cluster_settings(&self) -> Result<portcullis_app::cluster::ClusterSettings, ConfigError> {
        let n = &self.node;
        if !(1..=60).contains(&n.heartbeat_seconds) {
            return Err(key_error("node.heartbeat_seconds", "must be 1 to 60"));
        }
        if n.lost_after_seconds < 3 * n.heartbeat_seconds || n.lost_after_seconds > 3600 {
            return Err(key_error(
                "node.lost_after_seconds",
                "must be at least three heartbeats (3 × node.heartbeat_seconds) and at most 3600",
            ));
        }
        Ok(portcullis_app::cluster::ClusterSettings {
            heartbeat: Duration::from_secs(n.heartbeat_seconds),
            lost_after: Duration::from_secs(n.lost_after_seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(env: &[(&str, &str)]) -> Result<Config, String> {
        Config::load(None, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).map_err(|e| e.to_string())
    }

    #[test]
    fn node_name_and_heartbeat() {
        let c = load(&[]).unwrap();
        assert!(!c.node_name().unwrap().is_empty());
        assert_eq!(c.cluster_settings().unwrap().lost_after.as_secs(), 10);
        let c = load(&[("PORTCULLIS_NODE_NAME", "pam-b")]).unwrap();
        assert_eq!(c.node_name().unwrap(), "pam-b");
        let e = load(&[("PORTCULLIS_NODE_NAME", "Pam B")]).unwrap_err();
        assert!(e.contains("node.name") && e.contains("lower-case"), "{e}");
        let e = load(&[("PORTCULLIS_NODE_HEARTBEAT_SECONDS", "5")]).unwrap_err();
        assert!(e.contains("node.lost_after_seconds") && e.contains("three heartbeats"), "{e}");
    }
}
