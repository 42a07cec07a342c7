//! Several nodes on one database: the node registry with heartbeats, and the events that travel
//! from one node to the others (request transitions, terminations), written to a table and —
//! on PostgreSQL — announced with `NOTIFY`, so a node that missed a notification (a reconnect)
//! reads what it missed by cursor.

use serde_json::json;

use crate::audit::{append, NewEvent};
use crate::db::Backend;
use crate::{Actor, Result, Store};

/// The channel nodes `LISTEN` on.
pub const CHANNEL: &str = "portcullis_events";

/// A node as the registry has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    /// `up` or `lost` (stopped heartbeating; its sessions were ended by the others).
    pub state: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub version: String,
    pub lost_at: Option<i64>,
}

/// One event from one node to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    pub id: i64,
    pub origin: String,
    pub kind: String,
    pub body: String,
}

type NodeRow = (String, String, i64, i64, String, Option<i64>);

impl Store {
    /// Registers this node as up (again), with a first heartbeat.
    pub async fn register_node(&self, name: &str, now: i64, version: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (name, state, started_at, heartbeat_at, version, lost_at) VALUES ($1, 'up', $2, $2, $3, NULL) \
             ON CONFLICT (name) DO UPDATE SET state = 'up', started_at = $2, heartbeat_at = $2, version = $3, lost_at = NULL",
        )
        .bind(name)
        .bind(now)
        .bind(version)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// This node is alive; `false` if the others declared it lost meanwhile (it must not go on
    /// as if its sessions were still its own).
    pub async fn heartbeat(&self, name: &str, now: i64) -> Result<bool> {
        let n = sqlx::query("UPDATE nodes SET heartbeat_at = $1 WHERE name = $2 AND state = 'up'")
            .bind(now)
            .bind(name)
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// This node stopped cleanly: not lost, but its sessions are the others' to end.
    pub async fn node_stopped(&self, name: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE nodes SET state = 'stopped', lost_at = $1 WHERE name = $2")
            .bind(now)
            .bind(name)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT name, state, started_at, heartbeat_at, version, lost_at FROM nodes ORDER BY name LIMIT 1000",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, state, started_at, heartbeat_at, version, lost_at)| NodeRecord {
                name,
                state,
                started_at,
                heartbeat_at,
                version,
                lost_at,
            })
            .collect())
    }

    /// Live sessions per node (sessions of no node under `""`).
    pub async fn live_sessions_by_node(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(node, ''), COUNT(*) FROM sessions WHERE ended_at IS NULL GROUP BY COALESCE(node, '')",
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// Declares lost a node that has not heartbeated since `before` (once, by whichever
    /// survivor gets there first; audited `node.lost`). `true` for the one that did.
    pub async fn declare_lost(&self, observer: &str, name: &str, before: i64, now: i64) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE nodes SET state = 'lost', lost_at = $1 WHERE name = $2 AND state = 'up' AND heartbeat_at < $3",
        )
        .bind(now)
        .bind(name)
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            let last: i64 = sqlx::query_scalar("SELECT heartbeat_at FROM nodes WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            append(
                &mut tx,
                &self.audit_key,
                &Actor::system(),
                now,
                &NewEvent::success("node.lost", "node", name)
                    .with_details(json!({ "last_heartbeat_at": last, "declared_by": observer })),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Takes (or renews) the lease on a kind of work only one node does at a time, until
    /// `until` (µs): `false` while another node's lease runs. The leases share the delivery
    /// cursors' table (a cursor is a lease with a position), under names `work:…`.
    pub async fn lease_work(&self, work: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
        self.lease_delivery_cursor(&format!("work:{work}"), holder, now, until).await
    }

    /// Sends an event to the other nodes: stored, then announced (PostgreSQL).
    pub async fn publish_cluster_event(&self, origin: &str, kind: &str, body: &str, now: i64) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO cluster_events (origin, kind, body, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(origin)
        .bind(kind)
        .bind(body)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if self.backend == Backend::Postgres {
            // Delivered to listeners when the transaction commits, with the row visible.
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(id.to_string()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Events with an id above `after`, oldest first.
    pub async fn cluster_events_after(&self, after: i64, limit: i64) -> Result<Vec<ClusterEvent>> {
        let rows: Vec<(i64, String, String, String)> =
            sqlx::query_as("SELECT id, origin, kind, body FROM cluster_events WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.read)
                .await?;
        Ok(rows.into_iter().map(|(id, origin, kind, body)| ClusterEvent { id, origin, kind, body }).collect())
    }

    /// The newest event's id (0: none): where a starting node begins reading.
    pub async fn last_cluster_event(&self) -> Result<i64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM cluster_events").fetch_one(&self.read).await?;
        Ok(id.unwrap_or(0))
    }

    /// Forgets events older than `before` (every node has read them long since).
    pub async fn purge_cluster_events(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM cluster_events WHERE created_at < $1")
            .bind(before)
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    /// A dedicated connection listening on [`CHANNEL`] (PostgreSQL; `None` on SQLite, where
    /// one node is all there is).
    pub async fn listen(&self) -> Result<Option<sqlx::postgres::PgListener>> {
        let Some(url) = &self.url else { return Ok(None) };
        let mut l = sqlx::postgres::PgListener::connect(url).await?;
        l.listen(CHANNEL).await?;
        Ok(Some(l))
    }
}
