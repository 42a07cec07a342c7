//! Sign-in for every front end: password hashing (argon2id), bearer and launch tokens, the
//! password + one-time-code check with lockout, and resolving a bearer token to its caller.

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use base64::Engine;
use portcullis_core::role::Role;
use portcullis_core::totp;
use portcullis_store::{Actor, LoginState, User};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{AppError, AppResult, ErrorKind};
use crate::state::App;

/// Hashes a password with argon2id (default parameters: 19 MiB, 2 passes). CPU-heavy: call
/// from a blocking task.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// argon2's working memory (19 MiB each at the default cost), kept for reuse: a fresh
/// allocation for every verification cost as much again as the hashing itself (page faults,
/// the kernel zeroing new pages, unmapping). At most `MEMORY_KEPT` are kept (so the server
/// holds at most that many × 19 MiB); each is wiped after use.
static ARGON2_MEMORY: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());
const MEMORY_KEPT: usize = 2;

/// Verifies a password against a PHC string (argon2id, argon2i or argon2d with the
/// parameters the string names); the comparison of the hashes is constant-time.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Ok(algorithm), Ok(params)) = (argon2::Algorithm::try_from(hash.algorithm), argon2::Params::try_from(&hash))
    else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let argon = Argon2::new(algorithm, version, params);
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let blocks = argon.params().block_count();
    let mut memory = ARGON2_MEMORY.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let hashed = argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks]);
    memory[..blocks].fill(argon2::Block::default());
    {
        let mut kept = ARGON2_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < MEMORY_KEPT {
            kept.push(memory);
        }
    }
    // `Output`'s equality is constant-time.
    hashed.is_ok() && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// Password hashings and checks running at once: each holds argon2's working memory (19 MiB),
/// so a burst of sign-ins queues here instead of allocating (memory stays bounded however many
/// arrive), and the CPU is not oversubscribed either.
fn password_work() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        tokio::sync::Semaphore::new(cores.clamp(2, 8))
    })
}

pub async fn hash_password_blocking(password: Zeroizing<String>) -> Result<String, AppError> {
    let _slot = password_work().acquire().await.map_err(|_| AppError::internal())?;
    tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(|_| AppError::internal())
}

pub async fn verify_password_blocking(password: Zeroizing<String>, phc: String) -> Result<bool, AppError> {
    let _slot = password_work().acquire().await.map_err(|_| AppError::internal())?;
    tokio::task::spawn_blocking(move || verify_password(&password, &phc)).await.map_err(|_| AppError::internal())
}

/// A new random bearer token with a readable prefix (`pcs_` login session, `pct_` API token).
pub fn new_token(prefix: &str) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    hex_lower(&Sha256::digest(token.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub fn hex_lower(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub token_hash: String,
    pub api_token_id: Option<String>,
    pub source: String,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor { id: self.user.id.clone(), name: self.user.username.clone(), source: self.source.clone() }
    }

    pub fn has(&self, role: Role) -> bool {
        self.user.roles.contains(&role)
    }

    /// Whether the caller may manage `target`: an Appliance Administrator may manage anyone;
    /// others only users whose administrative roles they hold themselves, so no one gains a
    /// role by taking over a more privileged account.
    pub fn may_manage(&self, target: &User) -> bool {
        self.has(Role::ApplianceAdmin) || target.roles.iter().all(|r| self.has(*r))
    }
}

/// The client's address, put into each HTTP request's extensions by the server's accept loop
/// (the API and the web UI read it for audit).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// The caller a bearer token (login session or API token) stands for, if it is valid and its
/// user is enabled.
pub async fn authenticate(state: &App, token: &str, source: String) -> AppResult<Caller> {
    let hash = token_hash(token);
    let principal = state
        .store
        .principal(&hash, state.now())
        .await?
        .ok_or_else(|| AppError::unauthenticated("the token is invalid, expired or revoked; sign in again"))?;
    if principal.user.disabled {
        return Err(AppError::unauthenticated("this account is disabled"));
    }
    Ok(Caller { user: principal.user, token_hash: hash, api_token_id: principal.api_token_id, source })
}

/// A new login session: the bearer token (shown once), when it expires, and its user.
pub struct SignedIn {
    pub token: Zeroizing<String>,
    pub expires_at: i64,
    pub user: User,
}

/// Signs in with a password (and a one-time code when enrolled) and opens a login session
/// for any front end that works with bearer tokens (the API, the web UI). Failures are
/// audited and counted toward the lockout by [`verify_login`].
pub async fn sign_in(
    state: &App,
    source: &str,
    username: &str,
    password: Zeroizing<String>,
    totp_code: Option<&str>,
) -> AppResult<SignedIn> {
    let (user, totp_step) = verify_login(state, source, username, password, totp_code).await?;
    open_session(state, source, &user, totp_step).await
}

/// Opens a login session for a user whose sign-in succeeded (a password, single sign-on).
pub async fn open_session(state: &App, source: &str, user: &User, totp_step: Option<i64>) -> AppResult<SignedIn> {
    let now = state.now();
    let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.to_owned() };
    let token = new_token("pcs_");
    let expires_at = now + state.auth.session_ttl_minutes * 60_000_000;
    state.store.record_login_success(&actor, now, &user.id, totp_step, &token_hash(&token), expires_at).await?;
    let user = state.store.user(&user.id).await?;
    Ok(SignedIn { token, expires_at, user })
}

