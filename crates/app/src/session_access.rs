//! Who may open a session now, for every protocol proxy (SSH today; Telnet and RDP next):
//! the available request that authorizes it, or a message that says why not and what to do;
//! the user behind a registered public key or a one-time launch token.

use portcullis_core::policy::{AccessType, PolicySettings};
use portcullis_core::request::{EndCause, RequestState};
use portcullis_store::{AccessRequest, Account, Actor, Asset, ProxyLogin, User};

use crate::state::App;

/// What an authorized connection may use.
#[derive(Clone)]
pub struct SessionAccess {
    pub request: AccessRequest,
    pub account: Account,
    pub asset: Asset,
    /// The access request policy that governs the request, and its settings.
    pub policy_name: String,
    pub settings: PolicySettings,
    /// What the connection policy's AA plugin said (answers, mapping, metadata), for the
    /// session's recording metadata.
    pub aa: Option<serde_json::Value>,
}

pub(crate) fn when(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

fn protocol_name(access: AccessType) -> &'static str {
    match access {
        AccessType::Ssh => "SSH",
        AccessType::Telnet => "Telnet",
        AccessType::Rdp => "RDP",
        AccessType::Password => "password",
        AccessType::SshKey => "SSH key",
    }
}

/// Pure: the request that authorizes a session now, from the user's requests of this access
/// type for this account (newest first), or the reason there is none.
pub fn decide<'a>(
    access: AccessType,
    requests: &'a [AccessRequest],
    now: i64,
    target: &str,
) -> Result<&'a AccessRequest, String> {
    let kind = protocol_name(access);
    if let Some(r) = requests.iter().find(|r| r.state == RequestState::Available && r.start_at <= now && now < r.end_at)
    {
        return Ok(r);
    }
    if requests.iter().any(|r| r.state == RequestState::PendingApproval) {
        return Err(format!(
            "your {kind} access request for {target} is waiting for approval; try again once it is approved"
        ));
    }
    if let Some(r) = requests.iter().find(|r| r.state == RequestState::Approved && r.start_at > now) {
        return Err(format!("your {kind} access to {target} starts at {}; connect then", when(r.start_at)));
    }
    if let Some(r) = requests.first() {
        // A used request waiting for review (or reviewed) ended as its cause says.
        let what = match (r.state, r.ended_by) {
            (RequestState::Expired, _) | (_, Some(EndCause::Expiry)) => "expired",
            (RequestState::Revoked, _) | (_, Some(EndCause::Revocation)) => "was revoked",
            (RequestState::Denied, _) => "was denied",
            (RequestState::Canceled, _) => "was canceled",
            (RequestState::Complete | RequestState::PendingReview | RequestState::Reviewed, _) => "was checked in",
            _ => "is not available",
        };
        return Err(format!("your last {kind} access request for {target} {what}; request access again"));
    }
    Err(format!(
        "you have no {kind} access request for {target}; request one first (portcullis request create, or the web UI)"
    ))
}

const UNAVAILABLE: &str = "Portcullis cannot check your access right now; try again later";

/// May `user` open a session of type `access` to ACCOUNT@ASSET now? `named`: the asset and
/// account already looked up by name, if the caller has them.
pub async fn authorize(
    state: &App,
    user: &User,
    access: AccessType,
    account_name: &str,
    asset_name: &str,
    named: Option<(Asset, Account)>,
) -> Result<SessionAccess, String> {
    let target = format!("{account_name}@{asset_name}");
    let store = &state.store;
    let internal = |_| UNAVAILABLE.to_owned();
    if !store.service_enabled(portcullis_store::SESSION_REQUESTS_SETTING).await.map_err(internal)? {
        return Err("session access is turned off by the administrators".into());
    }
    let named = match named {
        Some(n) => Some(n),
        None => store.account_by_names(asset_name, account_name).await.map_err(internal)?,
    };
    let Some((asset, account)) = named else {
        return Err(format!("there is no account {target} in Portcullis; check the account and asset names"));
    };
    let requests = store.requests_for_connect(&user.id, &account.id, access).await.map_err(internal)?;
    let request = decide(access, &requests, state.now(), &target)?.clone();
    access_for(state, request, account, asset).await
}

