//! Retention of sessions (R-SES-13): legal holds, the sessions a policy's retention has
//! expired, and deleting a session's metadata (the audit keeps that it existed and was deleted).

use crate::audit::{append, NewEvent};
use crate::sessions::{from_row, Row, COLUMNS};
use crate::{Actor, Result, SessionRecord, Store, StoreError};

impl Store {
    /// Puts a session under legal hold (`Some(reason)`) or releases it (`None`). Audited.
    pub async fn set_legal_hold(&self, actor: &Actor, now: i64, id: &str, reason: Option<&str>) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("UPDATE sessions SET legal_hold = $1 WHERE id = $2")
            .bind(reason)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("session"));
        }
        let action = if reason.is_some() { "session.legal_hold" } else { "session.legal_hold_release" };
        let event = NewEvent::success(action, "session", id).with_details(serde_json::json!({ "reason": reason }));
        append(&mut tx, &self.audit_key, actor, now, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The legal hold's reason, if the session is held.
    pub async fn legal_hold(&self, id: &str) -> Result<Option<String>> {
        let row: Option<Option<String>> = sqlx::query_scalar("SELECT legal_hold FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.ok_or(StoreError::NotFound("session"))
    }

    /// Ended sessions of requests under `policy_id` that ended before `before` and are not
    /// held.
    pub async fn sessions_past_retention(
        &self,
        policy_id: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<SessionRecord>> {
        let columns = COLUMNS.split(", ").map(|c| format!("s.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {columns} FROM sessions s JOIN access_requests r ON r.id = s.request_id \
             WHERE r.policy_id = $1 AND s.ended_at IS NOT NULL AND s.ended_at < $2 AND s.legal_hold IS NULL \
             ORDER BY s.ended_at LIMIT $3"
        ))
        .bind(policy_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Deletes a session's row (and its view requests), unless it is held; the audit event
    /// `session.expunge` keeps what it was (`details`). `false` if held or gone.
    pub async fn expunge_session(&self, actor: &Actor, now: i64, id: &str, details: serde_json::Value) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let held: Option<Option<String>> = sqlx::query_scalar("SELECT legal_hold FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if !matches!(held, Some(None)) {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recording_views WHERE session_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id).execute(&mut *tx).await?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("session.expunge", "session", id).with_details(details),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
