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
    /// Keeps the hashes of new tokens (kind, hash) for `user_id`'s decision on `request_id` at
    /// `level`, in one statement.
    #[allow(clippy::too_many_arguments)]
    pub async fn issue_mail_tokens(
        &self,
        tokens: &[(&str, &str)],
        request_id: &str,
        level: i64,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> =
            (0..tokens.len()).map(|i| format!("(${}, ${}, $1, $2, $3, $4, $5)", 6 + 2 * i, 7 + 2 * i)).collect();
        let sql = format!(
            "INSERT INTO mail_tokens (kind, token_hash, request_id, level, user_id, created_at, expires_at) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(request_id).bind(level).bind(user_id).bind(now).bind(expires_at);
        for (kind, hash) in tokens {
            q = q.bind(*kind).bind(*hash);
        }
        q.execute(&self.write).await?;
        Ok(())
    }

    /// Forgets tokens that expired before `before` (µs).
    pub async fn purge_mail_tokens(&self, before: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM mail_tokens WHERE expires_at < $1").bind(before).execute(&self.write).await?;
        Ok(done.rows_affected())
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
