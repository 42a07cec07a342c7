//! Reason codes, favorites and service switches: small tables around the request workflow.

use serde_json::json;

use crate::audit::{append, Deletion, NewEvent};
use crate::{new_id, Actor, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCode {
    pub id: String,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Favorite {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub description: String,
    pub colour: String,
    /// The saved request, as the JSON body of `POST /api/v1/requests`.
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

type FavRow = (String, String, String, String, String, String, i64, i64);

fn fav((id, user_id, name, description, colour, body, created_at, updated_at): FavRow) -> Favorite {
    Favorite { id, user_id, name, description, colour, body, created_at, updated_at }
}

/// The setting that switches session-type requests off (R-REQ-10).
pub const SESSION_REQUESTS_SETTING: &str = "service.session_requests";

impl Store {
    pub async fn create_reason_code(
        &self,
        actor: &Actor,
        now: i64,
        name: &str,
        description: &str,
    ) -> Result<ReasonCode> {
        portcullis_core::validate::name("name", name)?;
        portcullis_core::validate::description("description", description)?;
        let id = new_id();
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO reason_codes (id, name, description, created_at) VALUES ($1,$2,$3,$4)")
            .bind(&id)
            .bind(name)
            .bind(description)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, || format!("a reason code named '{name}' already exists")))?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("reason_code.create", "reason_code", &id).with_details(json!({ "name": name })),
        )
        .await?;
        tx.commit().await?;
        Ok(ReasonCode { id, name: name.into(), description: description.into() })
    }

    pub async fn reason_codes(&self) -> Result<Vec<ReasonCode>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, name, description FROM reason_codes ORDER BY name")
                .fetch_all(&self.read)
                .await?;
        Ok(rows.into_iter().map(|(id, name, description)| ReasonCode { id, name, description }).collect())
    }

    pub async fn delete_reason_code(&self, actor: &Actor, now: i64, id: &str) -> Result<()> {
        let what = Deletion {
            table: "reason_codes",
            noun: "reason code",
            action: "reason_code.delete",
            object_type: "reason_code",
        };
        self.delete_named(actor, now, what, id).await
    }

    /// Creates (`id = None`) or replaces one of `user_id`'s favorites.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_favorite(
        &self,
        actor: &Actor,
        now: i64,
        user_id: &str,
        id: Option<&str>,
        name: &str,
        description: &str,
        colour: &str,
        body: &str,
    ) -> Result<Favorite> {
        portcullis_core::validate::name("name", name)?;
        portcullis_core::validate::description("description", description)?;
        let mut tx = self.write.begin().await?;
        let unique = |e| StoreError::unique(e, || format!("you already have a favorite named '{name}'"));
        let id = match id {
            None => {
                let id = new_id();
                sqlx::query("INSERT INTO favorites (id, user_id, name, description, colour, body, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$7)")
                    .bind(&id)
                    .bind(user_id)
                    .bind(name)
                    .bind(description)
                    .bind(colour)
                    .bind(body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(unique)?;
                id
            }
            Some(id) => {
                let n = sqlx::query("UPDATE favorites SET name = $1, description = $2, colour = $3, body = $4, updated_at = $5 WHERE id = $6 AND user_id = $7")
                    .bind(name)
                    .bind(description)
                    .bind(colour)
                    .bind(body)
                    .bind(now)
                    .bind(id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unique)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound("favorite"));
                }
                id.to_owned()
            }
        };
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("favorite.save", "favorite", &id).with_details(json!({ "name": name })),
        )
        .await?;
        tx.commit().await?;
        self.favorite(user_id, &id).await
    }

    /// One of `user_id`'s favorites; another user's is "not found".
    pub async fn favorite(&self, user_id: &str, id: &str) -> Result<Favorite> {
        let row: Option<FavRow> = sqlx::query_as(
            "SELECT id, user_id, name, description, colour, body, created_at, updated_at FROM favorites WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(fav(row.ok_or(StoreError::NotFound("favorite"))?))
    }

    pub async fn favorites(&self, user_id: &str) -> Result<Vec<Favorite>> {
        let rows: Vec<FavRow> = sqlx::query_as(
            "SELECT id, user_id, name, description, colour, body, created_at, updated_at FROM favorites WHERE user_id = $1 ORDER BY name",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(fav).collect())
    }

    pub async fn delete_favorite(&self, actor: &Actor, now: i64, user_id: &str, id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("DELETE FROM favorites WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("favorite"));
        }
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("favorite.delete", "favorite", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Switches a service on or off (audited).
    pub async fn set_service(&self, actor: &Actor, now: i64, key: &'static str, enabled: bool) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(if enabled { "enabled" } else { "disabled" })
        .execute(&mut *tx)
        .await?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("service.set", "service", key).with_details(json!({ "enabled": enabled })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn service_enabled(&self, key: &str) -> Result<bool> {
        Ok(self.setting(key).await?.as_deref() != Some("disabled"))
    }
}
