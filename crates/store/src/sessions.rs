//! Proxied sessions (R-SES-1, R-SES-11) and launch tokens. A session row is written when the
//! proxy has authorized the connection and closed when it ends; start and end are audit events
//! in the same transactions.

use portcullis_core::policy::AccessType;
use serde_json::json;

use crate::audit::{append, NewEvent};
use crate::requests::{AccessRequest, REQUEST_COLUMNS};
use crate::secrets::SealedRow;
use crate::{Actor, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub request_id: Option<String>,
    pub account_id: Option<String>,
    pub asset_id: Option<String>,
    /// `ssh`, later `telnet`, `rdp`.
    pub protocol: String,
    /// `address:port` of the client.
    pub client_addr: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    /// Client → target.
    pub bytes_up: i64,
    /// Target → client.
    pub bytes_down: i64,
    /// The recording's file name (in the recordings directory).
    pub recording: Option<String>,
    /// Under legal hold, with its reason: retention never deletes it.
    pub legal_hold: Option<String>,
    /// The node that holds (or held) the session.
    pub node: Option<String>,
}

/// What the proxy knows when a session starts.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub request_id: String,
    pub account_id: String,
    pub asset_id: String,
    pub protocol: String,
    pub client_addr: String,
    pub recording: String,
    /// The recording's data key, sealed by the vault.
    pub recording_key: SealedRow,
    /// The node that holds the session.
    pub node: String,
}

pub(crate) const COLUMNS: &str =
    "id, user_id, username, request_id, account_id, asset_id, protocol, client_addr, started_at, \
     ended_at, end_reason, bytes_up, bytes_down, recording, legal_hold, node";

