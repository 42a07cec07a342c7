//! Configuration: one TOML file, every key overridable by an environment variable
//! `PORTCULLIS_<SECTION>_<KEY>` (e.g. `PORTCULLIS_SERVER_LISTEN`), validated at start with
//! errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod archive;
mod directories;
mod node;
mod proxies;
use proxies::check_proxy;
pub use proxies::{AaPluginSettings, RdpSettings, TelnetSettings};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub vault: VaultConfig,
    pub ssh: SshConfig,
    pub telnet: TelnetSettings,
    pub rdp: RdpSettings,
    /// AA plugins by name (`[aa_plugins.NAME]`), which connection policies may name.
    pub aa_plugins: std::collections::BTreeMap<String, AaPluginSettings>,
    /// Directory connections by name (`[directories.NAME]`), file only.
    pub directories: std::collections::BTreeMap<String, directories::DirectorySettings>,
    pub oidc: directories::OidcConfig,
    /// `[archive]`: where ended sessions' recordings are copied.
    pub archive: archive::ArchiveConfig,
    /// `[node]`: this node's name and heartbeat (several nodes on one database).
    pub node: node::NodeConfig,
    pub siem: SiemConfig,
    pub mail: MailSettings,
    pub webhook: WebhookSettings,
    pub notifications: NotificationSettings,
}

/// Notifications by e-mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// `smtp://HOST:PORT`, `smtp://HOST:587?tls=required` (STARTTLS) or
    /// `smtps://USER:PASSWORD@HOST:465`; empty: no mail.
    pub smtp: String,
    pub from: String,
    /// Where Portcullis takes replies to approval mails (its own SMTP listener), e.g.
    /// `0.0.0.0:2525`; empty: approvers decide in the web UI only.
    pub reply_listen: String,
    /// The address replies go to (mails carry it tagged with their token); empty: `from`'s.
    pub reply_address: String,
    /// The largest reply taken, in bytes.
    pub reply_max_bytes: usize,
    /// How long an approval mail can be answered (and its link used), in hours.
    pub token_hours: i64,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            smtp: String::new(),
            from: "Portcullis <portcullis@localhost>".into(),
            reply_listen: String::new(),
            reply_address: String::new(),
            reply_max_bytes: 5 * 1024 * 1024,
            token_hours: 72,
        }
    }
}

/// Notifications by webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Where each notification is POSTed; empty: no webhook.
    pub url: String,
    /// The HMAC-SHA256 key receivers check `X-Portcullis-Signature` with (16 characters or more).
    pub secret: String,
    /// `json` or `slack`.
    pub format: String,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings { url: String::new(), secret: String::new(), format: "json".into() }
    }
}

/// What every notification channel shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// The web UI's address as people reach it (links in notifications).
    pub web_url: String,
    pub retry_seconds: u64,
    pub attempts: i64,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings { web_url: "https://127.0.0.1:8443".into(), retry_seconds: 30, attempts: 10 }
    }
}

/// The notification channels that are on, checked.
pub struct Channels {
    pub mail: Option<portcullis_notify::mail::MailConfig>,
    /// The reply listener's address, when replies are on (its settings are in `mail`).
    pub reply_listen: Option<std::net::SocketAddr>,
    pub webhook: Option<portcullis_notify::webhook::WebhookConfig>,
    pub notifier: portcullis_notify::notifier::NotifierConfig,
}

