//! Credentials (R-VAULT-4): checks and changes vaulted credentials on their
//! targets through a platform connector, and runs the queue of automatic changes.
//!
//! A change never loses the credential that works: the new secret is sealed and stored as a
//! `staged` version first, then changed on the target and verified by logging in with it, and
//! only then made current. If anything fails, the old version stays current, the staged one is
//! marked `failed` with the reason, and the failure is audited and notified. If the server dies
//! between the change on the target and the commit, the next attempt on that credential tests
//! the staged version first and makes it current if it logs in.

use std::time::Duration;

use portcullis_connect::{ConnectError, Connector, Credential, Login, NewKey, Seen, Target};
use portcullis_core::inventory::Protocol;
use portcullis_core::policy::AccessType;
use portcullis_core::request::RequestState;
use portcullis_core::role::Role;
use portcullis_store::{Account, Actor, Asset, CredentialChange, NewEvent, Outcome, SealedRow, SecretKey};
use portcullis_vault::{
    generate_password, generate_ssh_key, open, seal, KeyAlgorithm, PasswordProfile, Plaintext, Sealed, SecretContext,
};
use serde_json::json;

use crate::auth::Caller;
use crate::error::{AppError, AppResult, ErrorKind};
use crate::state::App;

/// How long a connector may take for each step.
const TARGET_TIMEOUT: Duration = Duration::from_secs(15);
/// A `running` change older than this was interrupted by a crash.
const STALE_MICROS: i64 = 10 * 60 * 1_000_000;

pub fn row(s: Sealed) -> SealedRow {
    SealedRow {
        ciphertext: s.ciphertext,
        nonce: s.nonce.to_vec(),
        wrapped_dek: s.wrapped_dek,
        dek_nonce: s.dek_nonce.to_vec(),
        kek_id: s.kek_id,
    }
}

pub fn unrow(r: SealedRow) -> AppResult<Sealed> {
    let n = |v: Vec<u8>| <[u8; 24]>::try_from(v).map_err(|_| AppError::internal());
    Ok(Sealed {
        ciphertext: r.ciphertext,
        nonce: n(r.nonce)?,
        wrapped_dek: r.wrapped_dek,
        dek_nonce: n(r.dek_nonce)?,
        kek_id: r.kek_id,
    })
}

/// Opens a stored version.
pub fn open_row(state: &App, account_id: &str, kind: &str, version: i64, sealed: SealedRow) -> AppResult<Plaintext> {
    open(&state.vault, &SecretContext { account_id: account_id.into(), kind: kind.into(), version }, &unrow(sealed)?)
        .map_err(|e| {
            tracing::error!(account = %account_id, version, error = %e, "credential cannot be opened");
            AppError::internal()
        })
}

/// The current secret of `kind`, opened.
pub async fn current(state: &App, account_id: &str, kind: &str) -> AppResult<Option<(i64, Plaintext)>> {
    match state.store.current_secret(account_id, kind).await? {
        Some((v, sealed)) => Ok(Some((v, open_row(state, account_id, kind, v, sealed)?))),
        None => Ok(None),
    }
}

fn target_error(e: &ConnectError) -> AppError {
    let kind = match e {
        ConnectError::Unsupported(_) => ErrorKind::Invalid,
        ConnectError::BadCredential(_) => ErrorKind::Conflict,
        _ => ErrorKind::Upstream,
    };
    AppError::new(kind, e.code(), e.to_string())
}