/// The access an authorizing request gives (its policy's settings).
pub async fn access_for(
    state: &App,
    request: AccessRequest,
    account: Account,
    asset: Asset,
) -> Result<SessionAccess, String> {
    if let Some(why) = crate::credentials::unconfirmed_identity(state, &asset).await {
        return Err(why);
    }
    let policy = state.store.policy(&request.policy_id).await.map_err(|_| UNAVAILABLE.to_owned())?;
    Ok(SessionAccess { request, account, asset, policy_name: policy.name, settings: policy.settings, aa: None })
}

/// The account whose credential logs in to the target, by the policy's account mode (R-REQ-2):
/// the requested account itself (vaulted, or user supplied), the requester's linked directory
/// account (Linked Account), or the policy's directory account (Directory Account). The target
/// sees that account's name and its vaulted password.
pub async fn login_account(state: &App, access: &SessionAccess) -> Result<Account, String> {
    use portcullis_core::policy::AccountMode;
    let id = match access.settings.account_mode {
        AccountMode::Vaulted | AccountMode::UserSupplied => return Ok(access.account.clone()),
        AccountMode::LinkedAccount => {
            let linked =
                state.store.linked_accounts(&access.request.requester_id).await.map_err(|_| UNAVAILABLE.to_owned())?;
            linked.into_iter().next().ok_or_else(|| {
                format!(
                    "the policy {} logs in with your linked directory account, and you have none; ask a User \
                     Administrator to link yours (portcullis user link-account USER ACCOUNT@DIRECTORY)",
                    access.policy_name
                )
            })?
        }
        AccountMode::DirectoryAccount => access.settings.directory_account_ids.first().cloned().ok_or_else(|| {
            format!("the policy {} names no directory account; ask a Security Policy Administrator", access.policy_name)
        })?,
    };
    state.store.account(&id).await.map_err(|_| "the directory account the policy names no longer exists".to_owned())
}

/// The user named `username` if the public key with this fingerprint is registered to them.
pub async fn key_owner(state: &App, username: &str, fingerprint: &str) -> Option<User> {
    let owner = state.store.user_key_owner(fingerprint).await.ok()??;
    let u = state.store.login_state(username).await.ok()??.user;
    (u.id == owner).then_some(u)
}

/// Redeems a one-time launch token: its user (enabled, the request's requester) and what the
/// token gives now. The sign-in is recorded (`via`: the proxy, `ssh` or `rdp`). `None`:
/// unknown, used or expired token.
pub async fn redeem_launch_token(
    state: &App,
    token: &str,
    source: &str,
    via: &'static str,
) -> Option<(User, Result<SessionAccess, String>)> {
    let hash = crate::auth::token_hash(token);
    let now = state.now();
    let Some((request_id, user_id)) = state.store.use_launch_token(now, &hash).await.ok().flatten() else {
        // Reused, expired or unknown: audited, so that guessing or replaying shows up.
        let actor = Actor { id: String::new(), name: "unknown".into(), source: source.to_owned() };
        let event = portcullis_store::NewEvent::success("session.launch_token", "launch_token", "")
            .with_outcome(portcullis_store::Outcome::Denied)
            .with_details(serde_json::json!({ "reason": "unknown, expired or already used launch token" }));
        let _ = state.store.record(&actor, now, event).await;
        return None;
    };
    let (Ok(user), Ok(request)) = (state.store.user(&user_id).await, state.store.request(&request_id).await) else {
        return None;
    };
    if user.disabled || request.requester_id != user.id {
        return None;
    }
    let access = if request.state == RequestState::Available && request.start_at <= now && now < request.end_at {
        match (state.store.account(&request.account_id).await, state.store.asset(&request.asset_id).await) {
            (Ok(account), Ok(asset)) => access_for(state, request, account, asset).await,
            _ => Err("the request's account no longer exists".into()),
        }
    } else {
        Err(format!(
            "the request is {}; a launch token works only while it is available",
            request.state.as_str().replace('_', " ")
        ))
    };
    let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.to_owned() };
    let login = ProxyLogin { actor, at: now, user_id: user.id.clone(), totp_step: None, key_fingerprint: None, via };
    let _ = state.store.record_proxy_login(&login).await;
    Some((user, access))
}

