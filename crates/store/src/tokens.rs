//! Login sessions and long-lived API tokens. Only SHA-256 hashes of tokens are stored; the
//! tokens are 256-bit random values, so a hash lookup reveals nothing useful by its timing.

use crate::audit::{append, NewEvent};
use crate::users::User;
use crate::{new_id, Actor, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

type TokenRow = (String, String, String, i64, Option<i64>, Option<i64>, Option<i64>);

fn token_from_row((id, user_id, name, created_at, expires_at, last_used_at, revoked_at): TokenRow) -> ApiToken {
    ApiToken { id, user_id, name, created_at, expires_at, last_used_at, revoked_at }
}

/// Who a bearer token belongs to and how it was issued.
#[derive(Debug, Clone)]
pub struct SessionPrincipal {
    pub user: User,
    /// `None` for a login session, the token id for an API token.
    pub api_token_id: Option<String>,
}

/// How often the "last used" time of an API token is written (microseconds).
const LAST_USED_RESOLUTION: i64 = 60_000_000;

impl Store {
    /// Resolves a bearer token's hash to its user, if the session or token is live.
    pub async fn principal(&self, token_hash: &str, now: i64) -> Result<Option<SessionPrincipal>> {
        let session: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM login_sessions WHERE token_hash = $1 AND expires_at > $2")
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.read)
                .await?;
        let (user_id, api_token_id) = match session {
            Some(user_id) => (user_id, None),
            None => {
                let row: Option<(String, String, Option<i64>)> = sqlx::query_as(
                    "SELECT id, user_id, last_used_at FROM api_tokens WHERE token_hash = $1 \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.read)
                .await?;
                let Some((id, user_id, last_used)) = row else { return Ok(None) };
                if last_used.is_none_or(|t| now - t >= LAST_USED_RESOLUTION) {
                    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(&id)
                        .execute(&self.write)
                        .await?;
                }
                (user_id, Some(id))
            }
        };
        let user = match self.user(&user_id).await {
            Ok(u) => u,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(SessionPrincipal { user, api_token_id }))
    }

    /// Ends a login session (logout). Audited.
    pub async fn end_login_session(&self, actor: &Actor, now: i64, token_hash: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM login_sessions WHERE token_hash = $1").bind(token_hash).execute(&mut *tx).await?;
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("auth.logout", "user", &actor.id)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_api_token(
        &self,
        actor: &Actor,
        now: i64,
        user_id: &str,
        name: &str,
        token_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<ApiToken> {
        portcullis_core::validate::name("name", name)?;
        let id = new_id();
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::unique(e, || format!("you already have a token named '{name}'")))?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("token.create", "api_token", &id).with_details(serde_json::json!({ "name": name })),
        )
        .await?;
        tx.commit().await?;
        Ok(ApiToken {
            id,
            user_id: user_id.into(),
            name: name.into(),
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        })
    }

    pub async fn api_tokens(&self, user_id: &str) -> Result<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, user_id, name, created_at, expires_at, last_used_at, revoked_at FROM api_tokens \
             WHERE user_id = $1 ORDER BY created_at, name",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(token_from_row).collect())
    }

    /// Revokes one of `user_id`'s tokens; another user's token id is "not found".
    pub async fn revoke_api_token(&self, actor: &Actor, now: i64, user_id: &str, token_id: &str) -> Result<ApiToken> {
        let mut tx = self.write.begin().await?;
        let row: Option<TokenRow> = sqlx::query_as(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND user_id = $3 \
             RETURNING id, user_id, name, created_at, expires_at, last_used_at, revoked_at",
        )
        .bind(now)
        .bind(token_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let token = token_from_row(row.ok_or(StoreError::NotFound("api token"))?);
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("token.revoke", "api_token", token_id)).await?;
        tx.commit().await?;
        Ok(token)
    }
}