/// A platform's connector, or a directory's.
enum Conn {
    Platform(&'static dyn Connector),
    Directory(crate::directory_accounts::DirectoryAccounts),
}

impl std::ops::Deref for Conn {
    type Target = dyn Connector;
    fn deref(&self) -> &(dyn Connector + 'static) {
        match self {
            Conn::Platform(c) => *c,
            Conn::Directory(d) => d,
        }
    }
}

/// An account's asset, its connector and where to reach it.
struct Plan {
    account: Account,
    asset: Asset,
    connector: Conn,
    target: Target,
}

/// Why no credential of `asset` may be sent to it now (its identity was changed and not
/// confirmed by another administrator), or `None`.
pub async fn unconfirmed_identity(state: &App, asset: &Asset) -> Option<String> {
    if !asset.identity_unconfirmed() {
        return None;
    }
    let mut names = Vec::new();
    for id in &asset.identity_changed_by {
        names.push(match state.store.user(id).await {
            Ok(u) => u.username,
            Err(_) => "a deleted user".to_owned(),
        });
    }
    let when = asset.identity_changed_at.map(|t| format!(" on {}", crate::session_access::when(t))).unwrap_or_default();
    Some(format!(
        "the address, ports or host key of {asset} were changed by {who}{when} and not confirmed yet; Portcullis \
         sends no credential to {asset} until another Asset Administrator confirms them \
         (portcullis asset confirm-identity {asset}, or the asset's page in the web UI)",
        asset = asset.name,
        who = names.join(" and "),
    ))
}

async fn plan(state: &App, account_id: &str) -> AppResult<Plan> {
    let account = state.store.account(account_id).await?;
    let asset = state.store.asset(&account.asset_id).await?;
    if asset.platform == portcullis_core::inventory::Platform::Directory {
        // Where the credential goes is the configuration file's `[directories.NAME]`, not the
        // asset's address, so no administrator can point it elsewhere through the API.
        let conn = state.directories.iter().find(|d| d.directory.name() == asset.name).ok_or_else(|| {
            AppError::conflict(
                "directory_not_configured",
                format!(
                    "{} is a directory asset, but the server has no [directories.{}] connection; directory accounts \
                     are changed through the directory of the same name",
                    asset.name, asset.name
                ),
            )
        })?;
        let connector = Conn::Directory(crate::directory_accounts::DirectoryAccounts(conn.directory.clone()));
        let target =
            Target { host: conn.directory.settings().url.clone(), port: 0, host_key: None, timeout: TARGET_TIMEOUT };
        return Ok(Plan { account, asset, connector, target });
    }
    if let Some(why) = unconfirmed_identity(state, &asset).await {
        return Err(AppError::conflict("asset_identity_unconfirmed", why));
    }
    let connector = portcullis_connect::for_platform(asset.platform.as_str()).map(Conn::Platform).ok_or_else(|| {
        AppError::new(
            ErrorKind::Invalid,
            "unsupported_platform",
            format!("no connector changes credentials on {} assets yet", asset.platform),
        )
    })?;
    let port =
        asset.protocols.iter().find(|p| p.protocol == Protocol::Ssh).map(|p| p.port).ok_or_else(|| {
            AppError::conflict("no_ssh", format!("asset {} has no SSH protocol configured", asset.name))
        })?;
    let target =
        Target { host: asset.address.clone(), port, host_key: asset.host_key.clone(), timeout: TARGET_TIMEOUT };
    Ok(Plan { account, asset, connector, target })
}

/// Records what the connector saw: pins the host key on first use.
async fn saw(state: &App, plan: &Plan, seen: &Seen) -> AppResult<()> {
    if plan.asset.host_key.is_none() && !seen.host_key.is_empty() {
        state.store.pin_host_key(state.now(), &plan.asset.id, &seen.host_key).await?;
    }
    Ok(())
}

/// Audits a host key mismatch as an alert of its own.
async fn alert(state: &App, plan: &Plan, e: &ConnectError) -> AppResult<()> {
    if let ConnectError::HostKeyMismatch { expected, presented } = e {
        state
            .store
            .record(
                &Actor::system(),
                state.now(),
                NewEvent::success("asset.host_key_mismatch", "asset", &plan.asset.id)
                    .with_outcome(Outcome::Failure)
                    .with_details(json!({ "expected": expected, "presented": presented, "alert": true })),
            )
            .await?;
    }
    Ok(())
}

/// Which kind to act on when the caller did not say: the password if there is one.
pub async fn default_kind(state: &App, account_id: &str, kind: Option<&str>) -> AppResult<&'static str> {
    match kind {
        Some("password") => Ok("password"),
        Some("ssh_key") => Ok("ssh_key"),
        Some(_) => Err(AppError::invalid("kind", "must be password or ssh_key")),
        None => {
            Ok(if state.store.current_secret(account_id, "password").await?.is_some() { "password" } else { "ssh_key" })
        }
    }
}

fn login<'a>(username: &'a str, kind: &str, secret: &'a Plaintext) -> Login<'a> {
    let credential = if kind == "password" { Credential::Password(secret) } else { Credential::PrivateKey(secret) };
    Login { username, credential }
}

/// The result of a check.
pub struct CheckResult {
    pub version: i64,
    pub error: Option<ConnectError>,
}