/// Most pending RDP launch tokens a user's NLA sign-in is checked against.
const NLA_CANDIDATES: i64 = 5;

fn launch_context(token_hash: &str) -> portcullis_vault::SecretContext {
    portcullis_vault::SecretContext { account_id: token_hash.to_owned(), kind: "launch_token".into(), version: 1 }
}

/// An RDP launch token sealed for the database (bound to its hash), for the NLA sign-in.
pub fn seal_launch_token(state: &App, token: &str) -> String {
    let hash = crate::auth::token_hash(token);
    crate::totp_secret::encode(&portcullis_vault::seal(&state.vault, &launch_context(&hash), token.as_bytes()))
}

fn nla_hash_context(user_id: &str) -> portcullis_vault::SecretContext {
    portcullis_vault::SecretContext { account_id: user_id.to_owned(), kind: "nla_hash".into(), version: 1 }
}

/// The NT hash of a password (MD4 of its UTF-16LE form): what NTLM checks against.
pub fn nt_hash(password: &str) -> zeroize::Zeroizing<[u8; 16]> {
    use md4::Digest as _;
    let utf16: zeroize::Zeroizing<Vec<u8>> =
        zeroize::Zeroizing::new(password.encode_utf16().flat_map(u16::to_le_bytes).collect());
    let mut out = zeroize::Zeroizing::new([0u8; 16]);
    out.copy_from_slice(&md4::Md4::digest(&utf16[..]));
    out
}

/// Keeps the user's NT hash, sealed (`[rdp] nla_passwords`), unless it is kept already.
pub async fn remember_nla_hash(state: &App, user_id: &str, nt: &[u8; 16]) {
    let ctx = nla_hash_context(user_id);
    if let Ok(Some(stored)) = state.store.nla_hash(user_id).await {
        let kept =
            crate::totp_secret::decode(&stored).and_then(|s| portcullis_vault::open(&state.vault, &ctx, &s).ok());
        if kept.is_some_and(|k| k.expose() == nt) {
            return;
        }
    }
    let sealed = crate::totp_secret::encode(&portcullis_vault::seal(&state.vault, &ctx, nt));
    if let Err(e) = state.store.set_nla_hash(user_id, Some(&sealed)).await {
        tracing::warn!(error = %e, "the NT hash for RDP NLA could not be kept");
    }
}

/// The Portcullis user an NLA (CredSSP) user name names: `USER#ACCOUNT@ASSET` or `USER`.
pub fn nla_user(name: &str) -> &str {
    match portcullis_core::connection::parse(name) {
        Ok(portcullis_core::connection::ConnectionString::Inband { .. }) => {
            name.split_once('#').or_else(|| name.split_once('+')).map_or(name, |(u, _)| u)
        }
        _ => name,
    }
}

/// Whether the user `name` names has a pending RDP launch token (before TLS: no decryption).
pub async fn has_nla_token(state: &App, name: &str) -> bool {
    let Ok(Some(login)) = state.store.login_state(nla_user(name)).await else { return false };
    state.store.sealed_launch_tokens(state.now(), &login.user.id, 1).await.is_ok_and(|t| !t.is_empty())
}

