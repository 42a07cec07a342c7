//! Connections waiting for a person, as every node sees them (the connection itself waits on
//! the node it reached).

use crate::{Result, Store};

/// A waiting connection's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitRow {
    pub id: String,
    /// The node holding the connection.
    pub node: String,
    /// `gateway_authentication` or `four_eyes`.
    pub kind: String,
    pub user_id: String,
    pub username: String,
    pub target: String,
    pub client: String,
    pub connection_policy: String,
    pub group_ids: Vec<String>,
    pub since: i64,
    pub until: i64,
}

type Row = (String, String, String, String, String, String, String, String, String, i64, i64);

const COLUMNS: &str = "id, node, kind, user_id, username, target, client, connection_policy, group_ids, since, until";

fn from_row(r: Row) -> WaitRow {
    WaitRow {
        id: r.0,
        node: r.1,
        kind: r.2,
        user_id: r.3,
        username: r.4,
        target: r.5,
        client: r.6,
        connection_policy: r.7,
        group_ids: r.8.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        since: r.9,
        until: r.10,
    }
}

impl Store {
    pub async fn add_wait(&self, w: &WaitRow) -> Result<()> {
        sqlx::query(&format!("INSERT INTO session_waits ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"))
            .bind(&w.id)
            .bind(&w.node)
            .bind(&w.kind)
            .bind(&w.user_id)
            .bind(&w.username)
            .bind(&w.target)
            .bind(&w.client)
            .bind(&w.connection_policy)
            .bind(w.group_ids.join(","))
            .bind(w.since)
            .bind(w.until)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Removes a wait; `true` for the caller that removed it (a decision is taken once).
    pub async fn remove_wait(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM session_waits WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(n.rows_affected() == 1)
    }

    /// The waits still running at `now`, oldest first.
    pub async fn waits(&self, now: i64) -> Result<Vec<WaitRow>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM session_waits WHERE until > $1 ORDER BY since, id LIMIT 1000"
        ))
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    pub async fn wait(&self, id: &str) -> Result<Option<WaitRow>> {
        let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM session_waits WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(from_row))
    }

    /// Forgets the waits of a node (it stopped: its connections are gone) and those long over.
    pub async fn remove_waits_of(&self, node: &str, over_before: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM session_waits WHERE node = $1 OR until < $2")
            .bind(node)
            .bind(over_before)
            .execute(&self.write)
            .await?
            .rows_affected())
    }
}
