//! Password resets that give the administrator nothing to sign in with. An administrator's
//! reset (or an invitation of a new user) replaces the password by one nobody knows, ends the
//! user's sessions and API tokens, and mails the user a set-password link; the link's token is
//! made when the mail is sent and exists only in the user's mailbox. The administrator sees
//! where it went (masked), never the link. An administrator who set the user's e-mail address
//! themself may not send a link there (another one must, or the user sets the address), so
//! no one administrator both chooses the channel and triggers the send.

use portcullis_store::{Actor, User};
use zeroize::Zeroizing;

use crate::approval_mail::{new_token, token_hash, TOKEN_CHARS};
use crate::auth::{hash_password_blocking, Caller};
use crate::error::{AppError, AppResult, ErrorKind};
use crate::state::App;

/// How long a set-password link works.
pub const LINK_HOURS: i64 = 24;

/// What the administrator is told.
#[derive(Debug, Clone)]
pub struct ResetSent {
    /// The address, masked (`a…@example.com`).
    pub sent_to: String,
    pub link_hours: i64,
}

/// `alice@example.com` → `a…@example.com`.
pub fn mask(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}…@{domain}", local.chars().next().unwrap_or('?')),
        None => "…".into(),
    }
}

/// Where a link for `user` may go, or why none may. An invitation (a new account, nothing to
/// take over) may go to the address its creator chose.
pub fn channel<'a>(state: &App, caller: &Caller, user: &'a User, invitation: bool) -> AppResult<&'a str> {
    let name = &user.username;
    if !state.mail {
        return Err(AppError::conflict(
            "mail_not_configured",
            format!(
                "e-mail is not configured on this server (the [mail] section of the configuration), so a \
                 set-password link cannot reach {name}; configure it, or run `portcullis reset-link {name}` \
                 on the server"
            ),
        ));
    }
    let Some(email) = user.email.as_deref() else {
        return Err(AppError::conflict(
            "no_email",
            format!(
                "{name} has no e-mail address, so a set-password link cannot reach them; another User Administrator \
                 sets one (`portcullis user update {name} --email …`, or the user's page), then send the link"
            ),
        ));
    };
    if !invitation && user.email_set_by.as_deref() == Some(caller.user.id.as_str()) {
        return Err(AppError::refused(
            "own_change",
            format!(
                "you set {name}'s e-mail address yourself, so the link could reach you instead of {name}; another \
                 User Administrator must send it, or {name} confirms the address under My account (saving the \
                 profile), or the server's operator runs `portcullis reset-link {name}`"
            ),
        ));
    }
    Ok(email)
}

/// An administrator's reset of `user` (`invitation`: a new user's first password): see the
/// module documentation. The caller's right to manage `user` is checked by the caller.
pub async fn reset(state: &App, caller: &Caller, user: &User, invitation: bool) -> AppResult<ResetSent> {
    if let Some(d) = &user.directory {
        return Err(AppError::new(
            ErrorKind::Forbidden,
            "directory_user",
            format!(
                "{} signs in through {d} (a directory or single sign-on); their password is reset there, not in Portcullis",
                user.username
            ),
        ));
    }
    let email = channel(state, caller, user, invitation)?;
    let sent_to = mask(email);
    let unusable = hash_password_blocking(crate::auth::new_token("unusable_")).await?;
    let details = serde_json::json!({ "username": user.username, "sent_to": sent_to, "invitation": invitation,
        "link_hours": LINK_HOURS, "by": caller.user.username });
    state.store.begin_password_reset(&caller.actor(), state.now(), &user.id, &unusable, details, true).await?;
    Ok(ResetSent { sent_to, link_hours: LINK_HOURS })
}

/// A new link for `user_id` (the mailer, as it sends the mail; the server's operator, on the
/// server): the token, which only its recipient gets.
pub async fn issue_link(state: &App, user_id: &str) -> AppResult<Zeroizing<String>> {
    let token = Zeroizing::new(new_token());
    let now = state.now();
    state.store.issue_password_reset(&token_hash(&token), user_id, now, now + LINK_HOURS * 3_600_000_000).await?;
    Ok(token)
}

/// The user a link is for, if it can still be used (the set-password page names them).
pub async fn link_user(state: &App, source: &str, token: &str) -> AppResult<User> {
    let now = state.now();
    if let Some(wait) = state.throttle.source_wait(source, now) {
        return Err(AppError::new(
            ErrorKind::TooMany,
            "too_many_attempts",
            format!("too many failed attempts from your address; wait {wait} seconds and try again"),
        ));
    }
    let invalid = || {
        state.throttle.source_failed(source, now);
        AppError::new(
            ErrorKind::NotFound,
            "link_invalid",
            "this set-password link is not valid or was already used; ask a User Administrator to send a new one",
        )
    };
    if token.len() != TOKEN_CHARS {
        return Err(invalid());
    }
    let Some(link) = state.store.password_reset(&token_hash(token)).await? else {
        return Err(invalid());
    };
    if link.expires_at <= now {
        return Err(AppError::conflict(
            "link_expired",
            format!(
                "this set-password link expired (links work for {LINK_HOURS} hours); ask a User Administrator to \
                 send a new one"
            ),
        ));
    }
    let user = state.store.user(&link.user_id).await?;
    if user.disabled {
        return Err(AppError::refused(
            "account_disabled",
            "this account is disabled; a User Administrator can enable it",
        ));
    }
    Ok(user)
}

/// Sets the password of the link's user, once. Audited as the user's own change.
pub async fn set_password(state: &App, source: &str, token: &str, new_password: Zeroizing<String>) -> AppResult<User> {
    let user = link_user(state, source, token).await?;
    portcullis_core::validate::password("new_password", &new_password, state.auth.password_min_length)?;
    let hash = hash_password_blocking(new_password).await?;
    let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.to_owned() };
    state.store.complete_password_reset(&actor, state.now(), &token_hash(token), &hash).await.map_err(|e| match e {
        portcullis_store::StoreError::NotFound(_) => AppError::new(
            ErrorKind::NotFound,
            "link_invalid",
            "this set-password link was used meanwhile; ask a User Administrator to send a new one",
        ),
        e => e.into(),
    })?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_masked() {
        assert_eq!(super::mask("alice@example.com"), "a…@example.com");
        assert_eq!(super::mask("nope"), "…");
    }
}
