//! Storage of credential versions. The store sees only sealed material (ciphertext, wrapped
//! data key, nonces, the KEK id); sealing and opening happen in the vault crate, which the
//! caller passes in as a closure so that the version number bound into the ciphertext is the
//! one this transaction assigns.

use serde_json::json;

use crate::audit::{append, NewEvent};
use crate::{Actor, Result, Store, StoreError};

/// One stored secret version, still sealed. Field meanings follow `portcullis_vault::Sealed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRow {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub wrapped_dek: Vec<u8>,
    pub dek_nonce: Vec<u8>,
    pub kek_id: String,
}

/// A version's metadata (what an administrator may see).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub account_id: String,
    /// `password` or `ssh_key`.
    pub kind: String,
    pub version: i64,
    pub public_key: Option<String>,
    /// `manual`, `generated`, `rotation`, `check-in`, …
    pub reason: String,
    pub set_by: String,
    pub created_at: i64,
    pub kek_id: String,
    /// `active` (in use; the highest active version is current), `staged` (being changed on
    /// the target), or `failed` (a change that did not verify).
    pub status: String,
    /// Why a `failed` version failed.
    pub error: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

fn unb64(text: &str) -> Result<Vec<u8>> {
    data_encoding::BASE64.decode(text.as_bytes()).map_err(|_| StoreError::Corrupt("secret encoding".into()))
}

type VersionRow = (String, String, i64, Option<String>, String, String, i64, String, String, Option<String>);

/// Which secret version a row is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKey {
    pub account_id: String,
    pub kind: String,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    account_id: String,
    kind: String,
    version: i64,
    ciphertext: String,
    nonce: String,
    wrapped_dek: String,
    dek_nonce: String,
    kek_id: String,
}

