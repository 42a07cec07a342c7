//! Self-service: the signed-in user changes their own display name, e-mail or time zone
//! (unless a User Administrator locked it). One use case for the API, the CLI and the web UI.

use portcullis_core::validate;
use portcullis_store::{User, UserPatch};

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// What to change; absent fields stay. `email: Some(None)` removes the address.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub email: Option<Option<String>>,
    pub time_zone: Option<String>,
}

/// Applies the change. Setting a value to what it already is changes nothing and writes no
/// audit event; a refused time-zone change is audited.
pub async fn update(state: &App, caller: &Caller, change: ProfileChange) -> AppResult<User> {
    if let Some(n) = &change.display_name {
        validate::name("display_name", n)?;
    }
    if let Some(Some(e)) = &change.email {
        validate::email("email", e)?;
    }
    if let Some(tz) = &change.time_zone {
        validate::time_zone("time_zone", tz)?;
    }
    let u = &caller.user;
    let time_zone = change.time_zone.filter(|tz| *tz != u.time_zone);
    let display_name = change.display_name.filter(|d| *d != u.display_name);
    let gives_back = change.email.as_ref().is_some_and(|e| e.is_some() && *e == u.email);
    let email = change.email.filter(|e| *e != u.email);
    if let Some(tz) = &time_zone {
        if u.time_zone_locked {
            let err = AppError::refused(
                "time_zone_locked",
                format!("a User Administrator has locked your time zone ({}); ask them to change it", u.time_zone),
            );
            let details = serde_json::json!({ "time_zone": tz });
            crate::audit::refusal(state, &caller.actor(), "user.update", "user", &u.id, &err, details).await;
            return Err(err);
        }
    }
    // Giving back the address an administrator set confirms it as the user's own.
    if gives_back && u.email_set_by.is_some() {
        state.store.confirm_own_email(&caller.actor(), state.now(), &u.id).await?;
    }
    if time_zone.is_none() && display_name.is_none() && email.is_none() {
        return Ok(state.store.user(&u.id).await?);
    }
    let patch = UserPatch { display_name, email, time_zone, ..Default::default() };
    Ok(state.store.update_user(&caller.actor(), state.now(), &u.id, patch).await?)
}

/// The text a user signs to prove they hold an SSH key they register (`ssh-keygen -Y sign -n
/// portcullis`): bound to the user, so nobody can register someone else's public key as their
/// own without that person's signature.
pub fn ssh_key_challenge(user: &portcullis_store::User) -> String {
    format!("portcullis ssh-key registration\nuser: {}\nid: {}\n", user.username, user.id)
}

/// A command that signs [`ssh_key_challenge`] with a key file (or, given the .pub file, with
/// the key in ssh-agent), for the API and the web UI to show.
pub fn ssh_key_sign_command(user: &portcullis_store::User) -> String {
    format!(
        "printf '{}' | ssh-keygen -Y sign -n {} -f ~/.ssh/id_ed25519",
        ssh_key_challenge(user).replace('\n', "\\n"),
        portcullis_vault::SIGNATURE_NAMESPACE
    )
}
