//! The application state every front end holds: the store, the clock, the vault, settings,
//! the live-session registry, the event stream and the policy cache. Cloning is cheap.

use std::sync::Arc;

use portcullis_store::Store;

use crate::metrics::Metrics;
use crate::policy_cache::PolicyCache;
use crate::sessions::LiveSessions;

/// The time source. The server uses the system clock; tests can set any time.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        jiff::Timestamp::now().as_microsecond()
    }
}

/// Authentication settings, validated by the configuration layer.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub session_ttl_minutes: i64,
    pub lockout_threshold: i64,
    pub lockout_minutes: i64,
    pub password_min_length: usize,
    pub totp_issuer: String,
    /// `[rdp] nla_passwords`: keep a sealed NT hash of each user's password at sign-in, so the
    /// RDP proxy's NLA takes the Portcullis password (not only launch tokens).
    pub rdp_nla_passwords: bool,
}

impl AuthSettings {
    /// Settings for tests and for the example configuration.
    pub fn standard() -> Self {
        AuthSettings {
            session_ttl_minutes: 12 * 60,
            lockout_threshold: 5,
            lockout_minutes: 15,
            password_min_length: 12,
            totp_issuer: "Portcullis".into(),
            rdp_nla_passwords: false,
        }
    }
}

/// How automatic credential changes retry.
#[derive(Debug, Clone, Copy)]
pub struct ChangeSettings {
    /// The wait after the first failed attempt; it doubles after each further one.
    pub retry_seconds: i64,
    /// Attempts before the change is abandoned and Asset Administrators are notified.
    pub attempts: i64,
}

impl Default for ChangeSettings {
    fn default() -> Self {
        ChangeSettings { retry_seconds: 30, attempts: 5 }
    }
}

/// What every use case can reach.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub auth: Arc<AuthSettings>,
    pub metrics: Arc<Metrics>,
    /// Request state changes, for subscribers such as the session proxies (one node: an
    /// in-process broadcast; several nodes: PostgreSQL LISTEN/NOTIFY feeding it).
    pub events: tokio::sync::broadcast::Sender<portcullis_store::Transition>,
    /// The vault's key ring: the only way to seal and open credentials.
    pub vault: Arc<portcullis_vault::KeyRing>,
    pub changes: ChangeSettings,
    pub live: Arc<LiveSessions>,
    /// Entitlements, policies and group memberships in memory, rebuilt when they change.
    pub policies: Arc<PolicyCache>,
    /// Connection policies in memory, rebuilt when they change.
    pub gateway: Arc<crate::gateway::GatewayCache>,
    /// Connections waiting for a confirmation or an authorizer (this node).
    pub waiting: Arc<crate::waiting::WaitingRoom>,
    /// Where session recordings are stored.
    pub recordings: Arc<std::path::PathBuf>,
    /// The SSH proxy's address as users reach it (host:port), for ready-to-paste commands.
    pub ssh_host: Arc<String>,
    /// The SSH proxy's host keys, so users can check what their client shows on first connect.
    pub ssh_host_keys: Arc<Vec<HostKeyInfo>>,
    /// The Telnet proxy's port (0: off).
    pub telnet_port: u16,
    /// The names of the AA plugins this server configures (connection policies may name them).
    pub aa_plugins: Arc<Vec<String>>,
    /// Failed sign-ins per source address, and unknown usernames' lockout (this node).
    pub throttle: Arc<crate::throttle::Throttle>,
    /// E-mail is configured: set-password links can reach users.
    pub mail: bool,
    /// Where the audit chain's head is anchored outside the database (`None`: not anchored).
    pub audit_anchor: Option<Arc<crate::audit_anchor::AnchorFile>>,
    /// The bearer token `/metrics` needs (`None`: clients on this host only).
    pub metrics_token: Option<Arc<String>>,
    /// RDP recordings decoded into frames lately (for the player).
    pub screens: Arc<crate::screens::Screens>,
    /// The RDP proxy's address as users reach it (host:port; empty: off).
    pub rdp_host: Arc<String>,
    pub directories: Arc<Vec<crate::directory::DirectoryConn>>,
    pub sso: Option<Arc<crate::sso::Sso>>,
    /// The session search index (`None`: not opened, as in some tests).
    pub search: Option<portcullis_search::SearchIndex>,
    /// Where ended sessions' recordings are copied (`None`: no archive configured).
    pub archive: Option<Arc<crate::archive::Archive>>,
    /// This node's name (several nodes on one database: each its own).
    pub node: Arc<str>,
}

