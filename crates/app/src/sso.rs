//! Single sign-on with an OpenID provider (`[oidc]`), for the web UI and the CLI.
//!
//! A sign-in is a row (`sso_logins`) from its start to its session: the web UI starts one and
//! ties it to the browser with a cookie holding the state; the CLI starts one with the SHA-256
//! of a verifier only it knows and a loopback address. The provider's answer comes back to
//! Portcullis (`/auth/oidc/callback`), which checks the ID token, maps its claims to a user and
//! issues a one-time *grant*: redeemed at once by the web UI, or by the CLI (sent to its
//! loopback address) together with its verifier. A user enrolled for one-time codes gives one
//! at redemption unless the provider asserted multi-factor authentication (`amr`) and
//! `trust_provider_mfa` is on.
//!
//! Users: the provider's users are mirrored like a directory's, under the source `oidc` (their
//! subject is their key, their groups claim sets their `oidc` groups' members). A Portcullis
//! user of the same name is signed in only with `link_existing`.

use portcullis_directory::oidc::{Claims, Oidc, OidcError};
use portcullis_store::{Actor, DirectoryGroup, DirectoryUser, NewEvent, Outcome, SsoLogin, User};
use serde_json::json;
use zeroize::Zeroizing;

use crate::auth::{new_token, token_hash, SignedIn};
use crate::error::{AppError, AppResult, ErrorKind};
use crate::state::App;

/// The source name of the provider's users and groups.
pub const SOURCE: &str = "oidc";
/// How long a sign-in may take, from start to session.
const TTL_MICROS: i64 = 10 * 60 * 1_000_000;
/// Most sign-ins in progress at once: starting one needs no account, so their number is bounded.
const MAX_PENDING: i64 = 10_000;

/// The provider and how its claims map to users.
pub struct Sso {
    pub oidc: Oidc,
    /// What the sign-in button says ("Sign in with …").
    pub display_name: String,
    pub username_claim: String,
    pub groups_claim: String,
    pub create_users: bool,
    pub link_existing: bool,
    /// `amr` values that count as multi-factor; empty: one-time codes are always asked.
    pub mfa_amr: Vec<String>,
}

fn provider_error(e: OidcError) -> AppError {
    match e {
        OidcError::Provider { .. } => AppError::new(
            ErrorKind::Upstream,
            "sso_unavailable",
            format!("{e}; try again later or sign in with your password"),
        ),
        OidcError::Answer(_) => AppError::new(ErrorKind::Unauthenticated, "sso_refused", e.to_string()),
        OidcError::Invalid(_) => AppError::new(ErrorKind::Internal, "sso_misconfigured", e.to_string()),
    }
}

fn sso(state: &App) -> AppResult<&Sso> {
    state.sso.as_deref().ok_or_else(|| {
        AppError::new(
            ErrorKind::NotFound,
            "sso_not_configured",
            "single sign-on is not configured on this server ([oidc] issuer)",
        )
    })
}

/// A started sign-in: where to send the browser, and (web) the state for its cookie.
pub struct Begun {
    pub url: String,
    pub state: Zeroizing<String>,
}

async fn begin(state: &App, client: &str, next: String, cli_challenge: Option<String>) -> AppResult<Begun> {
    let sso = sso(state)?;
    let now = state.now();
    if state.store.sso_pending(now).await? >= MAX_PENDING {
        return Err(AppError::new(
            ErrorKind::TooMany,
            "too_many_attempts",
            "too many single sign-ons are in progress; try again in a few minutes",
        ));
    }
    let started = sso.oidc.start().await.map_err(provider_error)?;
    state
        .store
        .sso_begin(&SsoLogin {
            state_hash: token_hash(&started.state),
            nonce: started.nonce.to_string(),
            pkce_verifier: started.pkce_verifier.to_string(),
            client: client.to_owned(),
            next,
            cli_challenge,
            grant_hash: None,
            user_id: None,
            mfa: 0,
            created_at: now,
            expires_at: now + TTL_MICROS,
        })
        .await?;
    Ok(Begun { url: started.url, state: started.state })
}

/// The web UI starts a sign-in that returns to `next` (a local path).
pub async fn begin_web(state: &App, next: &str) -> AppResult<Begun> {
    begin(state, "web", next.to_owned(), None).await
}

