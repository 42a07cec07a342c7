//! Password resets by set-password link. An administrator's reset (or an invitation) puts a
//! password nobody knows in place, ends the user's sessions and API tokens, and queues a
//! `password_reset` notification; the mailer issues the link's token when it sends the mail,
//! so the token exists only in the user's mailbox (its SHA-256 here). The link sets a new
//! password once, before it expires.

use crate::audit::{append, NewEvent};
use crate::users::replace_password;
use crate::{new_id, Actor, Result, Store, StoreError};

/// A stored link: whose, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReset {
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// An administrator's reset of `user_id` (or an invitation, `invitation`): the password is
    /// replaced by `unusable_hash` (of a random secret nobody keeps), sessions and API tokens
    /// end, earlier links stop working, lockout is lifted, the user is notified (the mail
    /// carries the new link; `notify` false: the link is handed over another way), and the
    /// reset is audited as an alert.
    pub async fn begin_password_reset(
        &self,
        actor: &Actor,
        now: i64,
        user_id: &str,
        unusable_hash: &str,
        details: serde_json::Value,
        notify: bool,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        replace_password(&mut tx, user_id, unusable_hash, now, None).await?;
        sqlx::query("DELETE FROM password_resets WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        if notify {
            sqlx::query(
                "INSERT INTO notification_outbox (id, event, request_id, recipients, created_at, details) \
                 VALUES ($1,'password_reset',$2,$2,$3,$4)",
            )
            .bind(new_id())
            .bind(user_id)
            .bind(now)
            .bind(details.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let mut audit = details;
        audit["alert"] = serde_json::json!(true);
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("user.password_reset", "user", user_id).with_details(audit),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Keeps a new link's token hash for `user_id`, valid until `expires_at`.
    pub async fn issue_password_reset(&self, token_hash: &str, user_id: &str, now: i64, expires_at: i64) -> Result<()> {
        sqlx::query("INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ($1,$2,$3,$4)")
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The link a token hash stands for, if it was issued and not yet used.
    pub async fn password_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        let row: Option<(String, i64, i64)> =
            sqlx::query_as("SELECT user_id, created_at, expires_at FROM password_resets WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.write)
                .await?;
        Ok(row.map(|(user_id, created_at, expires_at)| PasswordReset { user_id, created_at, expires_at }))
    }

    /// Uses a link: the new password is set, every link of the user is spent, every session and
    /// token ends. `NotFound` when the link was used meanwhile.
    pub async fn complete_password_reset(
        &self,
        actor: &Actor,
        now: i64,
        token_hash: &str,
        password_hash: &str,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let user_id: Option<String> = sqlx::query_scalar(
            "DELETE FROM password_resets WHERE token_hash = $1 AND expires_at > $2 RETURNING user_id",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let user_id = user_id.ok_or(StoreError::NotFound("set-password link"))?;
        sqlx::query("DELETE FROM password_resets WHERE user_id = $1").bind(&user_id).execute(&mut *tx).await?;
        replace_password(&mut tx, &user_id, password_hash, now, None).await?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("user.password", "user", &user_id)
                .with_details(serde_json::json!({ "by": "set-password link" })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets links that expired before `before` (µs).
    pub async fn purge_password_resets(&self, before: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM password_resets WHERE expires_at < $1").bind(before).execute(&self.write).await?;
        Ok(done.rows_affected())
    }
}
