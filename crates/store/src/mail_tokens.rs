//! Tokens of approval mails: the approver who got the mail answers it, once, for the level the
//! request was at, before it expires. Only the token's hash is stored (the caller hashes).

use crate::{Result, Store};

/// A token's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailToken {
    /// `reply` (answering by mail) or `link` (the web UI's approval page).
    pub kind: String,
    pub request_id: String,
    pub level: i64,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// kind, request_id, level, user_id, created_at, expires_at, used_at.
type TokenRow = (String, String, i64, String, i64, i64, Option<i64>);

impl Store {
    /// Keeps a new token's hash for `user_id`'s decision on `request_id` at `level`.
    #[allow(clippy::too_many_arguments)]
    pub async fn issue_mail_token(
        &self,
        token_hash: &str,
        kind: &str,
        request_id: &str,
        level: i64,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO mail_tokens (token_hash, kind, request_id, level, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_hash)
        .bind(kind)
        .bind(request_id)
        .bind(level)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.write)
        .await?;
        // Tokens long expired are of no use to anyone.
        sqlx::query("DELETE FROM mail_tokens WHERE expires_at < $1")
            .bind(now - 30 * 86_400_000_000)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn mail_token(&self, token_hash: &str) -> Result<Option<MailToken>> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT kind, request_id, level, user_id, created_at, expires_at, used_at FROM mail_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.map(|(kind, request_id, level, user_id, created_at, expires_at, used_at)| MailToken {
            kind,
            request_id,
            level,
            user_id,
            created_at,
            expires_at,
            used_at,
        }))
    }

    /// Uses the token up: `true` for the one caller that did (it was unused and unexpired).
    pub async fn use_mail_token(&self, token_hash: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE mail_tokens SET used_at = $1 WHERE token_hash = $2 AND kind = 'reply' AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
