//! The archive's bookkeeping (R-SES-13): which ended sessions' recordings still need copying to
//! object storage, and where each verified copy is.

use crate::audit::{append, NewEvent};
use crate::sessions::{from_row, Row, COLUMNS};
use crate::{Actor, Result, SessionRecord, Store, StoreError};

impl Store {
    /// Ended sessions with a recording not yet archived, oldest end first.
    pub async fn sessions_to_archive(&self, node: &str, limit: i64) -> Result<Vec<SessionRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE archived_at IS NULL AND ended_at IS NOT NULL AND recording IS NOT NULL \
             AND COALESCE(node, '') IN ($1, '') ORDER BY ended_at, id LIMIT $2"
        ))
        .bind(node)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Ended sessions with a recording not yet archived, of nodes that are no longer up (lost
    /// or stopped): a survivor copies them from the shared directory.
    pub async fn sessions_to_archive_of_absent_nodes(&self, limit: i64) -> Result<Vec<SessionRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE archived_at IS NULL AND ended_at IS NOT NULL AND recording IS NOT NULL \
             AND node IN (SELECT name FROM nodes WHERE state <> 'up') ORDER BY ended_at, id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Records a verified copy (audited `session.archive` with `details`).
    pub async fn mark_archived(
        &self,
        actor: &Actor,
        now: i64,
        id: &str,
        key: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let n =
            sqlx::query("UPDATE sessions SET archive_key = $1, archived_at = $2 WHERE id = $3 AND archived_at IS NULL")
                .bind(key)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("session to archive"));
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("session.archive", "session", id).with_details(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Where the session's recording is archived, if it is.
    pub async fn archive_key(&self, id: &str) -> Result<Option<String>> {
        let row: Option<Option<String>> = sqlx::query_scalar("SELECT archive_key FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.ok_or(StoreError::NotFound("session"))
    }
}
