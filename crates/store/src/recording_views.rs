//! Requests to view a session's recording (R-REQ-12): asked with a justification, decided once
//! by someone else, an approved one valid until it expires. Each change is audited in its own
//! transaction.

use crate::audit::{append, NewEvent};
use crate::{Actor, Result, Store, StoreError};

/// One request to view a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingView {
    pub id: String,
    pub session_id: String,
    pub requester_id: String,
    pub requester_name: String,
    pub justification: String,
    /// `pending`, `approved` or `denied`.
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_by_name: Option<String>,
    pub decided_at: Option<i64>,
    pub comment: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
);

const COLUMNS: &str =
    "v.id, v.session_id, v.requester_id, r.username, v.justification, v.state, v.decided_by, d.username, \
     v.decided_at, v.comment, v.created_at, v.expires_at \
     FROM recording_views v JOIN users r ON r.id = v.requester_id LEFT JOIN users d ON d.id = v.decided_by";

fn from_row(r: Row) -> RecordingView {
    RecordingView {
        id: r.0,
        session_id: r.1,
        requester_id: r.2,
        requester_name: r.3,
        justification: r.4,
        state: r.5,
        decided_by: r.6,
        decided_by_name: r.7,
        decided_at: r.8,
        comment: r.9,
        created_at: r.10,
        expires_at: r.11,
    }
}

impl Store {
    /// Asks to view a session's recording. One pending request per user and session.
    pub async fn request_recording_view(
        &self,
        actor: &Actor,
        now: i64,
        id: &str,
        session_id: &str,
        justification: &str,
    ) -> Result<RecordingView> {
        let mut tx = self.write.begin().await?;
        let pending: Option<String> = sqlx::query_scalar(
            "SELECT id FROM recording_views WHERE session_id = $1 AND requester_id = $2 AND state = 'pending'",
        )
        .bind(session_id)
        .bind(&actor.id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(p) = pending {
            return Err(StoreError::WrongState {
                code: "view_pending",
                message: format!("you already asked to view this recording (request {p}); it waits for an approver"),
            });
        }
        sqlx::query(
            "INSERT INTO recording_views (id, session_id, requester_id, justification, state, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5)",
        )
        .bind(id)
        .bind(session_id)
        .bind(&actor.id)
        .bind(justification)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let event = NewEvent::success("recording_view.request", "session", session_id)
            .with_details(serde_json::json!({ "view_request": id, "justification": justification }));
        append(&mut tx, &self.audit_key, actor, now, &event).await?;
        tx.commit().await?;
        self.recording_view(id).await
    }

    pub async fn recording_view(&self, id: &str) -> Result<RecordingView> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} WHERE v.id = $1")).bind(id).fetch_optional(&self.read).await?;
        row.map(from_row).ok_or(StoreError::NotFound("recording view request"))
    }

    /// Requests to view recordings: `state` (any if `None`), of `requester` (anyone's if
    /// `None`), of `session` (any if `None`), newest first.
    pub async fn recording_views(
        &self,
        state: Option<&str>,
        requester: Option<&str>,
        session: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RecordingView>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} WHERE ($1 IS NULL OR v.state = $1) AND ($2 IS NULL OR v.requester_id = $2) \
             AND ($3 IS NULL OR v.session_id = $3) ORDER BY v.created_at DESC, v.id LIMIT $4"
        ))
        .bind(state)
        .bind(requester)
        .bind(session)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Whether `user_id` holds an approved view of the session, valid at `now`.
    pub async fn may_view_recording(&self, user_id: &str, session_id: &str, now: i64) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recording_views WHERE session_id = $1 AND requester_id = $2 AND state = 'approved' \
             AND expires_at > $3",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(now)
        .fetch_one(&self.read)
        .await?;
        Ok(n > 0)
    }

    /// Approves (until `expires_at`) or denies a pending request; never the asker's own.
    pub async fn decide_recording_view(
        &self,
        actor: &Actor,
        now: i64,
        id: &str,
        approve: bool,
        comment: Option<&str>,
        expires_at: i64,
    ) -> Result<RecordingView> {
        let mut tx = self.write.begin().await?;
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT session_id, requester_id, state FROM recording_views WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let (session, requester, state) = row.ok_or(StoreError::NotFound("recording view request"))?;
        if requester == actor.id {
            return Err(StoreError::Refused {
                code: "own_request",
                message: "nobody approves or denies their own request to view a recording; another approver must"
                    .into(),
            });
        }
        if state != "pending" {
            return Err(StoreError::WrongState {
                code: "already_decided",
                message: format!("this request to view a recording was already {state}"),
            });
        }
        let (new, until) = if approve { ("approved", Some(expires_at)) } else { ("denied", None) };
        sqlx::query(
            "UPDATE recording_views SET state = $1, decided_by = $2, decided_at = $3, comment = $4, expires_at = $5 \
             WHERE id = $6 AND state = 'pending'",
        )
        .bind(new)
        .bind(&actor.id)
        .bind(now)
        .bind(comment)
        .bind(until)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let action = if approve { "recording_view.approve" } else { "recording_view.deny" };
        let event = NewEvent::success(action, "session", &session).with_details(
            serde_json::json!({ "view_request": id, "requester": requester, "comment": comment, "until": until }),
        );
        append(&mut tx, &self.audit_key, actor, now, &event).await?;
        tx.commit().await?;
        self.recording_view(id).await
    }
}
