//! Connection policies: an ordered list (position 1 is tried first), each kept as the JSON
//! an administrator wrote. Positions stay 1..=n without gaps: inserting, moving and deleting
//! renumber the others in the same transaction. Every change is audited in that transaction.

use serde_json::json;

use crate::audit::{append, NewEvent};
use crate::{new_id, Actor, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConnectionPolicy {
    pub id: String,
    pub name: String,
    pub position: i64,
    /// The policy as written (JSON).
    pub spec: String,
    pub created_at: i64,
    pub updated_at: i64,
}

type Row = (String, String, i64, String, i64, i64);

fn row((id, name, position, spec, created_at, updated_at): Row) -> StoredConnectionPolicy {
    StoredConnectionPolicy { id, name, position, spec, created_at, updated_at }
}

const COLUMNS: &str = "id, name, position, spec, created_at, updated_at";

impl Store {
    /// Every connection policy, in the order they are tried.
    pub async fn connection_policies(&self) -> Result<Vec<StoredConnectionPolicy>> {
        let rows: Vec<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM connection_policies ORDER BY position, name"))
                .fetch_all(&self.read)
                .await?;
        Ok(rows.into_iter().map(row).collect())
    }

    pub async fn connection_policy(&self, id: &str) -> Result<StoredConnectionPolicy> {
        let r: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM connection_policies WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        r.map(row).ok_or(StoreError::NotFound("connection policy"))
    }

    /// Moves the generation every cached copy compares with.
    pub async fn connection_policy_generation(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT generation FROM connection_policy_generation WHERE id = 1")
            .fetch_one(&self.read)
            .await?)
    }

    /// Adds a policy at `position` (1 = tried first; clamped to the end; `None`: last).
    pub async fn create_connection_policy(
        &self,
        actor: &Actor,
        now: i64,
        name: &str,
        spec: &str,
        position: Option<i64>,
    ) -> Result<StoredConnectionPolicy> {
        portcullis_core::validate::name("name", name)?;
        let id = new_id();
        let mut tx = self.write.begin().await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connection_policies").fetch_one(&mut *tx).await?;
        let position = position.unwrap_or(count + 1).clamp(1, count + 1);
        sqlx::query("UPDATE connection_policies SET position = position + 1 WHERE position >= $1")
            .bind(position)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO connection_policies (id, name, position, spec, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$5)",
        )
        .bind(&id)
        .bind(name)
        .bind(position)
        .bind(spec)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::unique(e, || format!("a connection policy named '{name}' already exists")))?;
        let spec_json: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let details = json!({ "name": name, "position": position, "spec": spec_json });
        let event = NewEvent::success("connection_policy.create", "connection_policy", &id).with_details(details);
        append(&mut tx, &self.audit_key, actor, now, &event).await?;
        tx.commit().await?;
        Ok(StoredConnectionPolicy {
            id,
            name: name.into(),
            position,
            spec: spec.into(),
            created_at: now,
            updated_at: now,
        })
    }

    /// Replaces a policy's name and rules, and moves it to `position` if given.
    pub async fn replace_connection_policy(
        &self,
        actor: &Actor,
        now: i64,
        id: &str,
        name: &str,
        spec: &str,
        position: Option<i64>,
    ) -> Result<StoredConnectionPolicy> {
        portcullis_core::validate::name("name", name)?;
        let mut tx = self.write.begin().await?;
        let old: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM connection_policies WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let old = old.map(row).ok_or(StoreError::NotFound("connection policy"))?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connection_policies").fetch_one(&mut *tx).await?;
        let to = position.unwrap_or(old.position).clamp(1, count);
        if to != old.position {
            // Close the gap it leaves, then open one where it goes.
            sqlx::query("UPDATE connection_policies SET position = position - 1 WHERE position > $1")
                .bind(old.position)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE connection_policies SET position = position + 1 WHERE position >= $1 AND id <> $2")
                .bind(to)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE connection_policies SET name = $1, spec = $2, position = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(name)
        .bind(spec)
        .bind(to)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::unique(e, || format!("a connection policy named '{name}' already exists")))?;
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_default();
        let details = json!({
            "name": name,
            "position": to,
            "before": { "name": old.name, "position": old.position, "spec": parse(&old.spec) },
            "spec": parse(spec),
        });
        let event = NewEvent::success("connection_policy.update", "connection_policy", id).with_details(details);
        append(&mut tx, &self.audit_key, actor, now, &event).await?;
        tx.commit().await?;
        Ok(StoredConnectionPolicy {
            id: id.into(),
            name: name.into(),
            position: to,
            spec: spec.into(),
            created_at: old.created_at,
            updated_at: now,
        })
    }

    pub async fn delete_connection_policy(&self, actor: &Actor, now: i64, id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let gone: Option<(String, i64, String)> =
            sqlx::query_as("DELETE FROM connection_policies WHERE id = $1 RETURNING name, position, spec")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let (name, position, spec) = gone.ok_or(StoreError::NotFound("connection policy"))?;
        sqlx::query("UPDATE connection_policies SET position = position - 1 WHERE position > $1")
            .bind(position)
            .execute(&mut *tx)
            .await?;
        let spec: serde_json::Value = serde_json::from_str(&spec).unwrap_or_default();
        let details = json!({ "name": name, "position": position, "spec": spec });
        let event = NewEvent::success("connection_policy.delete", "connection_policy", id).with_details(details);
        append(&mut tx, &self.audit_key, actor, now, &event).await?;
        tx.commit().await?;
        Ok(())
    }
}
