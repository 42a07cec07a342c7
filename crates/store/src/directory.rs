//! Users and groups mirrored from a directory: applied in one transaction per sign-in or
//! synchronisation, so nothing is ever half-synced; every change audited.

use std::collections::{BTreeMap, BTreeSet};

use portcullis_core::directory::normalize_dn as norm;
use portcullis_core::validate;

use crate::audit::{append, NewEvent};
use crate::{new_id, Actor, Result, Store, StoreError};

/// The password hash of a directory user: no password verifies against it (the directory's
/// bind decides).
pub const DIRECTORY_PASSWORD: &str = "!directory";

/// A person as the directory has them.
#[derive(Debug, Clone)]
pub struct DirectoryUser {
    pub dn: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub time_zone: Option<String>,
    pub disabled: bool,
    /// DNs of the directory groups they are in (nested included).
    pub groups: BTreeSet<String>,
}

/// A group as the directory has it.
#[derive(Debug, Clone)]
pub struct DirectoryGroup {
    pub dn: String,
    pub name: String,
}

/// What an application of directory data changed.
#[derive(Debug, Clone, Default)]
pub struct DirectoryChanges {
    /// User names created.
    pub created: Vec<String>,
    /// Users whose name, display name, e-mail or time zone changed.
    pub updated: usize,
    /// Users disabled by this change (id, user name): disabled in the directory, or gone.
    pub disabled: Vec<(String, String)>,
    /// Users enabled again (enabled in the directory).
    pub enabled: Vec<String>,
    pub groups_created: Vec<String>,
    /// Directory groups no longer in the directory: emptied (kept, so the rules that name them
    /// stay readable, but they grant nothing).
    pub groups_emptied: Vec<String>,
    pub members_added: usize,
    pub members_removed: usize,
    /// Entries left out, with why.
    pub skipped: Vec<String>,
    /// The Portcullis user of a sign-in (`apply_directory` with one user).
    pub user_id: Option<String>,
}

/// The last synchronisation of a directory.
#[derive(Debug, Clone)]
pub struct DirectorySync {
    pub directory: String,
    pub attempted_at: i64,
    pub succeeded_at: Option<i64>,
    pub error: Option<String>,
    pub users: i64,
    pub groups: i64,
    pub summary: String,
}

#[derive(sqlx::FromRow)]
struct SyncRow {
    directory: String,
    attempted_at: i64,
    succeeded_at: Option<i64>,
    error: Option<String>,
    user_count: i64,
    group_count: i64,
    summary: String,
}

#[derive(sqlx::FromRow)]
struct ExistingUser {
    id: String,
    username: String,
    display_name: String,
    email: Option<String>,
    time_zone: String,
    disabled: i64,
    directory_disabled: i64,
    directory_dn: Option<String>,
}

