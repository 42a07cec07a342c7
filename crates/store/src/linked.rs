//! Linked accounts: a user's own directory accounts (R-REQ-2, Linked Account mode).

use portcullis_core::inventory::Platform;

use crate::audit::{append, NewEvent};
use crate::{Actor, Result, Store, StoreError};

impl Store {
    /// Links `account_id` (an account of a directory asset) to `user_id`.
    pub async fn link_account(
        &self,
        actor: &Actor,
        now: i64,
        user_id: &str,
        account_id: &str,
        link: bool,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let user: Option<String> = sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        user.ok_or(StoreError::NotFound("user"))?;
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT a.name, s.name, s.platform FROM accounts a JOIN assets s ON s.id = a.asset_id WHERE a.id = $1",
        )
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (account, asset, platform) = row.ok_or(StoreError::NotFound("account"))?;
        if link && Platform::parse(&platform) != Some(Platform::Directory) {
            return Err(StoreError::Invalid(portcullis_core::ValidationError::new(
                "account_id",
                format!(
                    "{account}@{asset} is not a directory account; only accounts of a directory asset (platform directory) can be linked"
                ),
            )));
        }
        let n = if link {
            sqlx::query(
                "INSERT INTO linked_accounts (user_id, account_id, added_by, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(user_id)
            .bind(account_id)
            .bind(&actor.id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            sqlx::query("DELETE FROM linked_accounts WHERE user_id = $1 AND account_id = $2")
                .bind(user_id)
                .bind(account_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        };
        if n > 0 {
            let action = if link { "user.link_account" } else { "user.unlink_account" };
            let details = serde_json::json!({ "account_id": account_id, "account": format!("{account}@{asset}") });
            append(
                &mut tx,
                &self.audit_key,
                actor,
                now,
                &NewEvent::success(action, "user", user_id).with_details(details),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The ids of a user's linked accounts, by account name.
    pub async fn linked_accounts(&self, user_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT l.account_id FROM linked_accounts l JOIN accounts a ON a.id = l.account_id WHERE l.user_id = $1 \
             ORDER BY a.name",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?)
    }
}