impl Config {
    pub fn channels(&self) -> Result<Channels, ConfigError> {
        let n = &self.notifications;
        if !(1..=100).contains(&n.attempts) {
            return Err(key_error("notifications.attempts", "1 to 100"));
        }
        let mail = if self.mail.smtp.is_empty() {
            None
        } else {
            let m = &self.mail;
            if !(m.smtp.starts_with("smtp://") || m.smtp.starts_with("smtps://")) {
                return Err(key_error(
                    "mail.smtp",
                    "write smtp://HOST:PORT, smtp://HOST:587?tls=required or smtps://HOST:465",
                ));
            }
            if !portcullis_notify::mail::valid_mailbox(&m.from) {
                return Err(key_error(
                    "mail.from",
                    format!("'{}' is not a mailbox; write e.g. Portcullis <pam@example.com>", m.from),
                ));
            }
            if !(1..=24 * 30).contains(&m.token_hours) {
                return Err(key_error("mail.token_hours", "1 to 720 (hours)"));
            }
            let reply = if m.reply_listen.is_empty() {
                None
            } else {
                let address = if m.reply_address.is_empty() {
                    portcullis_notify::mail::address_of(&m.from).unwrap_or_default()
                } else {
                    m.reply_address.clone()
                };
                if !portcullis_notify::mail::plain_address(&address) {
                    return Err(key_error(
                        "mail.reply_address",
                        format!("'{address}' is not a plain address without '+'; write e.g. approvals@pam.example.com"),
                    ));
                }
                if !(1024..=100 * 1024 * 1024).contains(&m.reply_max_bytes) {
                    return Err(key_error("mail.reply_max_bytes", "1024 to 104857600 (bytes)"));
                }
                Some(portcullis_notify::inbound::ReplyConfig {
                    address,
                    max_bytes: m.reply_max_bytes,
                    token_hours: m.token_hours,
                })
            };
            Some(portcullis_notify::mail::MailConfig {
                smtp_url: m.smtp.clone(),
                from: m.from.clone(),
                web_url: n.web_url.clone(),
                reply,
                token_hours: m.token_hours,
            })
        };
        let reply_listen = if self.mail.reply_listen.is_empty() {
            None
        } else if mail.is_none() {
            return Err(key_error("mail.reply_listen", "replies need mail.smtp set: approval mails go out by SMTP"));
        } else {
            Some(
                self.mail
                    .reply_listen
                    .parse()
                    .map_err(|_| key_error("mail.reply_listen", "write HOST:PORT, e.g. 0.0.0.0:2525"))?,
            )
        };
        let webhook = if self.webhook.url.is_empty() {
            None
        } else {
            let w = &self.webhook;
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                return Err(key_error("webhook.url", "write https://HOST/PATH"));
            }
            if w.secret.len() < 16 {
                return Err(key_error(
                    "webhook.secret",
                    "set a secret of 16 characters or more: receivers check signatures with it",
                ));
            }
            let format = w.format.parse().map_err(|m: String| key_error("webhook.format", m))?;
            Some(portcullis_notify::webhook::WebhookConfig {
                url: w.url.clone(),
                secret: zeroize::Zeroizing::new(w.secret.clone()),
                format,
                web_url: n.web_url.clone(),
            })
        };
        Ok(Channels {
            mail,
            reply_listen,
            webhook,
            notifier: portcullis_notify::notifier::NotifierConfig {
                retry_seconds: n.retry_seconds.max(1),
                attempts: n.attempts,
            },
        })
    }
}

/// Every audit event forwarded to a SIEM as syslog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiemConfig {
    /// `udp://HOST:PORT`, `tcp://HOST:PORT` (RFC 6587 octet counting) or `tls://HOST:PORT`
    /// (RFC 5425); empty: off.
    pub syslog: String,
    /// `rfc5424` (structured data and JSON) or `cef`.
    pub format: String,
    /// PEM file of the CA that signed the receiver's certificate (TLS); empty: the public roots.
    pub tls_ca: String,
    /// The APP-NAME field.
    pub app_name: String,
}

impl Default for SiemConfig {
    fn default() -> Self {
        SiemConfig {
            syslog: String::new(),
            format: "rfc5424".into(),
            tls_ca: String::new(),
            app_name: "portcullis".into(),
        }
    }
}

impl SiemConfig {
    /// The forwarder's settings, if forwarding is on.
    pub fn syslog(&self) -> Result<Option<portcullis_notify::syslog::SyslogConfig>, ConfigError> {
        if self.syslog.is_empty() {
            return Ok(None);
        }
        let target = self.syslog.parse().map_err(|m: String| key_error("siem.syslog", m))?;
        let format = self.format.parse().map_err(|m: String| key_error("siem.format", m))?;
        Ok(Some(portcullis_notify::syslog::SyslogConfig {
            target,
            format,
            tls_ca: (!self.tls_ca.is_empty()).then(|| PathBuf::from(&self.tls_ca)),
            app_name: self.app_name.clone(),
        }))
    }
}

/// The SSH session proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// Address and port of the SSH proxy; empty turns it off.
    pub listen: String,
    /// Connections open at once.
    pub max_connections: usize,
    /// Seconds a client has to authenticate.
    pub auth_timeout_seconds: u64,
    /// Connections waiting to sign in at once; beyond, the oldest waiting one is dropped.
    pub max_unauthenticated: usize,
    /// The same, from one address (its own oldest is dropped).
    pub max_unauthenticated_per_source: usize,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            listen: "127.0.0.1:2222".into(),
            max_connections: 4096,
            auth_timeout_seconds: 60,
            max_unauthenticated: 256,
            max_unauthenticated_per_source: 32,
        }
    }
}