/// The CLI starts a sign-in: the provider's answer goes to `redirect` (a loopback address of
/// the command), redeemable with the verifier whose SHA-256 (hex) is `challenge`.
pub async fn begin_cli(state: &App, redirect: &str, challenge: &str) -> AppResult<Begun> {
    let loopback = ["http://127.0.0.1:", "http://[::1]:", "http://localhost:"].iter().any(|p| redirect.starts_with(p));
    if !loopback || redirect.len() > 200 || redirect.contains(['?', '#', ' ']) {
        return Err(AppError::invalid(
            "redirect",
            "must be a loopback address of the command, e.g. http://127.0.0.1:PORT/callback",
        ));
    }
    if challenge.len() != 64 || !challenge.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::invalid("challenge", "must be the SHA-256 of the command's verifier, in hex"));
    }
    begin(state, "cli", redirect.to_owned(), Some(challenge.to_ascii_lowercase())).await
}

/// Where the browser goes after the provider's answer.
pub enum Answered {
    /// The web UI: redeem `grant` now (asking for a one-time code first when `totp`).
    Web { grant: Zeroizing<String>, next: String, totp: bool, username: String },
    /// The CLI: send the browser to the command's loopback address with the grant.
    Cli { redirect: String },
}

fn refused(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::new(ErrorKind::Unauthenticated, code, message)
}

/// The provider's answer (`state`, `code`): checks it and who signed in. `cookie` is the web
/// browser's state cookie (a web sign-in is finished only by the browser that began it).
pub async fn answered(state: &App, source: &str, st: &str, code: &str, cookie: Option<&str>) -> AppResult<Answered> {
    let sso = sso(state)?;
    let now = state.now();
    let login =
        state.store.sso_answered(&token_hash(st), now).await?.ok_or_else(|| {
            refused("sso_expired", "this sign-in is unknown, used or expired (ten minutes); start again")
        })?;
    if login.client == "web" && !cookie.is_some_and(|c| crate::auth::same_secret(c, st)) {
        return Err(refused("sso_other_browser", "this sign-in was started in another browser; start again here"));
    }
    let claims = match sso.oidc.finish(code, &login.pkce_verifier, &login.nonce).await {
        Ok(c) => c,
        Err(e) => {
            state.store.sso_end(&login.state_hash).await?;
            audit(state, source, "", Outcome::Failure, json!({ "reason": e.to_string() })).await;
            return Err(provider_error(e));
        }
    };
    let user = match user_for(state, sso, source, &claims).await {
        Ok(u) => u,
        Err(e) => {
            state.store.sso_end(&login.state_hash).await?;
            audit(
                state,
                source,
                "",
                Outcome::Denied,
                json!({ "code": e.code, "reason": e.message, "subject": claims.text("sub") }),
            )
            .await;
            return Err(e);
        }
    };
    let amr = claims.list("amr");
    tracing::debug!(claims = ?claims.0.keys().collect::<Vec<_>>(), ?amr, "the provider's ID token");
    let mfa = amr.iter().any(|a| sso.mfa_amr.contains(a));
    let grant = new_token("pcg_");
    state.store.sso_grant(&login.state_hash, &token_hash(&grant), &user.id, mfa).await?;
    Ok(if login.client == "cli" {
        Answered::Cli { redirect: format!("{}?grant={}", login.next, grant.as_str()) }
    } else {
        Answered::Web { grant, next: login.next, totp: user.totp_enabled && !mfa, username: user.username }
    })
}

async fn audit(state: &App, source: &str, user_id: &str, outcome: Outcome, details: serde_json::Value) {
    let actor = Actor { id: user_id.to_owned(), name: "single sign-on".into(), source: source.to_owned() };
    let event = NewEvent::success("auth.sso", "user", user_id).with_outcome(outcome).with_details(details);
    if let Err(e) = state.store.record(&actor, state.now(), event).await {
        tracing::error!(error = %e, "could not audit a single sign-on");
    }
}

