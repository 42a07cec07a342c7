//! The connection-policy document as an administrator writes it (stored as given, shown back
//! as given); `compile` in the parent validates it.

/// A connection policy as an administrator writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
// Unknown fields are refused by the API against `SPEC_FIELDS`: the API embeds this document in
// its bodies next to a name and a position, which serde's own check cannot allow.
pub struct ConnectionPolicySpec {
    /// `ssh`, `telnet` or `rdp`.
    pub protocol: String,
    /// A disabled policy matches nothing.
    #[cfg_attr(feature = "serde", serde(default = "yes"))]
    pub enabled: bool,
    /// Client networks (`10.0.0.0/8`, `192.0.2.7`, `::1`); empty: any client.
    #[cfg_attr(feature = "serde", serde(default))]
    pub clients: Vec<String>,
    /// The proxy ports the client came to; empty: any.
    #[cfg_attr(feature = "serde", serde(default))]
    pub listen_ports: Vec<u16>,
    /// The targets this policy covers; empty: any.
    #[cfg_attr(feature = "serde", serde(default))]
    pub targets: Vec<TargetSpec>,
    /// Address translation: the target leg goes here instead of the asset's address.
    #[cfg_attr(feature = "serde", serde(default))]
    pub translate: Option<TranslateSpec>,
    /// The local address the target leg leaves from (SNAT); absent: the system's choice.
    #[cfg_attr(feature = "serde", serde(default))]
    pub source_address: Option<String>,
    /// Algorithms the target leg may negotiate; an empty list keeps the proxy's defaults.
    #[cfg_attr(feature = "serde", serde(default))]
    pub algorithms: AlgorithmsSpec,
    /// Which channels may open. None listed: none may (the session has nothing to do).
    #[cfg_attr(feature = "serde", serde(default))]
    pub channels: Vec<ChannelRuleSpec>,
    /// Refuse before the target is contacted when no channel could open now for this user.
    #[cfg_attr(feature = "serde", serde(default))]
    pub pre_channel_check: bool,
    /// The zone in which the channel time windows are read (IANA name).
    #[cfg_attr(feature = "serde", serde(default = "utc"))]
    pub time_zone: String,
    /// Content rules on typed commands, output and transferred file names (R-SES-10).
    #[cfg_attr(feature = "serde", serde(default))]
    pub content: Vec<crate::content::ContentRuleSpec>,
    /// Gateway authentication (R-SES-8): the connection waits until the user confirms it out
    /// of band (web UI, CLI, API), signed in there.
    #[cfg_attr(feature = "serde", serde(default))]
    pub gateway_authentication: bool,
    /// Four-eyes (R-SES-9): the connection waits until a member of one of these user groups
    /// (never the user) permits it; empty: no four-eyes.
    #[cfg_attr(feature = "serde", serde(default))]
    pub four_eyes_groups: Vec<String>,
    /// How long a connection waits for a confirmation or a permit, 10 to 3,600 seconds.
    #[cfg_attr(feature = "serde", serde(default = "wait_seconds"))]
    pub wait_seconds: u32,
    /// The AA plugin consulted after sign-in (R-SES-4): the name of one configured on the
    /// server (`[aa_plugins.NAME]`); absent: none.
    #[cfg_attr(feature = "serde", serde(default))]
    pub aa_plugin: Option<String>,
    /// Usermapping: the accounts the AA plugin may map a connection to (names, `*` wildcards);
    /// empty: the plugin may not map.
    #[cfg_attr(feature = "serde", serde(default))]
    pub usermapping: Vec<String>,
    /// Record the terminal streams (input, output); off: the recording keeps only the
    /// session's metadata and events (channels, commands, file names, content hits).
    #[cfg_attr(feature = "serde", serde(default = "yes"))]
    pub recording: bool,
}

#[cfg(feature = "serde")]
fn wait_seconds() -> u32 {
    300
}

/// The fields of [`ConnectionPolicySpec`] as written.
pub const SPEC_FIELDS: &[&str] = &[
    "protocol",
    "enabled",
    "clients",
    "listen_ports",
    "targets",
    "translate",
    "source_address",
    "algorithms",
    "channels",
    "pre_channel_check",
    "time_zone",
    "content",
    "gateway_authentication",
    "four_eyes_groups",
    "wait_seconds",
    "aa_plugin",
    "usermapping",
    "recording",
];

#[cfg(feature = "serde")]
fn yes() -> bool {
    true
}

#[cfg(feature = "serde")]
fn utc() -> String {
    "UTC".into()
}

/// One target a policy covers: an asset (name, `*` wildcards allowed) or a network, each
/// optionally on one port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct TargetSpec {
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub asset: Option<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub network: Option<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct TranslateSpec {
    /// Host name or address.
    pub address: String,
    /// Absent: the asset's port.
    #[cfg_attr(feature = "serde", serde(default))]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct AlgorithmsSpec {
    #[cfg_attr(feature = "serde", serde(default))]
    pub kex: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub ciphers: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub macs: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub host_keys: Vec<String>,
}

impl AlgorithmsSpec {
    pub fn is_default(&self) -> bool {
        self.kex.is_empty() && self.ciphers.is_empty() && self.macs.is_empty() && self.host_keys.is_empty()
    }
}

/// One kind of channel, allowed to a user list within a time policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct ChannelRuleSpec {
    /// `shell`, `exec`, `sftp`, `scp`, `local_forward`, `remote_forward`, `x11` or `agent`.
    pub kind: String,
    /// Portcullis group ids whose members may open it; empty: everyone the policy admits.
    #[cfg_attr(feature = "serde", serde(default))]
    pub groups: Vec<String>,
    /// When it may open (in the policy's time zone); empty: any time.
    #[cfg_attr(feature = "serde", serde(default))]
    pub windows: Vec<WindowSpec>,
    /// `exec` only: regular expressions, one of which the whole command must match; empty:
    /// any command.
    #[cfg_attr(feature = "serde", serde(default))]
    pub commands: Vec<String>,
    /// `local_forward` only: `HOST:PORT` destinations (`*` wildcards in the host, `*` as
    /// port); empty: any destination.
    #[cfg_attr(feature = "serde", serde(default))]
    pub destinations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct WindowSpec {
    /// e.g. `["mon-fri"]`.
    pub days: Vec<String>,
    /// `HH:MM`, inclusive.
    pub start: String,
    /// `HH:MM`, exclusive; `24:00` for the end of the day.
    pub end: String,
}

macro_rules! kinds {
    ($($variant:ident => $text:literal),+ $(,)?) => {
        /// A kind of channel a client may ask for.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ChannelKind { $($variant),+ }
        impl ChannelKind {
            pub const ALL: &'static [ChannelKind] = &[$(ChannelKind::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(ChannelKind::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

kinds! {
    Shell => "shell",
    Exec => "exec",
    Sftp => "sftp",
    Scp => "scp",
    LocalForward => "local_forward",
    RemoteForward => "remote_forward",
    X11 => "x11",
    Agent => "agent",
    Clipboard => "clipboard",
    Drive => "drive",
    Audio => "audio",
    Dynamic => "dynamic",
}

impl ChannelKind {
    pub fn names() -> String {
        ChannelKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    }
}