/// A valid argon2id hash of a random password: unknown usernames are checked against it so
/// that their response time matches that of known ones.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| hash_password(&new_token("dummy_")));

/// Records a failed sign-in or second-factor check of `user_id` (empty: an unknown name):
/// audited, counted for the source address's limit and toward the account's lockout. True
/// when the account is now locked.
/// A failed RDP NLA sign-in as `username` with `[rdp] nla_passwords` on (NTLM proved neither
/// the password nor a launch token): a failed sign-in, towards the lockout like any other.
pub async fn nla_failed(state: &App, source: &str, username: &str) {
    let Ok(Some(login)) = state.store.login_state(username).await else { return };
    let actor = Actor { id: login.user.id.clone(), name: username.to_owned(), source: source.to_owned() };
    let _ = record_failure(state, &actor, &login.user.id, "wrong password (RDP NLA)").await;
}

pub async fn record_failure(state: &App, actor: &Actor, user_id: &str, reason: &str) -> AppResult<bool> {
    let now = state.now();
    state.metrics.logins_failed.inc();
    state.throttle.source_failed(&actor.source, now);
    let lock_until = now + state.auth.lockout_minutes * 60_000_000;
    Ok(state.store.record_login_failure(actor, now, user_id, state.auth.lockout_threshold, lock_until, reason).await?)
}