/// Logs in to the target with the current credential of `kind`; audited either way.
pub async fn check(state: &App, actor: &Actor, account_id: &str, kind: &'static str) -> AppResult<CheckResult> {
    let plan = plan(state, account_id).await?;
    let (version, secret) = current(state, account_id, kind).await?.ok_or_else(|| no_credential(kind))?;
    let result = plan.connector.check(&plan.target, login(&plan.account.name, kind, &secret)).await;
    let error = match result {
        Ok(seen) => {
            saw(state, &plan, &seen).await?;
            None
        }
        Err(e) => {
            alert(state, &plan, &e).await?;
            Some(e)
        }
    };
    let mut event = NewEvent::success("credential.check", "account", account_id)
        .with_details(json!({ "kind": kind, "version": version, "error": error.as_ref().map(|e| e.to_string()), "code": error.as_ref().map(|e| e.code()) }));
    if error.is_some() {
        event = event.with_outcome(Outcome::Failure);
    }
    state.store.record(actor, state.now(), event).await?;
    Ok(CheckResult { version, error })
}

fn no_credential(kind: &str) -> AppError {
    AppError::conflict("no_credential", format!("the vault holds no {} for this account", kind.replace('_', " ")))
}

/// The password profile for an asset: the asset's own, else its platform's, else the default.
pub async fn profile_for(state: &App, asset: &Asset) -> AppResult<PasswordProfile> {
    for scope in [format!("asset:{}", asset.id), format!("platform:{}", asset.platform)] {
        if let Some(text) = state.store.password_profile(&scope).await? {
            return profile_from_text(&text).ok_or_else(AppError::internal);
        }
    }
    Ok(PasswordProfile::default())
}

/// Reads a stored password profile (JSON: length, lowercase, uppercase, digits, symbols,
/// excluded), as the profiles use case writes it.
pub fn profile_from_text(text: &str) -> Option<PasswordProfile> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let flag = |k: &str| v.get(k).and_then(serde_json::Value::as_bool);
    Some(PasswordProfile {
        length: usize::try_from(v.get("length")?.as_u64()?).ok()?,
        lowercase: flag("lowercase")?,
        uppercase: flag("uppercase")?,
        digits: flag("digits")?,
        symbols: flag("symbols")?,
        excluded: v.get("excluded").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned(),
    })
}

/// The public half of the account's active SSH key, if it has one.
async fn active_public_key(state: &App, account_id: &str) -> AppResult<Option<String>> {
    Ok(state
        .store
        .secret_versions(account_id)
        .await?
        .into_iter()
        .find(|v| v.kind == "ssh_key" && v.status == "active")
        .and_then(|v| v.public_key))
}

/// Changes the credential of `kind` on the target and makes the new one current. Returns the
/// new version.
pub async fn change(
    state: &App,
    actor: &Actor,
    account_id: &str,
    kind: &'static str,
    reason: &str,
) -> AppResult<portcullis_store::SecretVersion> {
    let plan = plan(state, account_id).await?;
    // An interrupted change first: if its staged credential logs in, it is the real one.
    if let Some(recovered) = settle_staged(state, actor, &plan, kind).await? {
        return Ok(recovered);
    }
    // Log in through the asset's service account if it has one; else as the account itself,
    // with its password when changing the password, with its key (or else its password) when
    // replacing the key.
    let service = match plan.asset.service_account_id.as_deref() {
        Some(id) if id != account_id => Some(state.store.account(id).await.map_err(|_| {
            AppError::conflict("service_account_missing", "the asset's service account no longer exists; set another")
        })?),
        _ => None,
    };
    let via_account = service.as_ref().map_or(account_id, |s| s.id.as_str());
    let via_name = service.as_ref().map_or(plan.account.name.as_str(), |s| s.name.as_str());
    let (via_kind, via_secret) = if kind == "password" && service.is_none() {
        ("password", current(state, account_id, kind).await?.ok_or_else(|| no_credential(kind))?.1)
    } else {
        match current(state, via_account, "ssh_key").await? {
            Some((_, key)) => ("ssh_key", key),
            None => ("password", current(state, via_account, "password").await?.ok_or_else(|| no_credential(kind))?.1),
        }
    };
    let via = login(via_name, via_kind, &via_secret);

    let (new_secret, public) = if kind == "password" {
        let profile = profile_for(state, &plan.asset).await?;
        let p = generate_password(&profile).map_err(|e| AppError::invalid("profile", e.to_string()))?;
        (Plaintext::new(p.as_bytes().to_vec()), None)
    } else {
        let old_public = active_public_key(state, account_id).await?;
        let algorithm = if old_public.as_deref().is_some_and(|k| k.starts_with("ssh-rsa")) {
            KeyAlgorithm::Rsa(3072)
        } else {
            KeyAlgorithm::Ed25519
        };
        let comment = format!("{}@portcullis", plan.account.name);
        let pair = tokio::task::spawn_blocking(move || generate_ssh_key(algorithm, &comment))
            .await
            .map_err(|_| AppError::internal())?
            .map_err(|_| AppError::internal())?;
        (pair.private_openssh, Some(pair.public_openssh))
    };
    let ring = state.vault.clone();
    let sealed_for = account_id.to_owned();
    let material = zeroize::Zeroizing::new(new_secret.expose().to_vec());
    let staged = state
        .store
        .stage_secret_version(actor, state.now(), account_id, kind, reason, public.as_deref(), move |version| {
            row(seal(&ring, &SecretContext { account_id: sealed_for, kind: kind.into(), version }, &material))
        })
        .await?;
    let key = SecretKey { account_id: account_id.into(), kind: kind.into(), version: staged.version };

    let result = if kind == "password" {
        plan.connector.change_password(&plan.target, &plan.account.name, via, &new_secret).await
    } else {
        let old_public = active_public_key(state, account_id).await?;
        let new_key = NewKey { private_openssh: &new_secret, public_openssh: public.as_deref().unwrap_or_default() };
        plan.connector.replace_key(&plan.target, &plan.account.name, via, old_public.as_deref(), new_key).await
    };
    match result {
        Ok(seen) => {
            saw(state, &plan, &seen).await?;
            let details = json!({ "kind": kind, "version": staged.version, "reason": reason });
            state.store.activate_secret_version(actor, state.now(), &key, details).await?;
            Ok(portcullis_store::SecretVersion { status: "active".into(), ..staged })
        }
        Err(e) => {
            alert(state, &plan, &e).await?;
            let details = json!({ "kind": kind, "version": staged.version, "reason": reason, "code": e.code(), "error": e.to_string() });
            state.store.fail_secret_version(actor, state.now(), &key, &e.to_string(), details).await?;
            Err(target_error(&e))
        }
    }
}