/// One public host key of the SSH proxy.
#[derive(Debug, Clone)]
pub struct HostKeyInfo {
    /// e.g. ssh-ed25519.
    pub algorithm: String,
    /// `SHA256:…`, as `ssh` prints it.
    pub fingerprint: String,
    /// The public key in OpenSSH format.
    pub public_key: String,
}

impl App {
    pub fn new(store: Store, clock: Arc<dyn Clock>, auth: AuthSettings, vault: portcullis_vault::KeyRing) -> Self {
        let (events, _) = tokio::sync::broadcast::channel(1024);
        App {
            store,
            clock,
            auth: Arc::new(auth),
            metrics: Arc::new(Metrics::new()),
            events,
            vault: Arc::new(vault),
            changes: ChangeSettings::default(),
            live: Arc::new(LiveSessions::default()),
            policies: Arc::new(PolicyCache::default()),
            gateway: Arc::default(),
            waiting: Arc::default(),
            screens: Arc::default(),
            rdp_host: Arc::default(),
            directories: Arc::default(),
            sso: None,
            search: None,
            archive: None,
            node: Arc::from("node-1"),
            recordings: Arc::new(std::path::PathBuf::from("recordings")),
            ssh_host: Arc::new("127.0.0.1:2222".into()),
            ssh_host_keys: Arc::new(Vec::new()),
            aa_plugins: Arc::new(Vec::new()),
            telnet_port: 0,
            throttle: Arc::default(),
            mail: false,
            metrics_token: None,
            audit_anchor: None,
        }
    }

    pub fn with_change_settings(self, changes: ChangeSettings) -> Self {
        App { changes, ..self }
    }

    pub fn with_ssh_host(self, host: String) -> Self {
        App { ssh_host: Arc::new(host), ..self }
    }

    pub fn with_sso(self, sso: Option<crate::sso::Sso>) -> Self {
        App { sso: sso.map(Arc::new), ..self }
    }

    pub fn with_directories(self, directories: Vec<crate::directory::DirectoryConn>) -> Self {
        App { directories: Arc::new(directories), ..self }
    }

    pub fn with_rdp_host(self, host: String) -> Self {
        App { rdp_host: Arc::new(host), ..self }
    }

    pub fn with_ssh_host_keys(self, keys: Vec<HostKeyInfo>) -> Self {
        App { ssh_host_keys: Arc::new(keys), ..self }
    }

    pub fn with_telnet_port(self, telnet_port: u16) -> Self {
        App { telnet_port, ..self }
    }

    pub fn with_aa_plugins(self, mut names: Vec<String>) -> Self {
        names.sort();
        App { aa_plugins: Arc::new(names), ..self }
    }

    pub fn with_audit_anchor(self, path: std::path::PathBuf) -> Self {
        App { audit_anchor: Some(Arc::new(crate::audit_anchor::AnchorFile::new(path))), ..self }
    }

    pub fn with_metrics_token(self, token: Option<String>) -> Self {
        App { metrics_token: token.map(Arc::new), ..self }
    }

    pub fn with_mail(self, mail: bool) -> Self {
        App { mail, ..self }
    }

    pub fn with_archive(self, archive: Option<crate::archive::Archive>) -> Self {
        App { archive: archive.map(Arc::new), ..self }
    }

    pub fn with_node(self, name: &str) -> Self {
        App { node: Arc::from(name), ..self }
    }

    pub fn with_search(self, index: portcullis_search::SearchIndex) -> Self {
        App { search: Some(index), ..self }
    }

    pub fn with_recordings(self, dir: std::path::PathBuf) -> Self {
        App { recordings: Arc::new(dir), ..self }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_micros()
    }

    /// Tells subscribers about state changes, on this node at once and on the others through
    /// the database (see `cluster`); nobody listening is fine.
    pub fn publish(&self, transitions: impl IntoIterator<Item = portcullis_store::Transition>) {
        let transitions: Vec<_> = transitions.into_iter().collect();
        for t in &transitions {
            let _ = self.events.send(t.clone());
        }
        crate::cluster::send_transitions(self, transitions);
    }
}