/// Checks a sign-in (password and, when enrolled, TOTP code) with lockout, for the API and the
/// SSH proxy alike. Failures are audited and counted; returns the user and the TOTP step used.
/// Errors: `invalid_credentials`, `account_locked`, `totp_required` (401).
pub async fn verify_login(
    state: &App,
    source: &str,
    username: &str,
    password: Zeroizing<String>,
    totp_code: Option<&str>,
) -> AppResult<(User, Option<i64>)> {
    let now = state.now();
    // An unknown username is not recorded: people type passwords into the username field,
    // and the audit log must not keep them. Known users are named by their username.
    let known_name = |id: &str| if id.is_empty() { "unknown".to_owned() } else { username.to_owned() };
    let actor = |id: &str| Actor { id: id.to_owned(), name: known_name(id), source: source.to_owned() };
    let invalid = || AppError::new(ErrorKind::Unauthenticated, "invalid_credentials", "wrong username or password");
    let fail = |id: String, reason: &'static str| {
        let state = state.clone();
        let actor = actor(&id);
        async move { record_failure(&state, &actor, &id, reason).await }
    };

    // One address failing too often waits (before any password check, which costs memory
    // and time).
    if let Some(wait) = state.throttle.source_wait(source, now) {
        state.metrics.logins_failed.inc();
        return Err(AppError::new(
            ErrorKind::TooMany,
            "too_many_attempts",
            format!("too many failed sign-ins from your address; wait {wait} seconds and try again"),
        ));
    }
    let lockout = |now: i64| now + state.auth.lockout_minutes * 60_000_000;
    let locked_message = format!(
        "too many failed sign-ins; the account is locked for {} minutes (a User Administrator can unlock it)",
        state.auth.lockout_minutes
    );
    let locked = || AppError::new(ErrorKind::Unauthenticated, "account_locked", locked_message.clone());

    let mut login_state = if username.len() <= 64 { state.store.login_state(username).await? } else { None };
    // Directory users: the directory's bind decides, and their entry is refreshed on the way.
    let directory = login_state.as_ref().map(|l| l.user.directory.clone());
    let directory_user = matches!(directory, Some(Some(_)));
    if directory_user || (login_state.is_none() && !state.directories.is_empty()) {
        if let Some(l) = login_state.as_ref().filter(|l| l.user.locked_until.is_some_and(|t| t > now)) {
            fail(l.user.id.clone(), "account locked").await?;
            return Err(locked());
        }
        let only = directory.clone().flatten();
        match crate::directory::sign_in(state, source, only.as_deref(), username, &password).await? {
            crate::directory::SignIn::Ok(_) => login_state = state.store.login_state(username).await?,
            crate::directory::SignIn::Refused { user_id: Some(id), reason } => {
                if fail(id, reason).await? {
                    return Err(locked());
                }
                return Err(invalid());
            }
            crate::directory::SignIn::Refused { user_id: None, .. } | crate::directory::SignIn::Unknown => {
                login_state = None;
            }
        }
    }
    let Some(login_state) = login_state else {
        // An unknown name answers exactly as a known one would: the same password check, the
        // same lockout after as many failures (kept in memory), the same messages.
        verify_password_blocking(password, DUMMY_HASH.clone()).await?;
        let was_locked = state.throttle.phantom_locked(username, now);
        fail(String::new(), if was_locked { "account locked" } else { "unknown user" }).await?;
        if was_locked || state.throttle.phantom_failed(username, now, state.auth.lockout_threshold, lockout(now)) {
            return Err(locked());
        }
        return Err(invalid());
    };
    let user = &login_state.user;
    // `[rdp] nla_passwords`: the password's NT hash, kept (sealed) once the password proves right.
    let nt = (state.auth.rdp_nla_passwords && !user.totp_enabled && user.directory.is_none())
        .then(|| crate::session_access::nt_hash(&password));
    // The password is checked even for a locked account, so that the answer takes as long. A
    // directory user's was checked by the directory's bind just now.
    let password_ok = if user.directory.is_some() {
        true
    } else {
        verify_password_blocking(password, login_state.password_hash.clone()).await?
    };
    if user.locked_until.is_some_and(|t| t > now) {
        fail(user.id.clone(), "account locked").await?;
        return Err(locked());
    }
    if !password_ok || user.disabled {
        let now_locked =
            fail(user.id.clone(), if user.disabled { "account disabled" } else { "wrong password" }).await?;
        if now_locked {
            return Err(locked());
        }
        return Err(invalid());
    }
    if let Some(nt) = nt {
        crate::session_access::remember_nla_hash(state, &user.id, &nt).await;
    }
    let totp_step =
        if user.totp_enabled { Some(check_totp(state, source, &login_state, totp_code).await?) } else { None };
    Ok((login_state.user, totp_step))
}

/// Checks the one-time code of an enrolled user (and uses up its step, against replay): the
/// step, or `totp_required` without a code, or a counted failed sign-in.
pub async fn check_totp(state: &App, source: &str, login: &LoginState, code: Option<&str>) -> AppResult<i64> {
    let user = &login.user;
    let Some(code) = code else {
        return Err(AppError::new(
            ErrorKind::Unauthenticated,
            "totp_required",
            "this account uses a one-time code: send totp_code",
        ));
    };
    let now = state.now();
    let secret = login.totp_secret.as_deref().and_then(|s| crate::totp_secret::open(&state.vault, &user.id, s));
    let step = secret.and_then(|s| totp::verify(&s, code, now.div_euclid(1_000_000), login.totp_last_step));
    let consumed = match step {
        Some(step) => state.store.consume_totp_step(&user.id, step).await?,
        None => false,
    };
    match step.filter(|_| consumed) {
        Some(step) => Ok(step),
        None => {
            let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.to_owned() };
            record_failure(state, &actor, &user.id, "wrong one-time code").await?;
            Err(AppError::new(ErrorKind::Unauthenticated, "invalid_credentials", "wrong or reused one-time code"))
        }
    }
}

#[cfg(test)]
mod password_tests {
    use super::*;

    #[test]
    fn verification_follows_the_stored_parameters_and_reuses_memory_safely() {
        let phc = hash_password("correct horse");
        // Repeated (the kept memory is reused) and interleaved with failures.
        for _ in 0..3 {
            assert!(verify_password("correct horse", &phc));
            assert!(!verify_password("correct horsf", &phc));
        }
        // Other algorithms and costs, as named by the PHC string.
        let params = argon2::Params::new(4096, 3, 1, Some(32)).unwrap();
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let other = Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(other.starts_with("$argon2i$"));
        assert!(verify_password("pw", &other));
        assert!(!verify_password("pW", &other));
        // Malformed or altered strings never verify.
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("correct horse", &phc.replace("$argon2id$", "$argon2x$")));
        let mut altered = phc.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(!verify_password("correct horse", &altered));
    }
}