/// Where the vault's key-encryption key comes from. Never printed.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// The KEK itself (64 hex digits or base64), e.g. from PORTCULLIS_VAULT_KEY.
    pub key: String,
    /// A command whose standard output is the KEK (for an HSM or KMS).
    pub key_command: String,
    /// Wait after a failed automatic credential change (doubles after each further failure).
    pub change_retry_seconds: i64,
    /// Attempts of an automatic change before it is abandoned and notified.
    pub change_attempts: i64,
}

impl Default for VaultConfig {
    fn default() -> Self {
        let changes = portcullis_app::ChangeSettings::default();
        VaultConfig {
            key: String::new(),
            key_command: String::new(),
            change_retry_seconds: changes.retry_seconds,
            change_attempts: changes.attempts,
        }
    }
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("key", &if self.key.is_empty() { "" } else { "[redacted]" })
            .field("key_command", &self.key_command)
            .field("change_retry_seconds", &self.change_retry_seconds)
            .field("change_attempts", &self.change_attempts)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub tls: bool,
    pub tls_cert: String,
    pub tls_key: String,
    /// The bearer token `/metrics` needs; empty: served to clients on this host only.
    pub metrics_token: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: String,
    pub database_url: String,
    pub sqlite_synchronous: String,
    pub max_connections: u32,
    /// Index sessions for search (R-SES-12) as they run; off: nothing is indexed, and search
    /// answers that this server has no index.
    pub search_index: bool,
    /// Where recordings are written; empty: `recordings` in the data directory. Several nodes
    /// share one directory (a network file system) so that any node plays any session.
    pub recordings_dir: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub session_ttl_minutes: i64,
    pub lockout_threshold: i64,
    pub lockout_minutes: i64,
    pub password_min_length: usize,
    pub totp_issuer: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: String,
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8443".into(),
            tls: true,
            tls_cert: String::new(),
            tls_key: String::new(),
            metrics_token: String::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: "portcullis-data".into(),
            database_url: String::new(),
            sqlite_synchronous: "full".into(),
            max_connections: 8,
            search_index: true,
            recordings_dir: String::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        let s = portcullis_app::AuthSettings::standard();
        AuthConfig {
            session_ttl_minutes: s.session_ttl_minutes,
            lockout_threshold: s.lockout_threshold,
            lockout_minutes: s.lockout_minutes,
            password_min_length: s.password_min_length,
            totp_issuer: s.totp_issuer,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "text".into(), level: "info".into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("configuration key {key}: {message}")]
    Key { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key { key: key.into(), message: message.into() }
}

const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "auth",
    "log",
    "vault",
    "ssh",
    "telnet",
    "rdp",
    "siem",
    "mail",
    "webhook",
    "notifications",
    "oidc",
    "archive",
    "node",
];
// `[aa_plugins.NAME]` tables are set in the file only (no environment overrides).