/// The passwords an NLA sign-in as `name` may prove: the named user's pending RDP launch
/// tokens (enabled, unlocked users only; at most a few, newest first), and, with `[rdp]
/// nla_passwords`, their password as its kept NT hash (sspi's `$NTLM$:` form).
pub async fn nla_secrets(state: &App, name: &str) -> Vec<zeroize::Zeroizing<String>> {
    let now = state.now();
    let Ok(Some(login)) = state.store.login_state(nla_user(name)).await else { return Vec::new() };
    if login.user.disabled || login.user.locked_until.is_some_and(|t| t > now) {
        return Vec::new();
    }
    let rows = state.store.sealed_launch_tokens(now, &login.user.id, NLA_CANDIDATES).await.unwrap_or_default();
    let mut secrets: Vec<zeroize::Zeroizing<String>> = rows
        .iter()
        .filter_map(|(hash, sealed)| {
            let plain =
                portcullis_vault::open(&state.vault, &launch_context(hash), &crate::totp_secret::decode(sealed)?)
                    .ok()?;
            let token = zeroize::Zeroizing::new(String::from_utf8(plain.expose().to_vec()).ok()?);
            (crate::auth::token_hash(&token) == *hash).then_some(token)
        })
        .collect();
    if state.auth.rdp_nla_passwords && !login.user.totp_enabled {
        let ctx = nla_hash_context(&login.user.id);
        let stored = state.store.nla_hash(&login.user.id).await.ok().flatten();
        let nt = stored.and_then(|s| portcullis_vault::open(&state.vault, &ctx, &crate::totp_secret::decode(&s)?).ok());
        if let Some(nt) = nt {
            secrets.push(zeroize::Zeroizing::new(format!("$NTLM$:{}", crate::auth::hex_lower(nt.expose()))));
        }
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(state: RequestState, start: i64, end: i64) -> AccessRequest {
        AccessRequest {
            id: format!("r-{}", state.as_str()),
            batch_id: String::new(),
            requester_id: "u".into(),
            account_id: "a".into(),
            asset_id: "s".into(),
            access_type: AccessType::Ssh,
            policy_id: "p".into(),
            state,
            emergency: false,
            start_at: start,
            end_at: end,
            ticket: None,
            reason_code: None,
            comment: None,
            current_level: 0,
            review_required: false,
            removed: false,
            created_at: 0,
            updated_at: 0,
            ended_by: None,
        }
    }

    #[test]
    fn decisions() {
        let t = "root@db1";
        assert!(decide(AccessType::Ssh, &[], 5, t).unwrap_err().contains("no SSH access request"));
        let ok = [req(RequestState::Expired, 0, 4), req(RequestState::Available, 0, 10)];
        assert_eq!(decide(AccessType::Ssh, &ok, 5, t).unwrap().state, RequestState::Available);
        // Available but its window has passed (the scheduler has not caught up): refused.
        assert!(decide(AccessType::Ssh, &[req(RequestState::Available, 0, 5)], 5, t).is_err());
        assert!(decide(AccessType::Ssh, &[req(RequestState::PendingApproval, 0, 10)], 5, t)
            .unwrap_err()
            .contains("waiting for approval"));
        assert!(decide(AccessType::Ssh, &[req(RequestState::Approved, 60_000_000, 70_000_000)], 5, t)
            .unwrap_err()
            .contains("starts at"));
        assert!(decide(AccessType::Ssh, &[req(RequestState::Revoked, 0, 10)], 5, t).unwrap_err().contains("revoked"));
        assert!(decide(AccessType::Ssh, &[req(RequestState::Expired, 0, 4)], 5, t).unwrap_err().contains("expired"));
    }
}

#[cfg(test)]
mod nt_hash_tests {
    #[test]
    fn nt_hashes_are_md4_of_utf16() {
        let hex = |p: &str| crate::auth::hex_lower(&super::nt_hash(p)[..]);
        assert_eq!(hex("password"), "8846f7eaee8fb117ad06bdd830b7586c");
        assert_eq!(hex("Shadow-Pass-1"), "852d396a7f27dec86e85565fe7cd31f8", "as winpr-hash computes it");
    }
}
