//! One module per command group.

mod audit;
mod auth;
mod credentials;
mod directories;
mod favorites;
mod gateway;
mod groups;
mod inventory;
mod me;
mod nodes;
mod policies;
mod requests;
mod sessions;
mod sso;
mod tokens;
mod users;

use clap::Subcommand;
use zeroize::Zeroizing;

use crate::client::{load_saved, Client};
use crate::{CliError, GlobalArgs};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the first administrator with the one-time secret `serve` printed.
    Bootstrap(auth::BootstrapArgs),
    /// Sign in and save the session for later commands (mode 0600).
    Login(auth::LoginArgs),
    /// Sign out and forget the saved session.
    Logout,
    /// Choose your password with the set-password link you were mailed (the new password
    /// comes from PORTCULLIS_NEW_PASSWORD or a prompt).
    SetPassword(auth::SetPasswordArgs),
    /// Show who you are signed in as.
    Whoami,
    /// Your profile: show it, or set your display name, e-mail or time zone.
    #[command(subcommand)]
    Me(me::MeCmd),
    /// Change your password.
    Passwd,
    /// Manage users (User Administrators).
    #[command(subcommand)]
    User(users::UserCmd),
    /// Manage user groups.
    #[command(subcommand)]
    Group(groups::GroupCmd),
    /// Manage assets (Asset Administrators).
    #[command(subcommand)]
    Asset(inventory::AssetCmd),
    /// Manage accounts on assets.
    #[command(subcommand)]
    Account(inventory::AccountCmd),
    /// Manage asset groups.
    #[command(subcommand)]
    AssetGroup(groups::GroupCmd),
    /// Manage account groups.
    #[command(subcommand)]
    AccountGroup(groups::GroupCmd),
    /// Your API tokens for scripts.
    #[command(subcommand)]
    Token(tokens::TokenCmd),
    /// One-time codes (TOTP) for your sign-in.
    #[command(subcommand)]
    Totp(tokens::TotpCmd),
    /// Entitlements: who may request (Security Policy Administrators).
    #[command(subcommand)]
    Entitlement(policies::EntitlementCmd),
    /// Access request policies, and which one governs a request.
    #[command(subcommand)]
    Policy(policies::PolicyCmd),
    /// Connection policies: which proxied connections are admitted, where they go, which
    /// channels may open; and which policy a connection would get.
    #[command(subcommand, name = "connection-policy")]
    ConnectionPolicy(gateway::ConnectionPolicyCmd),
    /// Access requests: create, list, approve, revoke, check in, review…
    #[command(subcommand)]
    Request(requests::RequestCmd),
    /// Requests waiting for your approval.
    Approvals,
    /// Saved requests you can submit again.
    #[command(subcommand)]
    Favorite(favorites::FavoriteCmd),
    /// Reason codes for requests.
    #[command(subcommand)]
    ReasonCode(requests::ReasonCodeCmd),
    /// Request services (session requests on or off).
    #[command(subcommand)]
    Service(requests::ServiceCmd),
    /// Vaulted credentials of accounts (Asset Administrators).
    #[command(subcommand)]
    Credential(credentials::CredentialCmd),
    /// The SSH proxy's address and host key fingerprints (to check on first connect).
    SshProxy,
    /// Your SSH public keys for the SSH proxy.
    #[command(subcommand)]
    SshKey(sessions::SshKeyCmd),
    /// Proxied sessions: list, show, terminate.
    #[command(subcommand)]
    Session(sessions::SessionCmd),
    /// Session recordings: verify, export (asciicast), play.
    #[command(subcommand)]
    Recording(sessions::RecordingCmd),
    /// Read and verify the audit log (Auditors).
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// LDAP / Active Directory connections: their state, and a synchronisation now.
    #[command(subcommand)]
    Directory(directories::DirectoryCmd),
    /// The Portcullis nodes sharing the server's database: heartbeats and live sessions.
    #[command(subcommand)]
    Node(nodes::NodeCmd),
    /// Notifications: a test through every channel, and those that could not be delivered.
    #[command(subcommand, alias = "notify")]
    Notification(audit::NotificationCmd),
}

