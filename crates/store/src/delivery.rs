//! Delivering the notification outbox: a worker claims due rows (a lease: `next_at` moves
//! forward while it sends; on PostgreSQL `FOR UPDATE SKIP LOCKED`, so several nodes never take
//! the same row), then marks each delivered, due again later, or given up (audited).

use serde_json::json;

use crate::audit::{append, NewEvent};
use crate::{Actor, Backend, Outcome, Result, Store};

/// A claimed outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    /// The request (or, for credential changes, the account) the notification is about.
    pub subject_id: String,
    pub recipients: Vec<String>,
    pub created_at: i64,
    /// Attempts before this one.
    pub attempts: i64,
    /// Already delivered by e-mail, by webhook (an earlier attempt).
    pub mail_done: bool,
    pub hook_done: bool,
    /// What the notification needs besides its subject (JSON), if anything.
    pub details: Option<serde_json::Value>,
}

/// A delivery channel, for [`Store::channel_delivered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Mail,
    Webhook,
}

/// A notification delivery gave up on (for administrators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    pub id: String,
    pub event: String,
    pub subject_id: String,
    pub recipients: Vec<String>,
    pub created_at: i64,
    pub attempts: i64,
    pub failed_at: i64,
    pub last_error: String,
}

/// id, event, subject, recipients, created_at, attempts, mail_at, hook_at, details.
type ClaimRow = (String, String, String, String, i64, i64, Option<i64>, Option<i64>, Option<String>);
/// id, event, subject, recipients, created_at, attempts, failed_at, last_error.
type FailedRow = (String, String, String, String, i64, i64, i64, Option<String>);

fn split(recipients: &str) -> Vec<String> {
    recipients.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl Store {
    /// Claims up to `limit` due rows, oldest first, until `lease_until` (µs), keeping each
    /// recipient's notifications in order: a row is not claimed while an older undelivered row
    /// for one of its recipients waits (for its retry, or in another worker's hands).
    pub async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<Delivery>> {
        let lock = if self.backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let mut tx = self.write.begin().await?;
        let due: Vec<ClaimRow> = sqlx::query_as(&format!(
            "SELECT id, event, request_id, recipients, created_at, attempts, mail_at, hook_at, details FROM notification_outbox \
             WHERE delivered_at IS NULL AND failed_at IS NULL AND (next_at IS NULL OR next_at <= $1) \
             ORDER BY created_at, id LIMIT $2{lock}"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let Some(newest) = due.last().map(|r| r.4) else {
            tx.commit().await?;
            return Ok(Vec::new());
        };
        // Every undelivered row up to the newest due one: the due rows and those that wait.
        let pending: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, recipients FROM notification_outbox WHERE delivered_at IS NULL AND failed_at IS NULL \
             AND created_at <= $1 ORDER BY created_at, id LIMIT 10000",
        )
        .bind(newest)
        .fetch_all(&mut *tx)
        .await?;
        let mut due: std::collections::HashMap<String, ClaimRow> = due.into_iter().map(|r| (r.0.clone(), r)).collect();
        let mut held: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (id, recipients) in pending {
            let recipients = split(&recipients);
            let claimable = due.contains_key(&id) && !recipients.iter().any(|r| held.contains(r));
            if !claimable {
                held.extend(recipients);
                continue;
            }
            let (id, event, subject_id, _, created_at, attempts, mail_at, hook_at, details) =
                due.remove(&id).expect("due");
            sqlx::query("UPDATE notification_outbox SET next_at = $1 WHERE id = $2")
                .bind(lease_until)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            out.push(Delivery {
                id,
                event,
                subject_id,
                recipients,
                created_at,
                attempts,
                mail_done: mail_at.is_some(),
                hook_done: hook_at.is_some(),
                details: details.and_then(|d| serde_json::from_str(&d).ok()),
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Gives a claimed row back unsent (an older one for the same recipient failed meanwhile);
    /// not counted as an attempt.
    pub async fn delivery_release(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE notification_outbox SET next_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Every channel has delivered the row (those that did in this attempt are marked too).
    pub async fn delivered(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE notification_outbox SET delivered_at = $1, mail_at = COALESCE(mail_at, $1), \
             hook_at = COALESCE(hook_at, $1), last_error = NULL WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// One channel has delivered the row (the row itself is delivered when all have).
    pub async fn channel_delivered(&self, id: &str, channel: Channel, now: i64) -> Result<()> {
        let column = match channel {
            Channel::Mail => "mail_at",
            Channel::Webhook => "hook_at",
        };
        sqlx::query(&format!("UPDATE notification_outbox SET {column} = $1 WHERE id = $2"))
            .bind(now)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// A failed attempt: due again at `next_at`.
    pub async fn delivery_retry(&self, id: &str, next_at: i64, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE notification_outbox SET attempts = attempts + 1, next_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(next_at)
        .bind(error)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Gives up on a row after its last attempt; audited as `notification.failed`.
    pub async fn delivery_failed(&self, id: &str, now: i64, error: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "UPDATE notification_outbox SET attempts = attempts + 1, failed_at = $1, last_error = $2 WHERE id = $3 \
             RETURNING event, request_id, recipients, attempts",
        )
        .bind(now)
        .bind(error)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((event, subject, recipients, attempts)) = row {
            let e = NewEvent::success("notification.failed", "notification", id).with_outcome(Outcome::Failure).with_details(
                json!({ "event": event, "subject_id": subject, "recipients": split(&recipients), "attempts": attempts, "error": error }),
            );
            append(&mut tx, &self.audit_key, &Actor::system(), now, &e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Notifications given up on, newest first.
    pub async fn failed_deliveries(&self, limit: i64) -> Result<Vec<FailedDelivery>> {
        let rows: Vec<FailedRow> = sqlx::query_as(
            "SELECT id, event, request_id, recipients, created_at, attempts, failed_at, last_error FROM notification_outbox \
             WHERE failed_at IS NOT NULL ORDER BY failed_at DESC, id LIMIT $1",
        )
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, event, subject_id, recipients, created_at, attempts, failed_at, last_error)| FailedDelivery {
                id,
                event,
                subject_id,
                recipients: split(&recipients),
                created_at,
                attempts,
                failed_at,
                last_error: last_error.unwrap_or_default(),
            })
            .collect())
    }
}