/// Change now, asked by a person: as [`change`], and when the target could not be reached or
/// refused, Asset Administrators are notified.
pub async fn change_now(
    state: &App,
    actor: &Actor,
    account_id: &str,
    kind: &'static str,
) -> AppResult<portcullis_store::SecretVersion> {
    state.store.account(account_id).await?;
    match change(state, actor, account_id, kind, "rotation").await {
        Ok(v) => Ok(v),
        Err(e) => {
            if e.kind == ErrorKind::Upstream {
                let admins = admins(state).await?;
                state.store.notify(state.now(), "credential_change_failed", account_id, &admins).await?;
            }
            Err(e)
        }
    }
}

/// A staged version left by an interrupted change: made current if it logs in, else failed.
async fn settle_staged(
    state: &App,
    actor: &Actor,
    plan: &Plan,
    kind: &'static str,
) -> AppResult<Option<portcullis_store::SecretVersion>> {
    let Some((version, sealed)) = state.store.staged_secret(&plan.account.id, kind).await? else { return Ok(None) };
    let secret = open_row(state, &plan.account.id, kind, version, sealed)?;
    let key = SecretKey { account_id: plan.account.id.clone(), kind: kind.into(), version };
    match plan.connector.check(&plan.target, login(&plan.account.name, kind, &secret)).await {
        Ok(_) => {
            let details = json!({ "kind": kind, "version": version, "recovered": true });
            state.store.activate_secret_version(actor, state.now(), &key, details).await?;
            let versions = state.store.secret_versions(&plan.account.id).await?;
            let newest_active =
                versions.iter().filter(|v| v.kind == kind && v.status == "active").map(|v| v.version).max();
            if newest_active > Some(version) {
                // Someone stored a version by hand meanwhile, but the host has this one: it
                // must be current, so it is stored again as the newest version.
                let public =
                    versions.iter().find(|v| v.kind == kind && v.version == version).and_then(|v| v.public_key.clone());
                let ring = state.vault.clone();
                let account = plan.account.id.clone();
                let material = zeroize::Zeroizing::new(secret.expose().to_vec());
                let v = state
                    .store
                    .add_secret_version(
                        actor,
                        state.now(),
                        &plan.account.id,
                        kind,
                        "recovered",
                        public.as_deref(),
                        move |v| {
                            row(seal(
                                &ring,
                                &SecretContext { account_id: account, kind: kind.into(), version: v },
                                &material,
                            ))
                        },
                    )
                    .await?;
                return Ok(Some(v));
            }
            let v = versions.into_iter().find(|v| v.kind == kind && v.version == version);
            v.map(Some).ok_or_else(AppError::internal)
        }
        Err(ConnectError::AuthenticationFailed(_)) => {
            let details = json!({ "kind": kind, "version": version, "recovered": false });
            state
                .store
                .fail_secret_version(actor, state.now(), &key, "an interrupted change that never took effect", details)
                .await?;
            Ok(None)
        }
        // The target cannot say which credential is right now: change nothing.
        Err(e) => Err(target_error(&e)),
    }
}