pub(crate) type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(crate) fn from_row(r: Row) -> SessionRecord {
    SessionRecord {
        id: r.0,
        user_id: r.1,
        username: r.2,
        request_id: r.3,
        account_id: r.4,
        asset_id: r.5,
        protocol: r.6,
        client_addr: r.7,
        started_at: r.8,
        ended_at: r.9,
        end_reason: r.10,
        bytes_up: r.11,
        bytes_down: r.12,
        recording: r.13,
        legal_hold: r.14,
        node: r.15,
    }
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

fn unb64(text: &str) -> Result<Vec<u8>> {
    data_encoding::BASE64.decode(text.as_bytes()).map_err(|_| StoreError::Corrupt("recording key encoding".into()))
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub live: Option<bool>,
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    /// Only the sessions of this node (`""`: of no node — recorded before nodes were named).
    pub node: Option<String>,
    pub limit: i64,
}

impl Store {
    /// Opens a session row (audited `session.start`); with `login`, the sign-in that opened it
    /// is recorded in the same transaction, first.
    pub async fn start_session(
        &self,
        actor: &Actor,
        now: i64,
        s: &NewSession,
        login: Option<&crate::users::ProxyLogin>,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        if let Some(login) = login {
            crate::users::write_proxy_login(&mut tx, &self.audit_key, login).await?;
        }
        sqlx::query(
            "INSERT INTO sessions (id, user_id, username, request_id, account_id, asset_id, protocol, client_addr, started_at, \
             recording, key_ciphertext, key_nonce, key_wrapped, key_wrapped_nonce, key_kek_id, node) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
        )
        .bind(&s.id)
        .bind(&s.user_id)
        .bind(&s.username)
        .bind(&s.request_id)
        .bind(&s.account_id)
        .bind(&s.asset_id)
        .bind(&s.protocol)
        .bind(&s.client_addr)
        .bind(now)
        .bind(&s.recording)
        .bind(b64(&s.recording_key.ciphertext))
        .bind(b64(&s.recording_key.nonce))
        .bind(b64(&s.recording_key.wrapped_dek))
        .bind(b64(&s.recording_key.dek_nonce))
        .bind(&s.recording_key.kek_id)
        .bind(&s.node)
        .execute(&mut *tx)
        .await?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("session.start", "session", &s.id).with_details(json!({
                "request_id": s.request_id, "account_id": s.account_id, "asset_id": s.asset_id,
                "protocol": s.protocol, "client": s.client_addr, "node": s.node,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes a session (once; a second call changes nothing).
    pub async fn end_session(
        &self,
        actor: &Actor,
        now: i64,
        id: &str,
        reason: &str,
        bytes_up: i64,
        bytes_down: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2, bytes_up = $3, bytes_down = $4 WHERE id = $5 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(bytes_up)
        .bind(bytes_down)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            append(
                &mut tx,
                &self.audit_key,
                actor,
                now,
                &NewEvent::success("session.end", "session", id)
                    .with_details(json!({ "reason": reason, "bytes_up": bytes_up, "bytes_down": bytes_down })),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn session(&self, id: &str) -> Result<SessionRecord> {
        let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.map(from_row).ok_or(StoreError::NotFound("session"))
    }

    /// The sealed data key of a session's recording.
    pub async fn session_recording_key(&self, id: &str) -> Result<SealedRow> {
        let row: Option<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT key_ciphertext, key_nonce, key_wrapped, key_wrapped_nonce, key_kek_id FROM sessions WHERE id = $1 AND key_ciphertext IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        let (c, n, w, wn, k) = row.ok_or(StoreError::NotFound("session recording"))?;
        Ok(SealedRow {
            ciphertext: unb64(&c)?,
            nonce: unb64(&n)?,
            wrapped_dek: unb64(&w)?,
            dek_nonce: unb64(&wn)?,
            kek_id: k,
        })
    }

    /// Rewraps a recording key (KEK rotation), if still under `old_kek`.
    pub async fn rewrap_session_key(&self, id: &str, old_kek: &str, rewrapped: &SealedRow) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE sessions SET key_wrapped = $1, key_wrapped_nonce = $2, key_kek_id = $3 WHERE id = $4 AND key_kek_id = $5",
        )
        .bind(b64(&rewrapped.wrapped_dek))
        .bind(b64(&rewrapped.dek_nonce))
        .bind(&rewrapped.kek_id)
        .bind(id)
        .bind(old_kek)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Sessions whose recording key is wrapped by a KEK other than `kek_id` (for rotation).
    pub async fn session_keys_not_under(&self, kek_id: &str, limit: i64) -> Result<Vec<(String, SealedRow)>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE key_kek_id IS NOT NULL AND key_kek_id <> $1 ORDER BY id LIMIT $2",
        )
        .bind(kek_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for id in ids {
            let key = self.session_recording_key(&id).await?;
            out.push((id, key));
        }
        Ok(out)
    }

    /// Sessions of other nodes than `node` that ended after `after` (µs), oldest end first.
    pub async fn ended_elsewhere(&self, node: &str, after: i64, limit: i64) -> Result<Vec<SessionRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE ended_at > $1 AND recording IS NOT NULL AND COALESCE(node, '') <> $2 \
             ORDER BY ended_at, id LIMIT $3"
        ))
        .bind(after)
        .bind(node)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Live sessions with a recording held by other nodes than `node`, started after `after`
    /// (µs), oldest start first.
    pub async fn live_elsewhere(&self, node: &str, after: i64, limit: i64) -> Result<Vec<SessionRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE ended_at IS NULL AND started_at > $1 AND recording IS NOT NULL \
             AND COALESCE(node, '') NOT IN ($2, '') ORDER BY started_at, id LIMIT $3"
        ))
        .bind(after)
        .bind(node)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Ended sessions with a recording whose id sorts after `after`, by id: to go through all
    /// of them (the search index's catch-up).
    pub async fn recorded_sessions(&self, after: &str, limit: i64) -> Result<Vec<SessionRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE ended_at IS NOT NULL AND recording IS NOT NULL AND id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    pub async fn sessions(&self, q: &SessionQuery) -> Result<Vec<SessionRecord>> {
        let live = q.live.map(i64::from);
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE ($1 IS NULL OR ($1 = 1 AND ended_at IS NULL) OR ($1 = 0 AND ended_at IS NOT NULL)) \
             AND ($2 IS NULL OR request_id = $2) AND ($3 IS NULL OR user_id = $3) \
             AND ($4 IS NULL OR COALESCE(node, '') = $4) ORDER BY started_at DESC, id LIMIT $5"
        ))
        .bind(live)
        .bind(&q.request_id)
        .bind(&q.user_id)
        .bind(&q.node)
        .bind(q.limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// The user's requests of `access_type` for an account, newest first: the proxy decides
    /// from them whether to connect, and if not, says why.
    pub async fn requests_for_connect(
        &self,
        user_id: &str,
        account_id: &str,
        access_type: AccessType,
    ) -> Result<Vec<AccessRequest>> {
        let rows: Vec<crate::requests::Row> = sqlx::query_as(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE requester_id = $1 AND account_id = $2 AND access_type = $3 \
             AND removed = 0 ORDER BY created_at DESC, id LIMIT 20"
        ))
        .bind(user_id)
        .bind(account_id)
        .bind(access_type.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(AccessRequest::try_from).collect()
    }

    /// Stores a launch token (by hash; RDP tokens also sealed, for NLA) for a request.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_launch_token(
        &self,
        actor: &Actor,
        now: i64,
        token_hash: &str,
        sealed_token: Option<&str>,
        request_id: &str,
        user_id: &str,
        expires_at: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM launch_tokens WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO launch_tokens (token_hash, request_id, user_id, created_at, expires_at, sealed_token) VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(token_hash)
        .bind(request_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .bind(sealed_token)
        .execute(&mut *tx)
        .await?;
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("session.launch_token", "request", request_id))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A user's unused, unexpired sealed (RDP) launch tokens, newest first, at most `limit`:
    /// (token hash, sealed token).
    pub async fn sealed_launch_tokens(&self, now: i64, user_id: &str, limit: i64) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT token_hash, sealed_token FROM launch_tokens WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2 AND sealed_token IS NOT NULL ORDER BY created_at DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    /// Consumes a launch token: (request id, user id) if it exists, is unused and unexpired.
    pub async fn use_launch_token(&self, now: i64, token_hash: &str) -> Result<Option<(String, String)>> {
        let mut tx = self.write.begin().await?;
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT request_id, user_id FROM launch_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            let n = sqlx::query(
                "UPDATE launch_tokens SET used_at = $1, sealed_token = NULL WHERE token_hash = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(token_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Ok(None);
            }
        }
        tx.commit().await?;
        Ok(row)
    }
}

