//! The queue of automatic credential changes (R-VAULT-4) and password profiles.
//!
//! A change is queued in the same transaction as the check-in, expiry or revocation that ends
//! a used request whose policy says "change password after check-in". A worker claims due
//! changes (compare-and-set `pending` → `running`), and settles each as `succeeded`, back to
//! `pending` with a later `due_at` (retry), or `failed` (notified). A change left `running` by
//! a crash is put back to `pending` by [`Store::recover_changes`].

use portcullis_core::role::Role;
use serde_json::json;

use crate::audit::{append, NewEvent};
use crate::{new_id, Actor, Outcome, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialChange {
    pub id: String,
    pub account_id: String,
    pub kind: String,
    /// `check-in`, `expiry` or `revocation`.
    pub reason: String,
    pub request_id: Option<String>,
    /// `pending`, `running`, `succeeded` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub due_at: i64,
    pub last_error: Option<String>,
    /// The version that became current, once succeeded.
    pub version: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, account_id, kind, reason, request_id, state, attempts, due_at, last_error, version, created_at, updated_at";

type Row = (String, String, String, String, Option<String>, String, i64, i64, Option<String>, Option<i64>, i64, i64);

fn from_row(r: Row) -> CredentialChange {
    let (
        id,
        account_id,
        kind,
        reason,
        request_id,
        state,
        attempts,
        due_at,
        last_error,
        version,
        created_at,
        updated_at,
    ) = r;
    CredentialChange {
        id,
        account_id,
        kind,
        reason,
        request_id,
        state,
        attempts,
        due_at,
        last_error,
        version,
        created_at,
        updated_at,
    }
}

pub(crate) fn change_sql() -> &'static str {
    "INSERT INTO credential_changes (id, account_id, kind, reason, request_id, state, attempts, due_at, created_at, updated_at) \
     VALUES ($1,$2,$3,$4,$5,'pending',0,$6,$6,$6)"
}

impl Store {
    /// Changes due at `now`, oldest first.
    pub async fn due_changes(&self, now: i64, limit: i64) -> Result<Vec<CredentialChange>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM credential_changes WHERE state = 'pending' AND due_at <= $1 ORDER BY due_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// When the next pending change is due.
    pub async fn next_change_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MIN(due_at) FROM credential_changes WHERE state = 'pending'")
            .fetch_one(&self.read)
            .await?)
    }

    /// Takes a pending change for this worker; `false` if another took it first.
    pub async fn claim_change(&self, id: &str, now: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE credential_changes SET state = 'running', attempts = attempts + 1, updated_at = $1 \
             WHERE id = $2 AND state = 'pending'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Changes left `running` since before `stale_before` (a crash) go back to `pending`.
    pub async fn recover_changes(&self, stale_before: i64) -> Result<u64> {
        Ok(sqlx::query("UPDATE credential_changes SET state = 'pending' WHERE state = 'running' AND updated_at < $1")
            .bind(stale_before)
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    pub async fn complete_change(&self, id: &str, now: i64, version: i64) -> Result<()> {
        sqlx::query(
            "UPDATE credential_changes SET state = 'succeeded', version = $1, last_error = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(version)
        .bind(now)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// An attempt failed; try again at `retry_at`, or (`None`) give up: the change is
    /// `failed`, audited, and `recipients` are notified through the outbox.
    pub async fn change_attempt_failed(
        &self,
        change: &CredentialChange,
        now: i64,
        error: &str,
        retry_at: Option<i64>,
        recipients: &[String],
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let (state, due) = match retry_at {
            Some(at) => ("pending", at),
            None => ("failed", change.due_at),
        };
        sqlx::query(
            "UPDATE credential_changes SET state = $1, due_at = $2, last_error = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(state)
        .bind(due)
        .bind(error)
        .bind(now)
        .bind(&change.id)
        .execute(&mut *tx)
        .await?;
        if retry_at.is_none() {
            append(
                &mut tx,
                &self.audit_key,
                &Actor::system(),
                now,
                &NewEvent::success("credential.change_abandoned", "account", &change.account_id)
                    .with_outcome(Outcome::Failure)
                    .with_details(json!({ "kind": change.kind, "reason": change.reason, "attempts": change.attempts, "error": error, "request_id": change.request_id })),
            )
            .await?;
            if !recipients.is_empty() {
                sqlx::query(
                    "INSERT INTO notification_outbox (id, event, request_id, recipients, created_at) VALUES ($1,$2,$3,$4,$5)",
                )
                .bind(new_id())
                .bind("credential_change_failed")
                .bind(change.request_id.clone().unwrap_or_default())
                .bind(recipients.join(","))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// An account's automatic changes, newest first.
    pub async fn credential_changes(&self, account_id: &str) -> Result<Vec<CredentialChange>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM credential_changes WHERE account_id = $1 ORDER BY created_at DESC, id LIMIT 200"
        ))
        .bind(account_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Queues a notification (the outbox) about something that is not a request.
    pub async fn notify(&self, now: i64, event: &str, subject_id: &str, recipients: &[String]) -> Result<()> {
        self.notify_with(now, event, subject_id, recipients, None).await
    }

    /// [`Store::notify`] with what the notification needs besides its subject.
    pub async fn notify_with(
        &self,
        now: i64,
        event: &str,
        subject_id: &str,
        recipients: &[String],
        details: Option<&serde_json::Value>,
    ) -> Result<()> {
        if recipients.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO notification_outbox (id, event, request_id, recipients, created_at, details) \
             VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(new_id())
        .bind(event)
        .bind(subject_id)
        .bind(recipients.join(","))
        .bind(now)
        .bind(details.map(|d| d.to_string()))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Enabled users holding any of `roles`.
    pub async fn users_with_any_role(&self, roles: &[Role]) -> Result<Vec<String>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, roles FROM users WHERE disabled = 0 AND roles <> '' ORDER BY id")
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, r)| {
                portcullis_core::role::decode_roles(r).unwrap_or_default().iter().any(|x| roles.contains(x))
            })
            .map(|(id, _)| id)
            .collect())
    }

    /// A password profile (JSON as the API defines it) for `scope` (`platform:<p>` or
    /// `asset:<id>`).
    pub async fn password_profile(&self, scope: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT profile FROM password_profiles WHERE scope = $1")
            .bind(scope)
            .fetch_optional(&self.read)
            .await?)
    }

    pub async fn password_profiles(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as("SELECT scope, profile FROM password_profiles ORDER BY scope").fetch_all(&self.read).await?)
    }

    pub async fn put_password_profile(&self, actor: &Actor, now: i64, scope: &str, profile: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO password_profiles (scope, profile, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (scope) DO UPDATE SET profile = excluded.profile, updated_at = excluded.updated_at",
        )
        .bind(scope)
        .bind(profile)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let details: serde_json::Value = serde_json::from_str(profile).unwrap_or_default();
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("password_profile.set", "password_profile", scope).with_details(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_password_profile(&self, actor: &Actor, now: i64, scope: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("DELETE FROM password_profiles WHERE scope = $1")
            .bind(scope)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("password profile"));
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("password_profile.delete", "password_profile", scope),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pins an asset's SSH host key the first time a connector sees it (only if none is set).
    pub async fn pin_host_key(&self, now: i64, asset_id: &str, host_key: &str) -> Result<bool> {
        self.pin(now, asset_id, Pin::HostKey, host_key).await
    }

    /// Pins the TLS certificate of an asset's RDP service on first use (only while none is
    /// pinned); audited `asset.tls_fingerprint_pinned`. `true` when this call pinned it.
    pub async fn pin_tls_fingerprint(&self, now: i64, asset_id: &str, fingerprint: &str) -> Result<bool> {
        self.pin(now, asset_id, Pin::TlsFingerprint, fingerprint).await
    }

    /// Sets the pinned column if it is empty, and audits `asset.COLUMN_pinned` when it did.
    async fn pin(&self, now: i64, asset_id: &str, what: Pin, value: &str) -> Result<bool> {
        let (column, action) = match what {
            Pin::HostKey => ("host_key", "asset.host_key_pinned"),
            Pin::TlsFingerprint => ("tls_fingerprint", "asset.tls_fingerprint_pinned"),
        };
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(&format!(
            "UPDATE assets SET {column} = $1, updated_at = $2 WHERE id = $3 AND {column} IS NULL"
        ))
        .bind(value)
        .bind(now)
        .bind(asset_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            let event = NewEvent::success(action, "asset", asset_id).with_details(json!({ column: value }));
            append(&mut tx, &self.audit_key, &Actor::system(), now, &event).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }
}

/// What identifies an asset's service, pinned on first use.
#[derive(Clone, Copy)]
enum Pin {
    HostKey,
    TlsFingerprint,
}