impl Store {
    /// Applies what a directory says. `complete`: the users and groups are all the directory
    /// has (a synchronisation), so this directory's users missing from them are disabled and
    /// its groups missing are emptied; otherwise (a sign-in) only the given users change.
    pub async fn apply_directory(
        &self,
        actor: &Actor,
        now: i64,
        directory: &str,
        users: &[DirectoryUser],
        groups: &[DirectoryGroup],
        complete: bool,
    ) -> Result<DirectoryChanges> {
        let mut tx = self.write.begin().await?;
        let mut out = DirectoryChanges::default();
        let audit = |action: &'static str, kind: &'static str, id: &str, details: serde_json::Value| {
            NewEvent::success(action, kind, id).with_details(details)
        };

        // Groups: this directory's, by DN.
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT id, name, directory_dn FROM user_groups WHERE directory = $1")
                .bind(directory)
                .fetch_all(&mut *tx)
                .await?;
        let mut group_ids: BTreeMap<String, String> =
            rows.iter().filter_map(|(id, _, dn)| Some((norm(dn.as_deref()?), id.clone()))).collect();
        let mut seen_groups = BTreeSet::new();
        for g in groups {
            let key = norm(&g.dn);
            seen_groups.insert(key.clone());
            if group_ids.contains_key(&key) {
                continue;
            }
            if let Err(e) = validate::name("name", &g.name) {
                out.skipped.push(format!("group {}: {e}", g.dn));
                continue;
            }
            let taken: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT id, directory FROM user_groups WHERE LOWER(name) = LOWER($1)")
                    .bind(&g.name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((_, owner)) = taken {
                let by = owner.map_or("a Portcullis group".to_owned(), |d| format!("a group of directory {d}"));
                out.skipped.push(format!("group {}: the name {:?} is taken by {by}", g.dn, g.name));
                continue;
            }
            let id = new_id();
            sqlx::query(
                "INSERT INTO user_groups (id, name, description, created_at, directory, directory_dn) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(&g.name)
            .bind(format!("from directory {directory}"))
            .bind(now)
            .bind(directory)
            .bind(&g.dn)
            .execute(&mut *tx)
            .await?;
            let details = serde_json::json!({ "name": g.name, "directory": directory, "dn": g.dn });
            append(&mut tx, &self.audit_key, actor, now, &audit("group.create", "user_group", &id, details)).await?;
            out.groups_created.push(g.name.clone());
            group_ids.insert(key, id);
        }

        // Users.
        let existing: Vec<ExistingUser> = sqlx::query_as(
            "SELECT id, username, display_name, email, time_zone, disabled, directory_disabled, directory_dn FROM users \
             WHERE directory = $1",
        )
        .bind(directory)
        .fetch_all(&mut *tx)
        .await?;
        let mut by_dn: BTreeMap<String, &ExistingUser> =
            existing.iter().filter_map(|u| Some((norm(u.directory_dn.as_deref()?), u))).collect();
        let by_name: BTreeMap<String, &ExistingUser> =
            existing.iter().map(|u| (u.username.to_lowercase(), u)).collect();
        let mut present = BTreeSet::new();
        for person in users {
            let key = norm(&person.dn);
            let time_zone = person.time_zone.as_deref().filter(|z| validate::time_zone("time_zone", z).is_ok());
            let found = by_dn.remove(&key).or_else(|| by_name.get(&person.username.to_lowercase()).copied());
            let id = match found {
                Some(u) => {
                    present.insert(u.id.clone());
                    self.update_directory_user(&mut tx, actor, now, directory, u, person, time_zone, &mut out).await?;
                    u.id.clone()
                }
                None => {
                    if let Err(e) = validate::username("username", &person.username) {
                        out.skipped.push(format!("user {}: {e}", person.dn));
                        continue;
                    }
                    let taken: Option<(String, Option<String>)> =
                        sqlx::query_as("SELECT username, directory FROM users WHERE LOWER(username) = LOWER($1)")
                            .bind(&person.username)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some((name, owner)) = taken {
                        let by = owner.map_or("a Portcullis user".to_owned(), |d| format!("a user of directory {d}"));
                        out.skipped.push(format!("user {}: the name {name:?} is taken by {by}", person.dn));
                        continue;
                    }
                    let id = new_id();
                    sqlx::query(
                        "INSERT INTO users (id, username, display_name, email, password_hash, roles, time_zone, \
                         time_zone_locked, disabled, directory_disabled, password_changed_at, created_at, updated_at, \
                         directory, directory_dn) VALUES ($1,$2,$3,$4,$5,'',$6,0,$7,$7,$8,$8,$8,$9,$10)",
                    )
                    .bind(&id)
                    .bind(&person.username)
                    .bind(&person.display_name)
                    .bind(&person.email)
                    .bind(DIRECTORY_PASSWORD)
                    .bind(time_zone.unwrap_or("UTC"))
                    .bind(i64::from(person.disabled))
                    .bind(now)
                    .bind(directory)
                    .bind(&person.dn)
                    .execute(&mut *tx)
                    .await?;
                    let details = serde_json::json!({
                        "username": person.username, "directory": directory, "dn": person.dn, "disabled": person.disabled,
                    });
                    append(&mut tx, &self.audit_key, actor, now, &audit("user.create", "user", &id, details)).await?;
                    out.created.push(person.username.clone());
                    present.insert(id.clone());
                    id
                }
            };
            if users.len() == 1 {
                out.user_id = Some(id.clone());
            }
            // Memberships in this directory's groups: exactly the directory's.
            let want: BTreeSet<String> =
                person.groups.iter().filter_map(|g| group_ids.get(&norm(g)).cloned()).collect();
            let have: BTreeSet<String> = sqlx::query_scalar::<_, String>(
                "SELECT m.group_id FROM user_group_members m JOIN user_groups g ON g.id = m.group_id \
                 WHERE m.member_id = $1 AND g.directory = $2",
            )
            .bind(&id)
            .bind(directory)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            for g in want.difference(&have) {
                sqlx::query("INSERT INTO user_group_members (group_id, member_id) VALUES ($1, $2)")
                    .bind(g)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                let details = serde_json::json!({ "member": id, "directory": directory });
                append(&mut tx, &self.audit_key, actor, now, &audit("group.member_add", "user_group", g, details))
                    .await?;
                out.members_added += 1;
            }
            for g in have.difference(&want) {
                self.remove_member(&mut tx, actor, now, directory, g, &id).await?;
                out.members_removed += 1;
            }
        }

        if complete {
            // This directory's users it no longer has: disabled (kept, with their history).
            for u in existing.iter().filter(|u| !present.contains(&u.id) && u.disabled == 0) {
                self.disable_directory_user(&mut tx, actor, now, directory, &u.id, "no longer in the directory")
                    .await?;
                out.disabled.push((u.id.clone(), u.username.clone()));
            }
            // Its groups it no longer has: emptied.
            for (dn, id) in group_ids.iter().filter(|(dn, _)| !seen_groups.contains(*dn)) {
                let members: Vec<String> =
                    sqlx::query_scalar("SELECT member_id FROM user_group_members WHERE group_id = $1")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                for m in &members {
                    self.remove_member(&mut tx, actor, now, directory, id, m).await?;
                    out.members_removed += 1;
                }
                if !members.is_empty() {
                    let name = rows.iter().find(|(gid, _, _)| gid == id).map(|(_, n, _)| n.clone()).unwrap_or_default();
                    out.groups_emptied.push(if name.is_empty() { dn.clone() } else { name });
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_directory_user(
        &self,
        tx: &mut sqlx::AnyConnection,
        actor: &Actor,
        now: i64,
        directory: &str,
        u: &ExistingUser,
        person: &DirectoryUser,
        time_zone: Option<&str>,
        out: &mut DirectoryChanges,
    ) -> Result<()> {
        let mut changed = serde_json::Map::new();
        let mut username = u.username.clone();
        if person.username != u.username {
            let taken: Option<String> =
                sqlx::query_scalar("SELECT id FROM users WHERE LOWER(username) = LOWER($1) AND id <> $2")
                    .bind(&person.username)
                    .bind(&u.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if taken.is_none() && validate::username("username", &person.username).is_ok() {
                changed.insert("username".into(), person.username.clone().into());
                username = person.username.clone();
            } else {
                out.skipped
                    .push(format!("user {}: cannot be renamed to {:?} (taken or invalid)", person.dn, person.username));
            }
        }
        if person.display_name != u.display_name {
            changed.insert("display_name".into(), person.display_name.clone().into());
        }
        if person.email != u.email {
            changed.insert("email".into(), person.email.clone().into());
        }
        let tz = time_zone.unwrap_or(&u.time_zone);
        if tz != u.time_zone {
            changed.insert("time_zone".into(), tz.into());
        }
        if u.directory_dn.as_deref() != Some(person.dn.as_str()) {
            changed.insert("dn".into(), person.dn.clone().into());
        }
        if !changed.is_empty() {
            sqlx::query(
                "UPDATE users SET username = $1, display_name = $2, email = $3, time_zone = $4, directory_dn = $5, \
                 updated_at = $6 WHERE id = $7",
            )
            .bind(&username)
            .bind(&person.display_name)
            .bind(&person.email)
            .bind(tz)
            .bind(&person.dn)
            .bind(now)
            .bind(&u.id)
            .execute(&mut *tx)
            .await?;
            changed.insert("directory".into(), directory.into());
            append(
                tx,
                &self.audit_key,
                actor,
                now,
                &NewEvent::success("user.update", "user", &u.id).with_details(changed.into()),
            )
            .await?;
            out.updated += 1;
        }
        let was_disabled = u.disabled != 0;
        if person.disabled && !was_disabled {
            self.disable_directory_user(tx, actor, now, directory, &u.id, "disabled in the directory").await?;
            out.disabled.push((u.id.clone(), username));
        } else if !person.disabled && was_disabled && u.directory_disabled != 0 {
            sqlx::query("UPDATE users SET disabled = 0, directory_disabled = 0, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&u.id)
                .execute(&mut *tx)
                .await?;
            let details = serde_json::json!({ "disabled": false, "directory": directory });
            append(
                tx,
                &self.audit_key,
                actor,
                now,
                &NewEvent::success("user.update", "user", &u.id).with_details(details),
            )
            .await?;
            out.enabled.push(username);
        }
        Ok(())
    }

    async fn disable_directory_user(
        &self,
        tx: &mut sqlx::AnyConnection,
        actor: &Actor,
        now: i64,
        directory: &str,
        id: &str,
        why: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE users SET disabled = 1, directory_disabled = 1, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM login_sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        crate::users::revoke_tokens(tx, id, now).await?;
        let details = serde_json::json!({ "disabled": true, "directory": directory, "reason": why });
        append(tx, &self.audit_key, actor, now, &NewEvent::success("user.update", "user", id).with_details(details))
            .await?;
        Ok(())
    }

    async fn remove_member(
        &self,
        tx: &mut sqlx::AnyConnection,
        actor: &Actor,
        now: i64,
        directory: &str,
        group: &str,
        member: &str,
    ) -> Result<()> {
        sqlx::query("DELETE FROM user_group_members WHERE group_id = $1 AND member_id = $2")
            .bind(group)
            .bind(member)
            .execute(&mut *tx)
            .await?;
        let details = serde_json::json!({ "member": member, "directory": directory });
        append(
            tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("group.member_remove", "user_group", group).with_details(details),
        )
        .await?;
        Ok(())
    }

    /// Records a synchronisation's end (success with its summary, or the error).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_directory_sync(
        &self,
        directory: &str,
        now: i64,
        error: Option<&str>,
        users: i64,
        groups: i64,
        summary: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO directory_syncs (directory, attempted_at, succeeded_at, error, user_count, group_count, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (directory) DO UPDATE SET attempted_at = excluded.attempted_at, \
             succeeded_at = COALESCE(excluded.succeeded_at, directory_syncs.succeeded_at), error = excluded.error, \
             user_count = CASE WHEN excluded.error IS NULL THEN excluded.user_count ELSE directory_syncs.user_count END, \
             group_count = CASE WHEN excluded.error IS NULL THEN excluded.group_count ELSE directory_syncs.group_count END, \
             summary = CASE WHEN excluded.error IS NULL THEN excluded.summary ELSE directory_syncs.summary END",
        )
        .bind(directory)
        .bind(now)
        .bind(error.is_none().then_some(now))
        .bind(error)
        .bind(users)
        .bind(groups)
        .bind(summary)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn directory_syncs(&self) -> Result<Vec<DirectorySync>> {
        let rows: Vec<SyncRow> = sqlx::query_as(
            "SELECT directory, attempted_at, succeeded_at, error, user_count, group_count, summary FROM directory_syncs \
             ORDER BY directory",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DirectorySync {
                directory: r.directory,
                attempted_at: r.attempted_at,
                succeeded_at: r.succeeded_at,
                error: r.error,
                users: r.user_count,
                groups: r.group_count,
                summary: r.summary,
            })
            .collect())
    }

    /// How many users came from the directory.
    pub async fn directory_user_count(&self, directory: &str) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE directory = $1")
            .bind(directory)
            .fetch_one(&self.read)
            .await?)
    }

    /// The directory a user comes from, if any.
    pub async fn user_directory(&self, user_id: &str) -> Result<Option<String>> {
        let d: Option<Option<String>> = sqlx::query_scalar("SELECT directory FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?;
        d.ok_or(StoreError::NotFound("user"))
    }

    /// The directory whose group this is, if any (its members are the directory's to set).
    pub async fn group_directory(&self, group_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar::<_, Option<String>>("SELECT directory FROM user_groups WHERE id = $1")
            .bind(group_id)
            .fetch_optional(&self.read)
            .await?
            .flatten())
    }

    /// Of the given users, those disabled (to end their live sessions).
    pub async fn disabled_among(&self, user_ids: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for id in user_ids {
            let d: Option<i64> = sqlx::query_scalar("SELECT disabled FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
            if d.is_none_or(|d| d != 0) {
                out.push(id.clone());
            }
        }
        Ok(out)
    }
}