/// A user's registered SSH public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKey {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

type KeyRow = (String, String, String, String, String, i64, Option<i64>);

fn key_from_row(r: KeyRow) -> UserKey {
    UserKey { id: r.0, user_id: r.1, name: r.2, public_key: r.3, fingerprint: r.4, created_at: r.5, last_used_at: r.6 }
}

const KEY_COLUMNS: &str = "id, user_id, name, public_key, fingerprint, created_at, last_used_at";

impl Store {
    pub async fn add_user_key(
        &self,
        actor: &Actor,
        now: i64,
        user_id: &str,
        name: &str,
        public_key: &str,
        fingerprint: &str,
    ) -> Result<UserKey> {
        let key = UserKey {
            id: crate::new_id(),
            user_id: user_id.into(),
            name: name.into(),
            public_key: public_key.into(),
            fingerprint: fingerprint.into(),
            created_at: now,
            last_used_at: None,
        };
        let mut tx = self.write.begin().await?;
        sqlx::query(&format!("INSERT INTO user_ssh_keys ({KEY_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,NULL)"))
            .bind(&key.id)
            .bind(&key.user_id)
            .bind(&key.name)
            .bind(&key.public_key)
            .bind(&key.fingerprint)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, || "this key is already registered".to_owned()))?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("user.ssh_key_add", "user", user_id)
                .with_details(json!({ "name": name, "fingerprint": fingerprint })),
        )
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    pub async fn user_keys(&self, user_id: &str) -> Result<Vec<UserKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM user_ssh_keys WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(key_from_row).collect())
    }

    pub async fn delete_user_key(&self, actor: &Actor, now: i64, user_id: &str, id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("DELETE FROM user_ssh_keys WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("SSH key"));
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("user.ssh_key_remove", "user", user_id).with_details(json!({ "key_id": id })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The owner of a key, by fingerprint (its last use is written with the sign-in).
    pub async fn user_key_owner(&self, fingerprint: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM user_ssh_keys WHERE fingerprint = $1")
            .bind(fingerprint)
            .fetch_optional(&self.read)
            .await?)
    }
}