impl Store {
    /// Adds the next version of an account's secret of `kind`. `seal` is called with the
    /// version number and returns the sealed material.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_secret_version(
        &self,
        actor: &Actor,
        now: i64,
        account_id: &str,
        kind: &str,
        reason: &str,
        public_key: Option<&str>,
        seal: impl FnOnce(i64) -> SealedRow,
    ) -> Result<SecretVersion> {
        self.insert_version(actor, now, account_id, kind, reason, public_key, "active", seal).await
    }

    /// Stores a new credential as `staged`: kept, but not current, until
    /// [`Store::activate_secret_version`] after the target accepted and verified it. Refused
    /// (`Conflict`) while another change of the same credential is staged.
    #[allow(clippy::too_many_arguments)]
    pub async fn stage_secret_version(
        &self,
        actor: &Actor,
        now: i64,
        account_id: &str,
        kind: &str,
        reason: &str,
        public_key: Option<&str>,
        seal: impl FnOnce(i64) -> SealedRow,
    ) -> Result<SecretVersion> {
        self.insert_version(actor, now, account_id, kind, reason, public_key, "staged", seal).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_version(
        &self,
        actor: &Actor,
        now: i64,
        account_id: &str,
        kind: &str,
        reason: &str,
        public_key: Option<&str>,
        status: &str,
        seal: impl FnOnce(i64) -> SealedRow,
    ) -> Result<SecretVersion> {
        let mut tx = self.write.begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("account"));
        }
        // The account row lock (PostgreSQL) serialises concurrent versions of one account.
        sqlx::query("UPDATE accounts SET updated_at = updated_at WHERE id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM secret_versions WHERE account_id = $1 AND kind = $2")
                .bind(account_id)
                .bind(kind)
                .fetch_one(&mut *tx)
                .await?;
        if status == "staged" {
            let staged: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM secret_versions WHERE account_id = $1 AND kind = $2 AND status = 'staged'",
            )
            .bind(account_id)
            .bind(kind)
            .fetch_optional(&mut *tx)
            .await?;
            if staged.is_some() {
                return Err(StoreError::Conflict("a change of this credential is already in progress".into()));
            }
        }
        let version = last.unwrap_or(0) + 1;
        let sealed = seal(version);
        sqlx::query(
            "INSERT INTO secret_versions (account_id, kind, version, ciphertext, nonce, wrapped_dek, dek_nonce, kek_id, public_key, reason, set_by, created_at, status) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
        )
        .bind(account_id)
        .bind(kind)
        .bind(version)
        .bind(b64(&sealed.ciphertext))
        .bind(b64(&sealed.nonce))
        .bind(b64(&sealed.wrapped_dek))
        .bind(b64(&sealed.dek_nonce))
        .bind(&sealed.kek_id)
        .bind(public_key)
        .bind(reason)
        .bind(&actor.name)
        .bind(now)
        .bind(status)
        .execute(&mut *tx)
        .await?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success(
                if status == "staged" { "credential.stage" } else { "credential.set" },
                "account",
                account_id,
            )
            .with_details(json!({ "kind": kind, "version": version, "reason": reason })),
        )
        .await?;
        tx.commit().await?;
        Ok(SecretVersion {
            account_id: account_id.into(),
            kind: kind.into(),
            version,
            public_key: public_key.map(str::to_owned),
            reason: reason.into(),
            set_by: actor.name.clone(),
            created_at: now,
            kek_id: sealed.kek_id,
            status: status.into(),
            error: None,
        })
    }

    /// The versions of an account's secrets, newest first (metadata only).
    pub async fn secret_versions(&self, account_id: &str) -> Result<Vec<SecretVersion>> {
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT account_id, kind, version, public_key, reason, set_by, created_at, kek_id, status, error FROM secret_versions \
             WHERE account_id = $1 ORDER BY kind, version DESC",
        )
        .bind(account_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(account_id, kind, version, public_key, reason, set_by, created_at, kek_id, status, error)| {
                SecretVersion {
                    account_id,
                    kind,
                    version,
                    public_key,
                    reason,
                    set_by,
                    created_at,
                    kek_id,
                    status,
                    error,
                }
            })
            .collect())
    }

    /// The current (highest active) version of an account's secret of `kind`, sealed.
    pub async fn current_secret(&self, account_id: &str, kind: &str) -> Result<Option<(i64, SealedRow)>> {
        self.secret_with_status(account_id, kind, "active").await
    }

    /// The staged version of an account's secret of `kind`, if a change is under way (or was
    /// interrupted).
    pub async fn staged_secret(&self, account_id: &str, kind: &str) -> Result<Option<(i64, SealedRow)>> {
        self.secret_with_status(account_id, kind, "staged").await
    }

    /// The public key stored with a version (SSH keys).
    pub async fn secret_public_key(&self, account_id: &str, kind: &str, version: i64) -> Result<Option<String>> {
        let key: Option<Option<String>> = sqlx::query_scalar(
            "SELECT public_key FROM secret_versions WHERE account_id = $1 AND kind = $2 AND version = $3",
        )
        .bind(account_id)
        .bind(kind)
        .bind(version)
        .fetch_optional(&self.read)
        .await?;
        Ok(key.flatten())
    }

    /// A staged version is now the one on the target: it becomes active (and current).
    pub async fn activate_secret_version(
        &self,
        actor: &Actor,
        now: i64,
        key: &SecretKey,
        details: serde_json::Value,
    ) -> Result<()> {
        self.finish_staged(
            actor,
            now,
            key,
            "active",
            None,
            NewEvent::success("credential.change", "account", &key.account_id).with_details(details),
        )
        .await
    }

    /// A staged version did not verify: kept for the record as `failed`, never current.
    pub async fn fail_secret_version(
        &self,
        actor: &Actor,
        now: i64,
        key: &SecretKey,
        error: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        let event = NewEvent::success("credential.change", "account", &key.account_id)
            .with_outcome(crate::Outcome::Failure)
            .with_details(details);
        self.finish_staged(actor, now, key, "failed", Some(error), event).await
    }

    async fn finish_staged(
        &self,
        actor: &Actor,
        now: i64,
        key: &SecretKey,
        status: &str,
        error: Option<&str>,
        event: NewEvent,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE secret_versions SET status = $1, error = $2 WHERE account_id = $3 AND kind = $4 AND version = $5 AND status = 'staged'",
        )
        .bind(status)
        .bind(error)
        .bind(&key.account_id)
        .bind(&key.kind)
        .bind(key.version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::Conflict("the staged credential version was already settled".into()));
        }
        append(&mut tx, &self.audit_key, actor, now, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn secret_with_status(&self, account_id: &str, kind: &str, status: &str) -> Result<Option<(i64, SealedRow)>> {
        let row: Option<(i64, String, String, String, String, String)> = sqlx::query_as(
            "SELECT version, ciphertext, nonce, wrapped_dek, dek_nonce, kek_id FROM secret_versions \
             WHERE account_id = $1 AND kind = $2 AND status = $3 ORDER BY version DESC LIMIT 1",
        )
        .bind(account_id)
        .bind(kind)
        .bind(status)
        .fetch_optional(&self.read)
        .await?;
        row.map(|(v, c, n, w, dn, k)| {
            Ok((
                v,
                SealedRow {
                    ciphertext: unb64(&c)?,
                    nonce: unb64(&n)?,
                    wrapped_dek: unb64(&w)?,
                    dek_nonce: unb64(&dn)?,
                    kek_id: k,
                },
            ))
        })
        .transpose()
    }

    /// The ids of the KEKs that wrap stored credentials and recording keys.
    pub async fn secret_kek_ids(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT kek_id FROM secret_versions UNION SELECT key_kek_id FROM sessions WHERE key_kek_id IS NOT NULL ORDER BY 1",
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// Rows still wrapped by a KEK other than `kek_id`, for rotation (a page at a time).
    pub async fn secrets_not_under(&self, kek_id: &str, limit: i64) -> Result<Vec<(SecretKey, SealedRow)>> {
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT account_id, kind, version, ciphertext, nonce, wrapped_dek, dek_nonce, kek_id FROM secret_versions \
             WHERE kek_id <> $1 ORDER BY account_id, kind, version LIMIT $2",
        )
        .bind(kek_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    SecretKey { account_id: r.account_id, kind: r.kind, version: r.version },
                    SealedRow {
                        ciphertext: unb64(&r.ciphertext)?,
                        nonce: unb64(&r.nonce)?,
                        wrapped_dek: unb64(&r.wrapped_dek)?,
                        dek_nonce: unb64(&r.dek_nonce)?,
                        kek_id: r.kek_id,
                    },
                ))
            })
            .collect()
    }

    /// Replaces one row's wrapped data key with `rewrapped`'s (the ciphertext stays), if the
    /// row is still under `old_kek`. One row per transaction, so a rotation stopped at any
    /// point leaves every row consistent.
    pub async fn rewrap_secret(&self, key: &SecretKey, old_kek: &str, rewrapped: &SealedRow) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE secret_versions SET wrapped_dek = $1, dek_nonce = $2, kek_id = $3 \
             WHERE account_id = $4 AND kind = $5 AND version = $6 AND kek_id = $7",
        )
        .bind(b64(&rewrapped.wrapped_dek))
        .bind(b64(&rewrapped.dek_nonce))
        .bind(&rewrapped.kek_id)
        .bind(&key.account_id)
        .bind(&key.kind)
        .bind(key.version)
        .bind(old_kek)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