/// Who hears about failed changes: Asset Administrators.
pub async fn admins(state: &App) -> AppResult<Vec<String>> {
    Ok(state.store.users_with_any_role(&[Role::AssetAdmin]).await?)
}

/// Runs the automatic changes that are due. Called by the server's scheduler.
pub async fn run_due_changes(state: &App) -> AppResult<usize> {
    let now = state.now();
    state.store.recover_changes(now - STALE_MICROS).await?;
    let due = state.store.due_changes(now, 20).await?;
    let mut done = 0;
    for item in due {
        if !state.store.claim_change(&item.id, state.now()).await? {
            continue;
        }
        let item = CredentialChange { attempts: item.attempts + 1, ..item };
        let kind: &'static str = if item.kind == "ssh_key" { "ssh_key" } else { "password" };
        let result = change(state, &Actor::system(), &item.account_id, kind, &item.reason).await.map(|v| v.version);
        let now = state.now();
        match result {
            Ok(version) => {
                state.store.complete_change(&item.id, now, version).await?;
                done += 1;
            }
            Err(e) => {
                tracing::warn!(account = %item.account_id, attempt = item.attempts, code = e.code, "automatic credential change failed");
                let permanent = matches!(e.code, "unsupported_platform" | "no_credential" | "no_ssh" | "not_found");
                let settings = state.changes;
                let retry = (!permanent && item.attempts < settings.attempts)
                    .then(|| now + settings.retry_seconds * 1_000_000 * (1 << (item.attempts - 1).clamp(0, 6)));
                let recipients = if retry.is_none() { admins(state).await? } else { vec![] };
                state
                    .store
                    .change_attempt_failed(&item, now, &format!("{}: {}", e.code, e.message), retry, &recipients)
                    .await?;
            }
        }
    }
    Ok(done)
}

/// A checked-out credential: the secret, opened, and what it belongs to.
pub struct Checkout {
    pub request_id: String,
    pub account_id: String,
    /// `password` or `ssh_key`.
    pub kind: &'static str,
    pub version: i64,
    pub secret: Plaintext,
}

/// Show or Copy the credential of an available password or SSH key request (the requester
/// only). Audited before the secret is returned: no audit row, no secret; a refused attempt
/// by anyone else is audited as denied.
pub async fn checkout(state: &App, caller: &Caller, request_id: &str, action: &str) -> AppResult<Checkout> {
    if !matches!(action, "show" | "copy") {
        return Err(AppError::invalid("action", "must be show or copy"));
    }
    let (r, rel) = crate::requests::relation_to(state, caller, request_id).await?;
    if !rel.requester {
        state
            .store
            .record(
                &caller.actor(),
                state.now(),
                NewEvent::success("request.checkout", "request", &r.id).with_outcome(Outcome::Denied),
            )
            .await?;
        return Err(AppError::forbidden("only the requester may check out this request's credential"));
    }
    // The window at this moment, not as the scheduler last saw it.
    let now = state.now();
    if !(r.start_at <= now && now < r.end_at) {
        return Err(AppError::conflict(
            "outside_window",
            "the request's access period is not now (it has not started or has ended); nothing was checked out",
        ));
    }
    let kind = match r.access_type {
        AccessType::Password => "password",
        AccessType::SshKey => "ssh_key",
        other => {
            return Err(AppError::conflict(
                "wrong_access_type",
                format!(
                    "this is a {} session request; credentials are checked out only by password and SSH key requests",
                    other.as_str()
                ),
            ))
        }
    };
    if r.state != RequestState::Available {
        return Err(crate::requests::not_available(r.state, "a credential can be checked out"));
    }
    let (version, sealed) = state.store.current_secret(&r.account_id, kind).await?.ok_or_else(|| {
        AppError::conflict(
            "no_credential",
            format!("the vault holds no {} for this account; ask an Asset Administrator", kind.replace('_', " ")),
        )
    })?;
    let secret = open_row(state, &r.account_id, kind, version, sealed)?;
    state
        .store
        .record(
            &caller.actor(),
            state.now(),
            NewEvent::success("request.checkout", "request", &r.id).with_details(
                json!({ "action": action, "account_id": r.account_id, "kind": kind, "version": version }),
            ),
        )
        .await?;
    state.metrics.checkouts.inc();
    Ok(Checkout { request_id: r.id, account_id: r.account_id, kind, version, secret })
}