/// The Portcullis user the claims stand for: created or refreshed like a directory user.
async fn user_for(state: &App, sso: &Sso, source: &str, claims: &Claims) -> AppResult<User> {
    let subject = claims.text("sub").ok_or_else(|| refused("sso_refused", "the ID token has no subject"))?;
    let username = claims.text(&sso.username_claim).ok_or_else(|| {
        refused(
            "sso_no_username",
            format!(
                "the provider sent no {} claim; set [oidc] username_claim to the claim that holds the user name",
                sso.username_claim
            ),
        )
    })?;
    portcullis_core::validate::username("username", &username).map_err(|e| {
        refused(
            "sso_bad_username",
            format!("the provider's user name {username:?} cannot be a Portcullis user name: {}", e.message),
        )
    })?;
    let existing = state.store.login_state(&username).await?.map(|l| l.user);
    match &existing {
        Some(u) if u.directory.as_deref() != Some(SOURCE) => {
            if !sso.link_existing {
                return Err(refused(
                    "sso_name_taken",
                    format!(
                        "a Portcullis user named {username} exists who does not sign in with {}; an Appliance \
                         Administrator can allow it ([oidc] link_existing = true)",
                        sso.display_name
                    ),
                ));
            }
            if u.disabled {
                return Err(refused("account_disabled", format!("the Portcullis user {username} is disabled")));
            }
            return Ok(u.clone());
        }
        None if !sso.create_users => {
            return Err(refused(
                "sso_unknown_user",
                format!(
                    "{username} has no Portcullis account and [oidc] create_users is off; ask a User Administrator"
                ),
            ))
        }
        _ => {}
    }
    let groups: Vec<DirectoryGroup> = claims
        .list(&sso.groups_claim)
        .into_iter()
        .filter(|g| portcullis_core::validate::name("group", g).is_ok())
        .map(|g| DirectoryGroup { dn: g.clone(), name: g })
        .collect();
    let person = DirectoryUser {
        dn: subject,
        display_name: claims.text("name").unwrap_or_else(|| username.clone()),
        email: claims.text("email"),
        time_zone: claims.text("zoneinfo"),
        disabled: false,
        groups: groups.iter().map(|g| g.dn.clone()).collect(),
        username,
    };
    let actor =
        Actor { id: String::new(), name: format!("single sign-on ({})", sso.display_name), source: source.to_owned() };
    let changes = state.store.apply_directory(&actor, state.now(), SOURCE, &[person], &groups, false).await?;
    let id = changes.user_id.ok_or_else(|| {
        refused("sso_name_taken", format!("the user could not be admitted: {}", changes.skipped.join("; ")))
    })?;
    let user = state.store.user(&id).await?;
    if user.disabled {
        return Err(refused("account_disabled", format!("the Portcullis user {} is disabled", user.username)));
    }
    Ok(user)
}

/// Opens the login session a grant stands for. The CLI shows its `verifier`; a user with a
/// one-time code gives it unless the provider asserted multi-factor authentication.
pub async fn redeem(
    state: &App,
    source: &str,
    grant: &str,
    verifier: Option<&str>,
    totp: Option<&str>,
) -> AppResult<SignedIn> {
    let now = state.now();
    let login =
        state.store.sso_by_grant(&token_hash(grant), now).await?.ok_or_else(|| {
            refused("sso_expired", "this sign-in is unknown, used or expired (ten minutes); start again")
        })?;
    if login.client == "cli" {
        let shown = verifier.map(|v| crate::auth::hex_lower(&<sha2::Sha256 as sha2::Digest>::digest(v.as_bytes())));
        let expected = login.cli_challenge.as_deref().unwrap_or_default();
        if !shown.is_some_and(|s| crate::auth::same_secret(&s, expected)) {
            return Err(refused("sso_refused", "the verifier does not match the one this sign-in began with"));
        }
    }
    let user_id = login.user_id.clone().unwrap_or_default();
    let user = state.store.user(&user_id).await?;
    let login_state =
        state.store.login_state(&user.username).await?.ok_or_else(|| refused("sso_refused", "the user is gone"))?;
    if user.disabled || user.locked_until.is_some_and(|t| t > now) {
        return Err(refused("account_locked", "the account is disabled or locked"));
    }
    let totp_step = if user.totp_enabled && login.mfa == 0 {
        Some(crate::auth::check_totp(state, source, &login_state, totp).await?)
    } else {
        None
    };
    if !state.store.sso_end(&login.state_hash).await? {
        return Err(refused("sso_expired", "this sign-in was used already; start again"));
    }
    let signed = crate::auth::open_session(state, source, &user, totp_step).await?;
    audit(
        state,
        source,
        &user.id,
        Outcome::Success,
        json!({ "username": user.username, "client": login.client, "provider_mfa": login.mfa != 0 }),
    )
    .await;
    Ok(signed)
}