impl Config {
    /// Loads the file (if any), applies environment overrides, and validates.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut tree = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.into(), source })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax { path: p.into(), message: e.message().to_owned() })?
            }
            None => toml::Table::new(),
        };
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix("PORTCULLIS_") else { continue };
            let rest = rest.to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_') else { continue };
            if !SECTIONS.contains(&section) {
                continue;
            }
            let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(raw.clone()));
            let table = tree
                .entry(section)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| ConfigError::Env {
                    var: var.clone(),
                    message: format!("[{section}] in the file is not a table"),
                })?;
            table.insert(key.to_owned(), value);
        }
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            key_error(&key, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.siem.syslog()?;
        self.channels()?;
        if self.server.tls_cert.is_empty() != self.server.tls_key.is_empty() {
            return Err(key_error("server.tls_cert", "set both server.tls_cert and server.tls_key, or neither"));
        }
        let t = &self.server.metrics_token;
        if !t.is_empty() && (t.chars().count() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control())) {
            return Err(key_error("server.metrics_token", "at least 16 characters, without spaces; or empty"));
        }
        if self.storage.data_dir.is_empty() {
            return Err(key_error("storage.data_dir", "must not be empty"));
        }
        let url = &self.storage.database_url;
        if !(url.is_empty()
            || url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(key_error(
                "storage.database_url",
                "must start with sqlite:, postgres: or postgresql: (or be empty for the embedded SQLite file)",
            ));
        }
        if !["full", "normal"].contains(&self.storage.sqlite_synchronous.as_str()) {
            return Err(key_error("storage.sqlite_synchronous", "must be \"full\" or \"normal\""));
        }
        if !(1..=1000).contains(&self.storage.max_connections) {
            return Err(key_error("storage.max_connections", "must be 1 to 1000"));
        }
        self.node_name()?;
        self.cluster_settings()?;
        if !(1..=7 * 24 * 60).contains(&self.auth.session_ttl_minutes) {
            return Err(key_error("auth.session_ttl_minutes", "must be 1 to 10080 (a week)"));
        }
        if !(1..=100).contains(&self.auth.lockout_threshold) {
            return Err(key_error("auth.lockout_threshold", "must be 1 to 100"));
        }
        if !(1..=7 * 24 * 60).contains(&self.auth.lockout_minutes) {
            return Err(key_error("auth.lockout_minutes", "must be 1 to 10080"));
        }
        if !(8..=128).contains(&self.auth.password_min_length) {
            return Err(key_error("auth.password_min_length", "must be 8 to 128"));
        }
        portcullis_core::validate::name("auth.totp_issuer", &self.auth.totp_issuer)
            .map_err(|e| key_error("auth.totp_issuer", e.message))?;
        if !(1..=86_400).contains(&self.vault.change_retry_seconds) {
            return Err(key_error("vault.change_retry_seconds", "must be 1 to 86400"));
        }
        if !(1..=100).contains(&self.vault.change_attempts) {
            return Err(key_error("vault.change_attempts", "must be 1 to 100"));
        }
        let ssh = &self.ssh;
        let (limits, per_source) = (ssh.max_unauthenticated, ssh.max_unauthenticated_per_source);
        check_proxy(
            "ssh",
            &ssh.listen,
            ssh.max_connections,
            limits,
            per_source,
            ssh.auth_timeout_seconds,
            "127.0.0.1:2222",
        )?;
        let t = &self.telnet;
        let (limits, per_source) = (t.max_unauthenticated, t.max_unauthenticated_per_source);
        check_proxy(
            "telnet",
            &t.listen,
            t.max_connections,
            limits,
            per_source,
            t.auth_timeout_seconds,
            "127.0.0.1:2323",
        )?;
        t.prompts()?;
        let r = &self.rdp;
        let (limits, per_source) = (r.max_unauthenticated, r.max_unauthenticated_per_source);
        check_proxy("rdp", &r.listen, r.max_connections, limits, per_source, r.auth_timeout_seconds, "127.0.0.1:3389")?;
        if r.tls_cert.is_empty() != r.tls_key.is_empty() {
            return Err(key_error("rdp.tls_cert", "set both rdp.tls_cert and rdp.tls_key, or neither"));
        }
        if !(5..=600).contains(&r.logon_timeout_seconds) {
            return Err(key_error("rdp.logon_timeout_seconds", "must be 5 to 600"));
        }
        self.aa_plugins()?;
        self.directories()?;
        self.sso()?;
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(key_error("log.format", "must be \"text\" or \"json\""));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| key_error("log.level", e.to_string()))?;
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            key_error(
                "server.listen",
                format!("'{}' is not an address:port such as 127.0.0.1:8443", self.server.listen),
            )
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(&self.storage.data_dir)
    }

    /// Where recordings are written (`storage.recordings_dir`, else in the data directory).
    pub fn recordings_dir(&self) -> PathBuf {
        if self.storage.recordings_dir.is_empty() {
            self.data_dir().join("recordings")
        } else {
            PathBuf::from(&self.storage.recordings_dir)
        }
    }

    pub fn database_url(&self) -> String {
        if self.storage.database_url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.data_dir().join("portcullis.db").display())
        } else {
            self.storage.database_url.clone()
        }
    }

    pub fn change_settings(&self) -> portcullis_app::ChangeSettings {
        portcullis_app::ChangeSettings {
            retry_seconds: self.vault.change_retry_seconds,
            attempts: self.vault.change_attempts,
        }
    }

    pub fn auth_settings(&self) -> portcullis_app::AuthSettings {
        portcullis_app::AuthSettings {
            session_ttl_minutes: self.auth.session_ttl_minutes,
            lockout_threshold: self.auth.lockout_threshold,
            lockout_minutes: self.auth.lockout_minutes,
            password_min_length: self.auth.password_min_length,
            totp_issuer: self.auth.totp_issuer.clone(),
            rdp_nla_passwords: self.rdp.nla_passwords,
        }
    }
}

