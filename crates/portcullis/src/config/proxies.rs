//! The proxies' sections of the configuration: `[telnet]` (with its prompt patterns per
//! platform) and `[aa_plugins.NAME]`, and the checks every proxy section shares.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{key_error, Config, ConfigError, SshConfig};

/// The Telnet session proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelnetSettings {
    /// Address and port of the Telnet proxy; empty turns it off.
    pub listen: String,
    pub max_connections: usize,
    pub auth_timeout_seconds: u64,
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_source: usize,
    /// The prompt patterns of a platform's Telnet login (`[telnet.prompts.linux]` ...); a
    /// pattern not given keeps its default.
    pub prompts: std::collections::BTreeMap<String, PromptSettings>,
}

impl Default for TelnetSettings {
    fn default() -> Self {
        let ssh = SshConfig::default();
        TelnetSettings {
            listen: "127.0.0.1:2323".into(),
            max_connections: ssh.max_connections,
            auth_timeout_seconds: ssh.auth_timeout_seconds,
            max_unauthenticated: ssh.max_unauthenticated,
            max_unauthenticated_per_source: ssh.max_unauthenticated_per_source,
            prompts: Default::default(),
        }
    }
}

/// The RDP session proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RdpSettings {
    /// Address and port of the RDP proxy; empty turns it off.
    pub listen: String,
    pub max_connections: usize,
    pub auth_timeout_seconds: u64,
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_source: usize,
    /// The proxy's certificate and key (PEM) towards RDP clients; empty: a self-signed pair
    /// generated into the data directory (`rdp-cert.pem`, `rdp-key.pem`).
    pub tls_cert: String,
    pub tls_key: String,
    /// Seconds a target has, after the proxy sent the credential, to report the logon; a
    /// target that does not (it refused the credential) ends the session.
    pub logon_timeout_seconds: u64,
    /// NLA with the Portcullis password too (not only launch tokens): a sealed NT hash of each
    /// user's password is kept from their next sign-in (MD4-based, so off by default).
    pub nla_passwords: bool,
}

impl Default for RdpSettings {
    fn default() -> Self {
        let ssh = SshConfig::default();
        RdpSettings {
            listen: "127.0.0.1:3389".into(),
            max_connections: ssh.max_connections,
            auth_timeout_seconds: ssh.auth_timeout_seconds,
            max_unauthenticated: ssh.max_unauthenticated,
            max_unauthenticated_per_source: ssh.max_unauthenticated_per_source,
            tls_cert: String::new(),
            tls_key: String::new(),
            logon_timeout_seconds: 30,
            nla_passwords: false,
        }
    }
}

/// One platform's Telnet prompt patterns (regular expressions).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSettings {
    pub login: Option<String>,
    pub password: Option<String>,
    pub failure: Option<String>,
    pub shell: Option<String>,
}

impl TelnetSettings {
    /// The compiled prompt patterns of each configured platform.
    pub fn prompts(
        &self,
    ) -> Result<std::collections::HashMap<portcullis_core::inventory::Platform, portcullis_proxy::Prompts>, ConfigError>
    {
        let mut out = std::collections::HashMap::new();
        for (name, given) in &self.prompts {
            let platform = portcullis_core::inventory::Platform::parse(name).ok_or_else(|| {
                let all: Vec<&str> = portcullis_core::inventory::Platform::ALL.iter().map(|p| p.as_str()).collect();
                key_error(&format!("telnet.prompts.{name}"), format!("not a platform ({})", all.join(", ")))
            })?;
            let d = portcullis_proxy::PromptPatterns::default();
            let patterns = portcullis_proxy::PromptPatterns {
                login: given.login.clone().unwrap_or(d.login),
                password: given.password.clone().unwrap_or(d.password),
                failure: given.failure.clone().unwrap_or(d.failure),
                shell: given.shell.clone().unwrap_or(d.shell),
            };
            let compiled = portcullis_proxy::Prompts::compile(&patterns)
                .map_err(|(field, message)| key_error(&format!("telnet.prompts.{name}.{field}"), message))?;
            out.insert(platform, compiled);
        }
        Ok(out)
    }
}

/// One AA plugin: a program (JSON on standard input and output) or an HTTPS webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AaPluginSettings {
    /// The program and its arguments (absolute path; no shell).
    #[serde(default)]
    pub command: Vec<String>,
    /// An `https://` URL answering a JSON POST (`http://` only to a loopback address).
    #[serde(default)]
    pub url: String,
    /// Seconds one call may take; then the connection is refused.
    #[serde(default = "aa_timeout")]
    pub timeout_seconds: u64,
}

fn aa_timeout() -> u64 {
    10
}

impl Config {
    /// The AA plugins, checked.
    pub fn aa_plugins(&self) -> Result<portcullis_proxy::AaPlugins, ConfigError> {
        let mut out = portcullis_proxy::AaPlugins::new();
        for (name, p) in &self.aa_plugins {
            let key = |k: &str| format!("aa_plugins.{name}.{k}");
            portcullis_core::gateway::plugin_name("aa_plugins", name)
                .map_err(|e| key_error(&format!("aa_plugins.{name}"), e.message))?;
            let transport = match (p.command.is_empty(), p.url.is_empty()) {
                (false, true) => portcullis_proxy::AaTransport::Command(p.command.clone()),
                (true, false) => portcullis_proxy::AaTransport::Webhook(p.url.clone()),
                _ => return Err(key_error(&format!("aa_plugins.{name}"), "give either command or url")),
            };
            let which = if p.url.is_empty() { "command" } else { "url" };
            portcullis_proxy::check_transport(&transport).map_err(|m| key_error(&key(which), m))?;
            if !(1..=300).contains(&p.timeout_seconds) {
                return Err(key_error(&key("timeout_seconds"), "must be 1 to 300"));
            }
            let timeout = std::time::Duration::from_secs(p.timeout_seconds);
            out.insert(name.clone(), portcullis_proxy::AaPlugin { transport, timeout });
        }
        Ok(out)
    }
}

/// Checks a proxy section's listener and limits.
pub(super) fn check_proxy(
    section: &str,
    listen: &str,
    max_connections: usize,
    max_unauthenticated: usize,
    per_source: usize,
    auth_timeout_seconds: u64,
    example: &str,
) -> Result<(), ConfigError> {
    let key = |k: &str| format!("{section}.{k}");
    if !listen.is_empty() && listen.parse::<SocketAddr>().is_err() {
        return Err(key_error(
            &key("listen"),
            format!("'{listen}' is not an address:port such as {example} (or empty to turn the proxy off)"),
        ));
    }
    if !(1..=100_000).contains(&max_connections) {
        return Err(key_error(&key("max_connections"), "must be 1 to 100000"));
    }
    if !(1..=max_connections).contains(&max_unauthenticated) {
        return Err(key_error(&key("max_unauthenticated"), format!("must be 1 to {section}.max_connections")));
    }
    if !(1..=max_unauthenticated).contains(&per_source) {
        return Err(key_error(
            &key("max_unauthenticated_per_source"),
            format!("must be 1 to {section}.max_unauthenticated"),
        ));
    }
    if !(5..=3600).contains(&auth_timeout_seconds) {
        return Err(key_error(&key("auth_timeout_seconds"), "must be 5 to 3600"));
    }
    Ok(())
}
