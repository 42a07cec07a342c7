//! Storage of the hash-chained audit log. Appends take the chain head's row lock
//! (`UPDATE … RETURNING`), so concurrent writers on PostgreSQL are serialised and the chain
//! stays linear.

use portcullis_core::audit::{self, AuditFields, ChainVerifier};
use sqlx::AnyConnection;

use crate::sql::{Batch, Value, Where};
use crate::{Actor, Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// An event to append. `details` must never hold a secret.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub action: &'static str,
    pub object_type: &'static str,
    pub object_id: String,
    pub outcome: Outcome,
    pub details: serde_json::Value,
}

impl NewEvent {
    pub fn success(action: &'static str, object_type: &'static str, object_id: impl Into<String>) -> Self {
        NewEvent {
            action,
            object_type,
            object_id: object_id.into(),
            outcome: Outcome::Success,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: i64,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub source: String,
    pub outcome: String,
    pub details: String,
    pub prev_link: String,
    pub link: String,
}

impl AuditEvent {
    fn fields(&self) -> AuditFields<'_> {
        AuditFields {
            seq: self.seq,
            at_micros: self.at,
            actor_id: &self.actor_id,
            actor_name: &self.actor_name,
            action: &self.action,
            object_type: &self.object_type,
            object_id: &self.object_id,
            source: &self.source,
            outcome: &self.outcome,
            details: &self.details,
        }
    }
}

/// Filters for listing events; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// Return events with a sequence number greater than this (the paging cursor).
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub checked: u64,
    pub head_seq: i64,
    pub broken: Option<audit::BrokenLink>,
}

/// Takes the next sequence number and the previous link. The `UPDATE … RETURNING` takes the
/// head's row lock, so concurrent appenders queue here until the holder commits.
pub(crate) async fn reserve(conn: &mut AnyConnection) -> Result<(i64, String)> {
    Ok(sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, link")
        .fetch_one(&mut *conn)
        .await?)
}

/// Adds the event row and the head's new link to `batch`, for the sequence number `seq` that
/// [`reserve`] returned.
pub(crate) fn push_event(
    batch: &mut Batch,
    key: &[u8],
    actor: &Actor,
    now: i64,
    event: &NewEvent,
    seq: i64,
    prev_hex: &str,
) -> Result<()> {
    let prev = decode_link(prev_hex)?;
    let details = event.details.to_string();
    let fields = AuditFields {
        seq,
        at_micros: now,
        actor_id: &actor.id,
        actor_name: &actor.name,
        action: event.action,
        object_type: event.object_type,
        object_id: &event.object_id,
        source: &actor.source,
        outcome: event.outcome.as_str(),
        details: &details,
    };
    let link = audit::link_hex(&audit::link(key, &prev, &fields));
    batch.push(
        "INSERT INTO audit_events (seq, at, actor_id, actor_name, action, object_type, object_id, \
         source, outcome, details, prev_link, link) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        vec![
            seq.into(),
            now.into(),
            (&actor.id).into(),
            (&actor.name).into(),
            event.action.into(),
            event.object_type.into(),
            (&event.object_id).into(),
            (&actor.source).into(),
            event.outcome.as_str().into(),
            details.into(),
            prev_hex.into(),
            link.clone().into(),
        ],
    );
    batch.push("UPDATE audit_head SET link = $1 WHERE id = 1", vec![link.into()]);
    Ok(())
}

/// Appends one event inside the caller's transaction.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    key: &[u8],
    actor: &Actor,
    now: i64,
    event: &NewEvent,
) -> Result<i64> {
    let (seq, prev_hex) = reserve(conn).await?;
    let mut batch = Batch::new(conn);
    push_event(&mut batch, key, actor, now, event, seq, &prev_hex)?;
    batch.run(conn).await?;
    Ok(seq)
}

fn decode_link(hex: &str) -> Result<audit::Link> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return Err(StoreError::Corrupt("audit chain head is malformed".into()));
    }
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).map_err(|_| StoreError::Corrupt("audit chain head is malformed".into()))?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| StoreError::Corrupt("audit chain head is malformed".into()))?;
    }
    Ok(out)
}

/// A row deleted by id, with the audit event that records it.
pub(crate) struct Deletion {
    pub table: &'static str,
    /// For "… not found".
    pub noun: &'static str,
    pub action: &'static str,
    pub object_type: &'static str,
}