/// A complete configuration file with every key, its default and what it means.
pub const EXAMPLE: &str = include_str!("example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reply_settings_are_checked_with_the_key_named() {
        let smtp = ("PORTCULLIS_MAIL_SMTP", "smtp://127.0.0.1:25");
        let err = |pairs: &[(&str, &str)]| Config::load(None, env(pairs)).unwrap_err().to_string();
        let e = err(&[("PORTCULLIS_MAIL_REPLY_LISTEN", "127.0.0.1:2525")]);
        assert!(e.contains("mail.reply_listen") && e.contains("mail.smtp"), "{e}");
        let e = err(&[smtp, ("PORTCULLIS_MAIL_REPLY_LISTEN", "port 25")]);
        assert!(e.contains("mail.reply_listen") && e.contains("HOST:PORT"), "{e}");
        let e = err(&[
            smtp,
            ("PORTCULLIS_MAIL_REPLY_LISTEN", "127.0.0.1:2525"),
            ("PORTCULLIS_MAIL_REPLY_ADDRESS", "a+b@x.test"),
        ]);
        assert!(e.contains("mail.reply_address") && e.contains("without '+'"), "{e}");
        let c = Config::load(
            None,
            env(&[
                smtp,
                ("PORTCULLIS_MAIL_REPLY_LISTEN", "127.0.0.1:2525"),
                ("PORTCULLIS_MAIL_FROM", "PAM <pam@x.test>"),
            ]),
        )
        .unwrap()
        .channels()
        .unwrap();
        assert_eq!(c.mail.unwrap().reply.unwrap().address, "pam@x.test", "the reply address defaults to from's");
    }

    #[test]
    fn siem_settings_are_checked_with_the_key_named() {
        let e = Config::load(None, env(&[("PORTCULLIS_SIEM_SYSLOG", "127.0.0.1:514")])).unwrap_err().to_string();
        assert!(e.contains("siem.syslog") && e.contains("tcp://HOST:PORT"), "{e}");
        let e =
            Config::load(None, env(&[("PORTCULLIS_SIEM_SYSLOG", "tcp://h:514"), ("PORTCULLIS_SIEM_FORMAT", "leef")]))
                .unwrap_err()
                .to_string();
        assert!(e.contains("siem.format") && e.contains("rfc5424 or cef"), "{e}");
        let c = Config::load(None, env(&[("PORTCULLIS_SIEM_SYSLOG", "tls://siem.example:6514")])).unwrap();
        assert!(c.siem.syslog().unwrap().is_some());
    }

    #[test]
    fn example_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, EXAMPLE).unwrap();
        let c = Config::load(Some(&p), env(&[])).unwrap();
        let d = Config::load(None, env(&[])).unwrap();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = Config::load(
            None,
            env(&[
                ("PORTCULLIS_SERVER_LISTEN", "0.0.0.0:9000"),
                ("PORTCULLIS_SERVER_TLS", "false"),
                ("PORTCULLIS_AUTH_LOCKOUT_THRESHOLD", "3"),
                ("PORTCULLIS_CONFIG", "/x"),
                ("OTHER", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000");
        assert!(!c.server.tls);
        assert_eq!(c.auth.lockout_threshold, 3);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |pairs: &[(&str, &str)]| Config::load(None, env(pairs)).unwrap_err().to_string();
        assert!(err(&[("PORTCULLIS_SERVER_LISTEN", "nowhere")]).starts_with("configuration key server.listen:"));
        assert!(
            err(&[("PORTCULLIS_SERVER_LISTN", "x")]).contains("server.listn")
                || err(&[("PORTCULLIS_SERVER_LISTN", "x")]).contains("listn")
        );
        assert!(err(&[("PORTCULLIS_AUTH_LOCKOUT_THRESHOLD", "abc")]).contains("auth.lockout_threshold"));
        assert!(err(&[("PORTCULLIS_STORAGE_DATABASE_URL", "mysql://x")]).contains("storage.database_url"));
        assert!(err(&[("PORTCULLIS_LOG_FORMAT", "xml")]).contains("log.format"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[server]\nlisten = 5\n").unwrap();
        assert!(Config::load(Some(&p), env(&[])).unwrap_err().to_string().contains("server.listen"));
    }
}