pub(crate) async fn dispatch(command: Command, g: &GlobalArgs) -> Result<(), CliError> {
    match command {
        Command::Bootstrap(a) => auth::bootstrap(a, g).await,
        Command::Login(a) => auth::login(a, g).await,
        Command::Logout => auth::logout(g).await,
        Command::SetPassword(a) => auth::set_password(a, g).await,
        Command::Whoami => auth::whoami(g).await,
        Command::Me(c) => me::run(c, g).await,
        Command::Passwd => auth::passwd(g).await,
        Command::User(c) => users::run(c, g).await,
        Command::Group(c) => groups::run(c, groups::USER_GROUPS, g).await,
        Command::AssetGroup(c) => groups::run(c, groups::ASSET_GROUPS, g).await,
        Command::AccountGroup(c) => groups::run(c, groups::ACCOUNT_GROUPS, g).await,
        Command::Asset(c) => inventory::assets(c, g).await,
        Command::Account(c) => inventory::accounts(c, g).await,
        Command::Token(c) => tokens::tokens(c, g).await,
        Command::Totp(c) => tokens::totp(c, g).await,
        Command::Entitlement(c) => policies::entitlements(c, g).await,
        Command::Policy(c) => policies::policies(c, g).await,
        Command::ConnectionPolicy(c) => gateway::run(c, g).await,
        Command::Request(c) => requests::requests(c, g).await,
        Command::Approvals => requests::approvals(g).await,
        Command::Favorite(c) => favorites::run(c, g).await,
        Command::ReasonCode(c) => requests::reason_codes(c, g).await,
        Command::Service(c) => requests::services(c, g).await,
        Command::Credential(c) => credentials::credentials(c, g).await,
        Command::Session(c) => sessions::sessions(c, g).await,
        Command::SshKey(c) => sessions::ssh_keys(c, g).await,
        Command::SshProxy => sessions::ssh_proxy(g).await,
        Command::Recording(c) => sessions::recordings(c, g).await,
        Command::Audit(c) => audit::run(c, g).await,
        Command::Directory(c) => directories::run(c, g).await,
        Command::Node(c) => nodes::run(c, g).await,
        Command::Notification(c) => audit::notifications(c, g).await,
    }
}

/// A client for a signed-in command: the token from `--token`, or the saved sign-in.
pub(crate) fn signed_in(g: &GlobalArgs) -> Result<Client, CliError> {
    let saved = load_saved()?;
    let token = g.token.clone().or_else(|| saved.as_ref().map(|s| s.token.clone()));
    let Some(token) = token else {
        return Err(CliError::Usage("not signed in: run `portcullis login --server URL --username NAME` first".into()));
    };
    let server = g
        .server
        .clone()
        .or_else(|| saved.as_ref().map(|s| s.server.clone()))
        .ok_or_else(|| CliError::Usage("no server: pass --server URL".into()))?;
    let fingerprint = g.fingerprint.clone().or_else(|| saved.as_ref().and_then(|s| s.fingerprint.clone()));
    let insecure = g.insecure || saved.as_ref().is_some_and(|s| s.insecure);
    Client::new(&server, Some(token), fingerprint.as_deref(), insecure)
}

/// Reads a secret: from the environment variable if set, else from standard input when asked,
/// else by prompting on the terminal without echo.
pub(crate) fn read_secret(prompt: &str, env_var: &str, from_stdin: bool) -> Result<Zeroizing<String>, CliError> {
    if let Ok(v) = std::env::var(env_var) {
        return Ok(Zeroizing::new(v));
    }
    if from_stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut line).map_err(|e| CliError::Io("stdin".into(), e))?;
        return Ok(Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned()));
    }
    rpassword::prompt_password(prompt).map(Zeroizing::new).map_err(|e| {
        CliError::Usage(format!("cannot read {env_var} from the terminal ({e}); set {env_var} or use --password-stdin"))
    })
}