impl Store {
    /// Deletes the row `id` of a table with a `name` column, auditing the name; "not found"
    /// when there is no such row. Foreign keys cascade to dependent rows.
    pub(crate) async fn delete_named(&self, actor: &Actor, now: i64, what: Deletion, id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let name: Option<String> =
            sqlx::query_scalar(&format!("DELETE FROM {} WHERE id = $1 RETURNING name", what.table))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let name = name.ok_or(StoreError::NotFound(what.noun))?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success(what.action, what.object_type, id).with_details(serde_json::json!({ "name": name })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records an event on its own (e.g. a failed login, which changes nothing else).
    pub async fn record(&self, actor: &Actor, now: i64, event: NewEvent) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let seq = append(&mut tx, &self.audit_key, actor, now, &event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    pub async fn audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut w = Where::default();
        if let Some(v) = q.from {
            w.and("at >=", Value::Int(v));
        }
        if let Some(v) = q.to {
            w.and("at <", Value::Int(v));
        }
        if let Some(v) = q.after_seq {
            w.and("seq >", Value::Int(v));
        }
        for (col, val) in [
            ("actor_name =", &q.actor),
            ("action =", &q.action),
            ("object_type =", &q.object_type),
            ("object_id =", &q.object_id),
        ] {
            if let Some(v) = val {
                w.and(col, Value::Text(v.clone()));
            }
        }
        let sql = format!(
            "SELECT seq, at, actor_id, actor_name, action, object_type, object_id, source, outcome, \
             details, prev_link, link FROM audit_events WHERE 1=1{} ORDER BY seq LIMIT {}",
            w.sql,
            q.limit.clamp(1, 1000)
        );
        let query = w.bind(sqlx::query_as::<_, AuditEvent>(&sql));
        Ok(query.fetch_all(&self.read).await?)
    }

    /// How far the delivery `name` has read the audit chain (0: from the start).
    pub async fn delivery_cursor(&self, name: &str) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM delivery_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// Takes (or renews) the lease on delivery `name` for `holder` until `until` (µs): `false`
    /// while another holder's lease runs. Only the holder moves the cursor.
    pub async fn lease_delivery_cursor(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO delivery_cursors (name, seq, updated_at, holder, lease_until) VALUES ($1, 0, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until \
             WHERE delivery_cursors.holder IS NULL OR delivery_cursors.holder = excluded.holder \
             OR delivery_cursors.lease_until <= $2",
        )
        .bind(name)
        .bind(now)
        .bind(holder)
        .bind(until)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up (a node stopping), so another takes over at once.
    pub async fn release_delivery_cursor(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("UPDATE delivery_cursors SET lease_until = 0 WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records that the delivery `name` has sent every event up to `seq`. Never moves back,
    /// and only for the lease's `holder`: `false` if the lease is someone else's now.
    pub async fn set_delivery_cursor(&self, name: &str, holder: &str, seq: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE delivery_cursors SET seq = $1, updated_at = $2 WHERE name = $3 AND holder = $4 AND seq <= $1",
        )
        .bind(seq)
        .bind(now)
        .bind(name)
        .bind(holder)
        .execute(&self.write)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        // Not moved: behind already (fine), or the lease is gone.
        let row: Option<Option<String>> = sqlx::query_scalar("SELECT holder FROM delivery_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.write)
            .await?;
        Ok(matches!(row, Some(Some(h)) if h == holder))
    }

    /// The head of the chain: the last sequence number and its link.
    pub async fn audit_head(&self) -> Result<(i64, String)> {
        Ok(sqlx::query_as("SELECT seq, link FROM audit_head WHERE id = 1").fetch_one(&self.read).await?)
    }

    /// Whether this store's audit key is the one the log was written with: `None` for an empty
    /// log; else whether any of the last three events verifies under it (a wrong key verifies
    /// none; a tampered event is for `verify_audit_chain` to report, not a reason to refuse).
    pub async fn audit_key_matches(&self) -> Result<Option<bool>> {
        let last: Vec<AuditEvent> = sqlx::query_as(
            "SELECT seq, at, actor_id, actor_name, action, object_type, object_id, source, outcome, \
             details, prev_link, link FROM audit_events ORDER BY seq DESC LIMIT 3",
        )
        .fetch_all(&self.read)
        .await?;
        if last.is_empty() {
            return Ok(None);
        }
        Ok(Some(last.iter().any(|e| audit::signed_with(&self.audit_key, &e.fields(), &e.prev_link, &e.link))))
    }

    /// The stored link of event `seq`, if it exists.
    pub async fn audit_link(&self, seq: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT link FROM audit_events WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&self.read)
            .await?)
    }

    /// Walks the whole chain in sequence order and reports the first broken link.
    pub async fn verify_audit_chain(&self) -> Result<ChainReport> {
        // Read the head and the events in one snapshot so concurrent appends do not look like
        // tampering.
        let mut tx = self.read.begin().await?;
        let (head_seq, head_link): (i64, String) =
            sqlx::query_as("SELECT seq, link FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?;
        let mut verifier = ChainVerifier::new(&self.audit_key);
        let mut after = 0i64;
        let mut broken = None;
        'pages: loop {
            let page: Vec<AuditEvent> = sqlx::query_as(
                "SELECT seq, at, actor_id, actor_name, action, object_type, object_id, source, outcome, \
                 details, prev_link, link FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT 5000",
            )
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for event in &page {
                if let Err(b) = verifier.push(&event.fields(), &event.prev_link, &event.link) {
                    broken = Some(b);
                    break 'pages;
                }
            }
        }
        tx.rollback().await?;
        let checked;
        if broken.is_none() {
            match verifier.finish(head_seq, &head_link) {
                Ok(n) => checked = n,
                Err(b) => {
                    checked = 0;
                    broken = Some(b);
                }
            }
        } else {
            checked = 0;
        }
        Ok(ChainReport { checked, head_seq, broken })
    }
}
