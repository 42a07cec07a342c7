//! Local users: profile, roles, password hash, lockout and TOTP state.

use portcullis_core::role::{decode_roles, encode_roles, Role};

use crate::audit::{append, NewEvent, Outcome};
use crate::{new_id, Actor, Page, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    /// The administrator who last set the e-mail address, when it was not the user.
    pub email_set_by: Option<String>,
    pub roles: Vec<Role>,
    pub time_zone: String,
    pub time_zone_locked: bool,
    pub disabled: bool,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub totp_enabled: bool,
    pub password_changed_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The directory connection the user comes from (`None`: a Portcullis user).
    pub directory: Option<String>,
}

const USER_COLUMNS: &str = "id, username, display_name, email, email_set_by, roles, time_zone, time_zone_locked, \
    disabled, failed_logins, locked_until, totp_enabled, password_changed_at, created_at, updated_at, directory";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    username: String,
    display_name: String,
    email: Option<String>,
    email_set_by: Option<String>,
    roles: String,
    time_zone: String,
    time_zone_locked: i64,
    disabled: i64,
    failed_logins: i64,
    locked_until: Option<i64>,
    totp_enabled: i64,
    password_changed_at: i64,
    created_at: i64,
    updated_at: i64,
    directory: Option<String>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<User> {
        Ok(User {
            roles: decode_roles(&r.roles).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            id: r.id,
            username: r.username,
            display_name: r.display_name,
            email: r.email,
            email_set_by: r.email_set_by,
            time_zone: r.time_zone,
            time_zone_locked: r.time_zone_locked != 0,
            disabled: r.disabled != 0,
            failed_logins: r.failed_logins,
            locked_until: r.locked_until,
            totp_enabled: r.totp_enabled != 0,
            password_changed_at: r.password_changed_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            directory: r.directory,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    /// An argon2id PHC string; never the password itself.
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub time_zone: String,
    pub time_zone_locked: bool,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub email: Option<Option<String>>,
    pub time_zone: Option<String>,
    pub time_zone_locked: Option<bool>,
    pub disabled: Option<bool>,
}

/// What the login check needs; the secrets stay inside the server.
#[derive(Clone)]
pub struct LoginState {
    pub user: User,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub totp_last_step: Option<i64>,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState").field("user", &self.user.username).finish_non_exhaustive()
    }
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// Revokes every API token of a user that is still valid.
pub(crate) async fn revoke_tokens(tx: &mut sqlx::AnyConnection, user_id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Puts a new password hash in place (the lockout lifted) and ends the user's other access:
/// every login session but `keep_session` (the user's own, when they change it themself), and,
/// when none is kept, their API tokens too — whoever held the old password or a token is out.
pub(crate) async fn replace_password(
    tx: &mut sqlx::AnyConnection,
    id: &str,
    password_hash: &str,
    now: i64,
    keep_session: Option<&str>,
) -> Result<()> {
    let n = sqlx::query(
        "UPDATE users SET password_hash = $1, password_changed_at = $2, updated_at = $2, \
         failed_logins = 0, locked_until = NULL, nla_hash = NULL WHERE id = $3 AND directory IS NULL",
    )
    .bind(password_hash)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        let directory: Option<Option<String>> =
            sqlx::query_scalar("SELECT directory FROM users WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        return Err(match directory {
            Some(Some(d)) => StoreError::Refused {
                code: "directory_user",
                message: format!(
                    "this user signs in through {d} (a directory or single sign-on); their password is changed there, not in Portcullis"
                ),
            },
            _ => StoreError::NotFound("user"),
        });
    }
    sqlx::query("DELETE FROM login_sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(id)
        .bind(keep_session.unwrap_or(""))
        .execute(&mut *tx)
        .await?;
    if keep_session.is_none() {
        revoke_tokens(tx, id, now).await?;
    }
    Ok(())
}

impl Store {
    /// The user's sealed NT hash for RDP NLA (`[rdp] nla_passwords`), if one was kept.
    pub async fn nla_hash(&self, user_id: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT nla_hash FROM users WHERE id = $1").bind(user_id).fetch_optional(&self.read).await?;
        Ok(row.and_then(|r| r.0))
    }

    /// Keeps (or, with `None`, forgets) the user's sealed NT hash for RDP NLA.
    pub async fn set_nla_hash(&self, user_id: &str, sealed: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE users SET nla_hash = $1 WHERE id = $2")
            .bind(sealed)
            .bind(user_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn create_user(&self, actor: &Actor, now: i64, new: NewUser) -> Result<User> {
        let mut tx = self.write.begin().await?;
        let mut user = insert_user(&mut tx, now, &new).await?;
        if user.email.is_some() && !actor.id.is_empty() {
            // The creator chose the address: their own set-password link may not go there.
            sqlx::query("UPDATE users SET email_set_by = $1 WHERE id = $2")
                .bind(&actor.id)
                .bind(&user.id)
                .execute(&mut *tx)
                .await?;
            user.email_set_by = Some(actor.id.clone());
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("user.create", "user", &user.id).with_details(serde_json::json!({
                "username": user.username,
                "roles": encode_roles(&user.roles),
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Creates the first administrator if `bootstrap_hash` matches a stored one-time secret
    /// hash (each node that started before there was a user printed one), consuming them all.
    /// Returns `None` when the secret does not match (or one was used).
    pub async fn bootstrap_admin(
        &self,
        source: &str,
        now: i64,
        bootstrap_hash: &str,
        new: NewUser,
    ) -> Result<Option<User>> {
        let mut tx = self.write.begin().await?;
        // All of them go in one statement (a concurrent bootstrap waits on these rows, then
        // finds none); kept, by rolling back, unless one matched.
        let stored: Vec<String> = sqlx::query_scalar(
            "DELETE FROM settings WHERE key = 'bootstrap_hash' OR key LIKE 'bootstrap_hash:%' RETURNING value",
        )
        .fetch_all(&mut *tx)
        .await?;
        if !stored.iter().any(|h| h == bootstrap_hash) {
            return Ok(None);
        }
        let user = insert_user(&mut tx, now, &new).await?;
        let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: source.into() };
        append(&mut tx, &self.audit_key, &actor, now, &NewEvent::success("system.bootstrap", "user", &user.id)).await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    pub async fn user(&self, id: &str) -> Result<User> {
        let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.ok_or(StoreError::NotFound("user"))?.try_into()
    }

    /// The users whose e-mail address is `email` (compared without case).
    pub async fn users_by_email(&self, email: &str) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE LOWER(email) = LOWER($1) ORDER BY id LIMIT 10"
        ))
        .bind(email)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(User::try_from).collect()
    }

    pub async fn users(&self, page: Page) -> Result<Vec<User>> {
        let rows: Vec<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username LIMIT $1 OFFSET $2"))
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.read)
                .await?;
        rows.into_iter().map(User::try_from).collect()
    }

    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.read).await?)
    }

    pub async fn update_user(&self, actor: &Actor, now: i64, id: &str, patch: UserPatch) -> Result<User> {
        let mut tx = self.write.begin().await?;
        let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let mut user: User = row.ok_or(StoreError::NotFound("user"))?.try_into()?;
        let mut changed = serde_json::Map::new();
        if let Some(v) = patch.display_name {
            changed.insert("display_name".into(), v.clone().into());
            user.display_name = v;
        }
        if let Some(v) = patch.email {
            if v != user.email {
                user.email_set_by = (actor.id != id).then(|| actor.id.clone());
            }
            changed.insert("email".into(), v.clone().into());
            user.email = v;
        }
        if let Some(v) = patch.time_zone {
            changed.insert("time_zone".into(), v.clone().into());
            user.time_zone = v;
        }
        if let Some(v) = patch.time_zone_locked {
            changed.insert("time_zone_locked".into(), v.into());
            user.time_zone_locked = v;
        }
        if let Some(v) = patch.disabled {
            changed.insert("disabled".into(), v.into());
            user.disabled = v;
        }
        user.updated_at = now;
        sqlx::query(
            "UPDATE users SET display_name = $1, email = $2, time_zone = $3, time_zone_locked = $4, \
             disabled = $5, updated_at = $6, email_set_by = $8 WHERE id = $7",
        )
        .bind(&user.display_name)
        .bind(&user.email)
        .bind(&user.time_zone)
        .bind(flag(user.time_zone_locked))
        .bind(flag(user.disabled))
        .bind(now)
        .bind(id)
        .bind(&user.email_set_by)
        .execute(&mut *tx)
        .await?;
        if user.disabled {
            sqlx::query("DELETE FROM login_sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
            // Enabling the user again does not bring old tokens back.
            revoke_tokens(&mut tx, id, now).await?;
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("user.update", "user", id).with_details(changed.into()),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The user confirms the e-mail address an administrator set for them: from now on it is
    /// theirs, and any administrator's set-password link may go there.
    pub async fn confirm_own_email(&self, actor: &Actor, now: i64, id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE users SET email_set_by = NULL, updated_at = $1 WHERE id = $2 AND email_set_by IS NOT NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            let details = serde_json::json!({ "email_confirmed": true });
            append(
                &mut tx,
                &self.audit_key,
                actor,
                now,
                &NewEvent::success("user.update", "user", id).with_details(details),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_roles(&self, actor: &Actor, now: i64, id: &str, roles: &[Role]) -> Result<User> {
        let text = encode_roles(roles);
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("UPDATE users SET roles = $1, updated_at = $2 WHERE id = $3")
            .bind(&text)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("user.roles", "user", id).with_details(serde_json::json!({ "roles": text })),
        )
        .await?;
        tx.commit().await?;
        self.user(id).await
    }

    pub async fn delete_user(&self, actor: &Actor, now: i64, id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let name: Option<String> = sqlx::query_scalar("DELETE FROM users WHERE id = $1 RETURNING username")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let name = name.ok_or(StoreError::NotFound("user"))?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("user.delete", "user", id).with_details(serde_json::json!({ "username": name })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a new password hash and ends the user's login sessions, except `keep_session`
    /// (the token hash of the session that made the change, if it is the user's own).
    pub async fn set_password(
        &self,
        actor: &Actor,
        now: i64,
        id: &str,
        password_hash: &str,
        keep_session: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        replace_password(&mut tx, id, password_hash, now, keep_session).await?;
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("user.password", "user", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn unlock_user(&self, actor: &Actor, now: i64, id: &str) -> Result<User> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("user.unlock", "user", id)).await?;
        tx.commit().await?;
        self.user(id).await
    }

    pub async fn login_state(&self, username: &str) -> Result<Option<LoginState>> {
        let row: Option<(String, Option<String>, Option<i64>, String)> =
            sqlx::query_as("SELECT password_hash, totp_secret, totp_last_step, id FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.read)
                .await?;
        let Some((password_hash, totp_secret, totp_last_step, id)) = row else { return Ok(None) };
        let user = self.user(&id).await?;
        Ok(Some(LoginState { user, password_hash, totp_secret, totp_last_step }))
    }

    /// Counts a failed login and locks the account once `threshold` failures in a row are
    /// reached. Audits the failure. `user_id` is empty for an unknown username.
    pub async fn record_login_failure(
        &self,
        actor: &Actor,
        now: i64,
        user_id: &str,
        threshold: i64,
        lock_until: i64,
        reason: &str,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let mut locked = false;
        if !user_id.is_empty() {
            // Attempts during a lock neither count nor move it (nobody keeps an account locked
            // forever); a lock starts the count afresh for when it ends.
            let failures: Option<i64> = sqlx::query_scalar(
                "UPDATE users SET failed_logins = failed_logins + 1 \
                 WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $2) RETURNING failed_logins",
            )
            .bind(user_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if failures.is_some_and(|f| f >= threshold) {
                sqlx::query("UPDATE users SET locked_until = $1, failed_logins = 0 WHERE id = $2")
                    .bind(lock_until)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                locked = true;
            }
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("auth.login", "user", user_id)
                .with_outcome(Outcome::Failure)
                .with_details(serde_json::json!({ "reason": reason, "locked": locked })),
        )
        .await?;
        tx.commit().await?;
        Ok(locked)
    }

    /// Records a successful login: resets the failure count, remembers the TOTP step used and
    /// stores the new login session (by token hash).
    pub async fn record_login_success(
        &self,
        actor: &Actor,
        now: i64,
        user_id: &str,
        totp_step: Option<i64>,
        session_hash: &str,
        expires_at: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        reset_failures(&mut tx, user_id, totp_step).await?;
        sqlx::query(
            "INSERT INTO login_sessions (token_hash, user_id, created_at, expires_at, source) VALUES ($1,$2,$3,$4,$5)",
        )
        .bind(session_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .bind(&actor.source)
        .execute(&mut *tx)
        .await?;
        // Expired sessions are swept here, where a write happens anyway.
        sqlx::query("DELETE FROM login_sessions WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("auth.login", "user", user_id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a successful sign-in that opens no API session (the SSH proxy); one
    /// transaction. See [`ProxyLogin`].
    pub async fn record_proxy_login(&self, login: &ProxyLogin) -> Result<()> {
        let mut tx = self.write.begin().await?;
        write_proxy_login(&mut tx, &self.audit_key, login).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a TOTP secret (base32) awaiting confirmation; enrolment is not active yet.
    /// Every stored one-time-code secret (user id, stored text), for sealing and key rotation.
    pub async fn totp_secrets(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as("SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY id")
            .fetch_all(&self.read)
            .await?)
    }

    /// Replaces a user's stored one-time-code secret if it is still `old` (sealing, key
    /// rotation); false when it changed meanwhile.
    pub async fn replace_totp_secret(&self, user_id: &str, old: &str, new: &str) -> Result<bool> {
        let n = sqlx::query("UPDATE users SET totp_secret = $1 WHERE id = $2 AND totp_secret = $3")
            .bind(new)
            .bind(user_id)
            .bind(old)
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn set_totp_pending(&self, actor: &Actor, now: i64, id: &str, secret: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "UPDATE users SET totp_secret = $1, totp_enabled = 0, totp_last_step = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(secret)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("user.totp_enroll", "user", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_totp_enabled(
        &self,
        actor: &Actor,
        now: i64,
        id: &str,
        enabled: bool,
        step: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let sql = if enabled {
            "UPDATE users SET totp_enabled = 1, totp_last_step = $1, updated_at = $2 WHERE id = $3"
        } else {
            "UPDATE users SET totp_enabled = 0, totp_secret = NULL, totp_last_step = $1, updated_at = $2 WHERE id = $3"
        };
        sqlx::query(sql).bind(step).bind(now).bind(id).execute(&mut *tx).await?;
        let action = if enabled { "user.totp_enable" } else { "user.totp_disable" };
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success(action, "user", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Remembers a TOTP step so the same code cannot be used twice.
    pub async fn consume_totp_step(&self, id: &str, step: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}

async fn insert_user(conn: &mut sqlx::AnyConnection, now: i64, new: &NewUser) -> Result<User> {
    // User names differ by more than case: `Alice` next to `alice` is a trap for approvers.
    let taken: Option<String> = sqlx::query_scalar("SELECT username FROM users WHERE LOWER(username) = LOWER($1)")
        .bind(&new.username)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(existing) = taken {
        return Err(StoreError::Conflict(format!(
            "a user named '{existing}' already exists; user names must differ by more than case"
        )));
    }
    let id = new_id();
    sqlx::query(
        "INSERT INTO users (id, username, display_name, email, password_hash, roles, time_zone, \
         time_zone_locked, password_changed_at, created_at, updated_at) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9,$9)",
    )
    .bind(&id)
    .bind(&new.username)
    .bind(&new.display_name)
    .bind(&new.email)
    .bind(&new.password_hash)
    .bind(encode_roles(&new.roles))
    .bind(&new.time_zone)
    .bind(flag(new.time_zone_locked))
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::unique(e, || format!("a user named '{}' already exists", new.username)))?;
    let mut roles = new.roles.clone();
    roles.sort();
    roles.dedup();
    Ok(User {
        id,
        username: new.username.clone(),
        display_name: new.display_name.clone(),
        email: new.email.clone(),
        email_set_by: None,
        roles,
        time_zone: new.time_zone.clone(),
        time_zone_locked: new.time_zone_locked,
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        totp_enabled: false,
        password_changed_at: now,
        created_at: now,
        updated_at: now,
        directory: None,
    })
}

/// A successful sign-in: the failure count and lockout reset, the TOTP step remembered.
/// A successful SSH proxy sign-in: written alone ([`Store::record_proxy_login`]) or in the
/// transaction that starts the session it opens ([`Store::start_session`]), which saves the
/// sign-in a durable commit.
#[derive(Debug, Clone)]
pub struct ProxyLogin {
    pub actor: Actor,
    /// When the user authenticated.
    pub at: i64,
    pub user_id: String,
    /// The one-time-code step used (remembered so that the code cannot be replayed).
    pub totp_step: Option<i64>,
    /// The registered key used, whose last-used time is updated.
    pub key_fingerprint: Option<String>,
    /// The proxy signed in to (`ssh`, `telnet`).
    pub via: &'static str,
}

/// Resets the failure count, remembers the TOTP step and the key's last use, and audits
/// `auth.login` (via the proxy).
pub(crate) async fn write_proxy_login(
    conn: &mut sqlx::AnyConnection,
    audit_key: &[u8],
    login: &ProxyLogin,
) -> Result<()> {
    reset_failures(&mut *conn, &login.user_id, login.totp_step).await?;
    if let Some(fingerprint) = &login.key_fingerprint {
        sqlx::query("UPDATE user_ssh_keys SET last_used_at = $1 WHERE fingerprint = $2 AND user_id = $3")
            .bind(login.at)
            .bind(fingerprint)
            .bind(&login.user_id)
            .execute(&mut *conn)
            .await?;
    }
    append(
        conn,
        audit_key,
        &login.actor,
        login.at,
        &NewEvent::success("auth.login", "user", &login.user_id).with_details(serde_json::json!({ "via": login.via })),
    )
    .await?;
    Ok(())
}

async fn reset_failures(conn: &mut sqlx::AnyConnection, user_id: &str, totp_step: Option<i64>) -> Result<()> {
    sqlx::query(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, \
         totp_last_step = COALESCE($1, totp_last_step) WHERE id = $2",
    )
    .bind(totp_step)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}
