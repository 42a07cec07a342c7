//! Single sign-on sign-ins in progress (`sso_logins`): started, answered by the provider
//! (a one-time grant for the user), redeemed for a login session.

use crate::{Result, Store};

/// A sign-in in progress.
#[derive(Clone, sqlx::FromRow)]
pub struct SsoLogin {
    pub state_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub client: String,
    pub next: String,
    pub cli_challenge: Option<String>,
    pub grant_hash: Option<String>,
    pub user_id: Option<String>,
    pub mfa: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for SsoLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoLogin").field("client", &self.client).field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

const COLUMNS: &str =
    "state_hash, nonce, pkce_verifier, client, next, cli_challenge, grant_hash, user_id, mfa, created_at, expires_at";

impl Store {
    pub async fn sso_begin(&self, login: &SsoLogin) -> Result<()> {
        sqlx::query(&format!("INSERT INTO sso_logins ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,NULL,NULL,0,$7,$8)"))
            .bind(&login.state_hash)
            .bind(&login.nonce)
            .bind(&login.pkce_verifier)
            .bind(&login.client)
            .bind(&login.next)
            .bind(&login.cli_challenge)
            .bind(login.created_at)
            .bind(login.expires_at)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The provider's answer arrived: the unexpired sign-in with this state, not answered
    /// before. Its PKCE verifier is wiped at once (a code is exchanged once).
    pub async fn sso_answered(&self, state_hash: &str, now: i64) -> Result<Option<SsoLogin>> {
        let row: Option<SsoLogin> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sso_logins WHERE state_hash = $1 AND expires_at > $2 AND pkce_verifier <> ''"
        ))
        .bind(state_hash)
        .bind(now)
        .fetch_optional(&self.write)
        .await?;
        if row.is_some() {
            let n =
                sqlx::query("UPDATE sso_logins SET pkce_verifier = '' WHERE state_hash = $1 AND pkce_verifier <> ''")
                    .bind(state_hash)
                    .execute(&self.write)
                    .await?
                    .rows_affected();
            if n == 0 {
                return Ok(None);
            }
        }
        Ok(row)
    }

    /// Records who the provider said signed in, with the grant that opens their session.
    pub async fn sso_grant(&self, state_hash: &str, grant_hash: &str, user_id: &str, mfa: bool) -> Result<()> {
        sqlx::query("UPDATE sso_logins SET grant_hash = $1, user_id = $2, mfa = $3 WHERE state_hash = $4")
            .bind(grant_hash)
            .bind(user_id)
            .bind(i64::from(mfa))
            .bind(state_hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The unexpired sign-in a grant stands for.
    pub async fn sso_by_grant(&self, grant_hash: &str, now: i64) -> Result<Option<SsoLogin>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM sso_logins WHERE grant_hash = $1 AND expires_at > $2"))
            .bind(grant_hash)
            .bind(now)
            .fetch_optional(&self.write)
            .await?)
    }

    /// Ends a sign-in (its session is open, or it failed for good). False if it was ended
    /// already (a grant opens one session).
    pub async fn sso_end(&self, state_hash: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM sso_logins WHERE state_hash = $1")
            .bind(state_hash)
            .execute(&self.write)
            .await?
            .rows_affected()
            > 0)
    }

    /// How many sign-ins are in progress (unexpired).
    pub async fn sso_pending(&self, now: i64) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM sso_logins WHERE expires_at > $1")
            .bind(now)
            .fetch_one(&self.read)
            .await?)
    }

    pub async fn purge_sso_logins(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sso_logins WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.write)
            .await?
            .rows_affected())
    }
}
