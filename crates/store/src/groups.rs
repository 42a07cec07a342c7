//! Groups of users, assets and accounts share one shape: a named set of member ids.

use portcullis_core::validate;

use crate::audit::{append, NewEvent};
use crate::{new_id, Actor, Page, Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    User,
    Asset,
    Account,
}

impl GroupKind {
    fn table(self) -> &'static str {
        match self {
            GroupKind::User => "user_groups",
            GroupKind::Asset => "asset_groups",
            GroupKind::Account => "account_groups",
        }
    }
    fn member_table(self) -> &'static str {
        match self {
            GroupKind::User => "user_group_members",
            GroupKind::Asset => "asset_group_members",
            GroupKind::Account => "account_group_members",
        }
    }
    fn member_source(self) -> &'static str {
        match self {
            GroupKind::User => "users",
            GroupKind::Asset => "assets",
            GroupKind::Account => "accounts",
        }
    }
    /// The audit object type, also used in messages.
    pub fn object_type(self) -> &'static str {
        match self {
            GroupKind::User => "user_group",
            GroupKind::Asset => "asset_group",
            GroupKind::Account => "account_group",
        }
    }
    fn member_noun(self) -> &'static str {
        match self {
            GroupKind::User => "user",
            GroupKind::Asset => "asset",
            GroupKind::Account => "account",
        }
    }
    fn not_found(self) -> StoreError {
        StoreError::NotFound(match self {
            GroupKind::User => "user group",
            GroupKind::Asset => "asset group",
            GroupKind::Account => "account group",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: String,
    pub members: Vec<String>,
    pub created_at: i64,
}

impl Store {
    pub async fn create_group(
        &self,
        actor: &Actor,
        now: i64,
        kind: GroupKind,
        name: &str,
        description: &str,
    ) -> Result<Group> {
        validate::name("name", name)?;
        validate::description("description", description)?;
        let id = new_id();
        let mut tx = self.write.begin().await?;
        sqlx::query(&format!("INSERT INTO {} (id, name, description, created_at) VALUES ($1,$2,$3,$4)", kind.table()))
            .bind(&id)
            .bind(name)
            .bind(description)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::unique(e, || {
                    format!("a {} named '{name}' already exists", kind.object_type().replace('_', " "))
                })
            })?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("group.create", kind.object_type(), &id)
                .with_details(serde_json::json!({ "name": name })),
        )
        .await?;
        tx.commit().await?;
        Ok(Group { id, name: name.into(), description: description.into(), members: vec![], created_at: now })
    }

    pub async fn group(&self, kind: GroupKind, id: &str) -> Result<Group> {
        let row: Option<(String, String, String, i64)> =
            sqlx::query_as(&format!("SELECT id, name, description, created_at FROM {} WHERE id = $1", kind.table()))
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        let (id, name, description, created_at) = row.ok_or_else(|| kind.not_found())?;
        let members: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT member_id FROM {} WHERE group_id = $1 ORDER BY member_id",
            kind.member_table()
        ))
        .bind(&id)
        .fetch_all(&self.read)
        .await?;
        Ok(Group { id, name, description, members, created_at })
    }

    pub async fn groups(&self, kind: GroupKind, page: Page) -> Result<Vec<Group>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(&format!(
            "SELECT id, name, description, created_at FROM {} ORDER BY name LIMIT $1 OFFSET $2",
            kind.table()
        ))
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.read)
        .await?;
        let pairs: Vec<(String, String)> =
            sqlx::query_as(&format!("SELECT group_id, member_id FROM {} ORDER BY member_id", kind.member_table()))
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, description, created_at)| {
                let members = pairs.iter().filter(|(g, _)| *g == id).map(|(_, m)| m.clone()).collect();
                Group { id, name, description, members, created_at }
            })
            .collect())
    }

    pub async fn update_group(
        &self,
        actor: &Actor,
        now: i64,
        kind: GroupKind,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Group> {
        if let Some(n) = name {
            validate::name("name", n)?;
        }
        if let Some(d) = description {
            validate::description("description", d)?;
        }
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(&format!(
            "UPDATE {} SET name = COALESCE($1, name), description = COALESCE($2, description) WHERE id = $3",
            kind.table()
        ))
        .bind(name)
        .bind(description)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::unique(e, || {
                format!(
                    "a {} named '{}' already exists",
                    kind.object_type().replace('_', " "),
                    name.unwrap_or_default()
                )
            })
        })?
        .rows_affected();
        if n == 0 {
            return Err(kind.not_found());
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("group.update", kind.object_type(), id)
                .with_details(serde_json::json!({ "name": name, "description": description })),
        )
        .await?;
        tx.commit().await?;
        self.group(kind, id).await
    }

    pub async fn delete_group(&self, actor: &Actor, now: i64, kind: GroupKind, id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(&format!("DELETE FROM {} WHERE id = $1", kind.table()))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(kind.not_found());
        }
        append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("group.delete", kind.object_type(), id))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds (`add = true`) or removes a member. Adding an existing member or removing an
    /// absent one changes nothing and writes no event.
    pub async fn set_group_member(
        &self,
        actor: &Actor,
        now: i64,
        kind: GroupKind,
        id: &str,
        member: &str,
        add: bool,
    ) -> Result<Group> {
        let mut tx = self.write.begin().await?;
        let group_exists: Option<String> =
            sqlx::query_scalar(&format!("SELECT id FROM {} WHERE id = $1", kind.table()))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if group_exists.is_none() {
            return Err(kind.not_found());
        }
        if kind == GroupKind::User {
            let directory: Option<String> =
                sqlx::query_scalar::<_, Option<String>>("SELECT directory FROM user_groups WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            if let Some(d) = directory {
                return Err(StoreError::Refused {
                    code: "directory_group",
                    message: format!(
                        "this group's members come from the directory {d}; change them there (the next synchronisation brings them here)"
                    ),
                });
            }
        }
        let member_exists: Option<String> =
            sqlx::query_scalar(&format!("SELECT id FROM {} WHERE id = $1", kind.member_source()))
                .bind(member)
                .fetch_optional(&mut *tx)
                .await?;
        if member_exists.is_none() {
            return Err(StoreError::NotFound(kind.member_noun()));
        }
        let n = if add && kind == GroupKind::User {
            // Who added the member: a user who adds themself gains nothing by it, until someone
            // else adds them too.
            sqlx::query(
                "INSERT INTO user_group_members (group_id, member_id, added_by) VALUES ($1, $2, $3) \
                 ON CONFLICT (group_id, member_id) DO UPDATE SET added_by = excluded.added_by \
                 WHERE COALESCE(user_group_members.added_by, '') <> excluded.added_by \
                 AND user_group_members.added_by = user_group_members.member_id",
            )
            .bind(id)
            .bind(member)
            .bind(&actor.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            let sql = if add {
                format!(
                    "INSERT INTO {} (group_id, member_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    kind.member_table()
                )
            } else {
                format!("DELETE FROM {} WHERE group_id = $1 AND member_id = $2", kind.member_table())
            };
            sqlx::query(&sql).bind(id).bind(member).execute(&mut *tx).await?.rows_affected()
        };
        if n > 0 {
            let action = if add { "group.member_add" } else { "group.member_remove" };
            append(
                &mut tx,
                &self.audit_key,
                actor,
                now,
                &NewEvent::success(action, kind.object_type(), id)
                    .with_details(serde_json::json!({ "member": member })),
            )
            .await?;
        }
        tx.commit().await?;
        self.group(kind, id).await
    }

    /// The user groups a user belongs to.
    pub async fn groups_of_user(&self, user_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT group_id FROM user_group_members WHERE member_id = $1 ORDER BY group_id")
            .bind(user_id)
            .fetch_all(&self.read)
            .await?)
    }
}
