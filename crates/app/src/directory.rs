//! Directory users and groups (`[directories.NAME]`): sign-in by the directory's bind, the
//! synchronisation that mirrors users and groups into Portcullis, and the end of live sessions
//! of users the directory disabled.
//!
//! The sync model: a synchronisation reads *everything* first (users, disabled users, groups
//! and their members, nested groups resolved) and applies it in one transaction; a directory
//! that fails, times out or answers nothing changes nothing. At sign-in the one user and their
//! groups are applied the same way. Directory groups are Portcullis user groups whose members
//! only the directory sets, so they work wherever groups do.

use std::time::Duration;

use portcullis_directory::{Directory, DirectoryError, Login, Person};
use portcullis_store::{
    Actor, DirectoryChanges, DirectoryGroup, DirectorySync, DirectoryUser, NewEvent, Outcome, User,
};
use serde_json::json;

use crate::auth::Caller;
use crate::error::{AppError, AppResult, ErrorKind};
use crate::state::App;

/// A configured directory connection and its schedule.
#[derive(Clone)]
pub struct DirectoryConn {
    pub directory: Directory,
    /// How often the whole directory is read (0: only at sign-in and on demand).
    pub sync_interval: Duration,
}

/// What a directory said about a sign-in.
pub enum SignIn {
    /// No configured directory has the name.
    Unknown,
    /// The directory refused the password (or has the user disabled): the user, when there is
    /// one in Portcullis.
    Refused { user_id: Option<String>, reason: &'static str },
    /// Signed in: the Portcullis user, created or refreshed from the directory.
    Ok(Box<User>),
}

fn actor(directory: &str, source: &str) -> Actor {
    Actor { id: String::new(), name: format!("directory {directory}"), source: source.to_owned() }
}

fn unavailable(name: &str, e: &DirectoryError) -> AppError {
    AppError::new(
        ErrorKind::Upstream,
        "directory_unavailable",
        format!(
            "directory users cannot sign in now: the directory {name} did not answer as it should ({e}); \
             local users can still sign in — try again later or tell an Appliance Administrator"
        ),
    )
}

fn to_store(p: &Person) -> DirectoryUser {
    DirectoryUser {
        dn: p.dn.clone(),
        username: p.username.clone(),
        display_name: p.display_name.clone(),
        email: p.email.clone(),
        time_zone: p.time_zone.clone(),
        disabled: p.disabled,
        groups: p.groups.clone(),
    }
}

fn find<'a>(state: &'a App, name: &str) -> Option<&'a DirectoryConn> {
    state.directories.iter().find(|d| d.directory.name() == name)
}

/// Signs `username` in against the directory `only` (a known directory user), or against
/// each configured directory in order until one has the name. A directory that cannot be
/// asked fails the sign-in closed (`directory_unavailable`), so a down directory never lets
/// anyone in, and never locks anyone out for its own failure.
pub async fn sign_in(
    state: &App,
    source: &str,
    only: Option<&str>,
    username: &str,
    password: &str,
) -> AppResult<SignIn> {
    if portcullis_core::validate::username("username", username).is_err() {
        return Ok(SignIn::Unknown);
    }
    let candidates: Vec<&DirectoryConn> = match only {
        Some(name) => match find(state, name) {
            Some(d) => vec![d],
            None => return Ok(SignIn::Refused { user_id: None, reason: "directory no longer configured" }),
        },
        None => state.directories.iter().collect(),
    };
    for conn in candidates {
        let d = &conn.directory;
        let login = d.authenticate(username, password).await.map_err(|e| {
            state.metrics.directory_errors.inc();
            tracing::warn!(directory = d.name(), error = %e, "directory sign-in failed");
            unavailable(d.name(), &e)
        })?;
        let now = state.now();
        match login {
            Login::Unknown => continue,
            Login::WrongPassword { .. } => {
                let user_id = state.store.login_state(username).await?.map(|l| l.user.id);
                return Ok(SignIn::Refused { user_id, reason: "wrong password" });
            }
            Login::Disabled { person } => {
                let changes = state
                    .store
                    .apply_directory(&actor(d.name(), source), now, d.name(), &[to_store(&person)], &[], false)
                    .await?;
                end_sessions(state, &changes).await;
                return Ok(SignIn::Refused { user_id: changes.user_id, reason: "account disabled" });
            }
            Login::Ok { person, groups } => {
                let groups: Vec<DirectoryGroup> =
                    groups.into_iter().map(|g| DirectoryGroup { dn: g.dn, name: g.name }).collect();
                let changes = state
                    .store
                    .apply_directory(&actor(d.name(), source), now, d.name(), &[to_store(&person)], &groups, false)
                    .await?;
                let Some(id) = changes.user_id else {
                    // The name is taken by a Portcullis user or another directory's user.
                    tracing::warn!(directory = d.name(), skipped = ?changes.skipped, "directory user not admitted");
                    return Ok(SignIn::Refused { user_id: None, reason: "name taken by another user" });
                };
                return Ok(SignIn::Ok(Box::new(state.store.user(&id).await?)));
            }
        }
    }
    Ok(SignIn::Unknown)
}

/// Ends the live sessions of users a change disabled (this node's at once, the other nodes'
/// through the database).
async fn end_sessions(state: &App, changes: &DirectoryChanges) {
    const WHY: &str = "your account was disabled in the directory";
    for (id, name) in &changes.disabled {
        let n = state.live.terminate_user(id, WHY);
        if n > 0 {
            tracing::info!(user = %name, sessions = n, "ended the live sessions of a user the directory disabled");
        }
        crate::cluster::send(state, &crate::cluster::Message::TerminateUser { user: id.clone(), reason: WHY.into() })
            .await;
    }
}

/// Ends this node's live sessions of users who are disabled now (by a directory
/// synchronisation on any node, or by an administrator).
pub async fn end_sessions_of_disabled(state: &App) -> AppResult<usize> {
    let users = state.live.users();
    if users.is_empty() {
        return Ok(0);
    }
    let mut ended = 0;
    for id in state.store.disabled_among(&users).await? {
        ended += state.live.terminate_user(&id, "your account was disabled");
    }
    Ok(ended)
}

/// The outcome of one synchronisation.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub directory: String,
    pub users: usize,
    pub groups: usize,
    pub changes: DirectoryChanges,
}

impl SyncReport {
    pub fn summary(&self) -> String {
        let c = &self.changes;
        format!(
            "{} users and {} groups read; {} users created, {} updated, {} disabled, {} enabled; {} groups created, \
             {} emptied; {} memberships added, {} removed; {} entries skipped",
            self.users,
            self.groups,
            c.created.len(),
            c.updated,
            c.disabled.len(),
            c.enabled.len(),
            c.groups_created.len(),
            c.groups_emptied.len(),
            c.members_added,
            c.members_removed,
            c.skipped.len()
        )
    }
}

/// Reads the directory `name` whole and applies it. Nothing changes when the read fails.
pub async fn sync(state: &App, name: &str, source: &str) -> AppResult<SyncReport> {
    let conn = find(state, name).ok_or_else(|| {
        AppError::new(ErrorKind::NotFound, "directory_not_found", format!("no directory named {name:?} is configured"))
    })?;
    let d = &conn.directory;
    let actor = actor(name, source);
    let result = async {
        let snapshot = d.snapshot().await.map_err(|e| {
            AppError::new(
                ErrorKind::Upstream,
                "directory_unavailable",
                format!("cannot read directory {name}: {e}; nothing was changed"),
            )
        })?;
        if snapshot.users.is_empty() && state.store.directory_user_count(name).await? > 0 {
            return Err(AppError::new(
                ErrorKind::Upstream,
                "directory_empty",
                format!(
                    "directory {name} returned no users under {} matching {}, though Portcullis has users from it; \
                     nothing was changed (check user_base and user_filter)",
                    d.settings().user_base,
                    d.settings().user_filter
                ),
            ));
        }
        let users: Vec<DirectoryUser> = snapshot.users.iter().map(to_store).collect();
        let groups: Vec<DirectoryGroup> =
            snapshot.groups.iter().map(|g| DirectoryGroup { dn: g.dn.clone(), name: g.name.clone() }).collect();
        let mut changes = state.store.apply_directory(&actor, state.now(), name, &users, &groups, true).await?;
        changes.skipped.extend(snapshot.skipped);
        Ok(SyncReport { directory: name.to_owned(), users: users.len(), groups: groups.len(), changes })
    }
    .await;
    let now = state.now();
    match &result {
        Ok(report) => {
            end_sessions(state, &report.changes).await;
            let summary = report.summary();
            state
                .store
                .record_directory_sync(name, now, None, report.users as i64, report.groups as i64, &summary)
                .await?;
            let details = json!({
                "summary": summary,
                "created": report.changes.created,
                "disabled": report.changes.disabled.iter().map(|(_, n)| n).collect::<Vec<_>>(),
                "skipped": report.changes.skipped.iter().take(50).collect::<Vec<_>>(),
            });
            state
                .store
                .record(&actor, now, NewEvent::success("directory.sync", "directory", name).with_details(details))
                .await?;
            tracing::info!(directory = name, "{summary}");
        }
        Err(e) => {
            state.metrics.directory_errors.inc();
            tracing::warn!(directory = name, error = %e.message, "directory synchronisation failed");
            state.store.record_directory_sync(name, now, Some(&e.message), 0, 0, "").await?;
            let event = NewEvent::success("directory.sync", "directory", name)
                .with_outcome(Outcome::Failure)
                .with_details(json!({ "code": e.code, "reason": e.message }));
            state.store.record(&actor, now, event).await?;
        }
    }
    result
}

/// Synchronisation on demand, for Appliance and User Administrators.
pub async fn sync_now(state: &App, caller: &Caller, name: &str) -> AppResult<SyncReport> {
    use portcullis_core::role::Role;
    if !(caller.has(Role::ApplianceAdmin) || caller.has(Role::UserAdmin)) {
        return Err(AppError::forbidden(
            "synchronising a directory needs one of the roles: appliance_admin, user_admin",
        ));
    }
    sync(state, name, &caller.source).await
}

fn may_administer(caller: &Caller) -> AppResult<()> {
    use portcullis_core::role::Role;
    if caller.has(Role::ApplianceAdmin) || caller.has(Role::UserAdmin) || caller.has(Role::Auditor) {
        Ok(())
    } else {
        Err(AppError::forbidden("directories are for the roles: appliance_admin, user_admin, auditor"))
    }
}

/// A configured directory and its last synchronisation.
pub struct DirectoryStatus {
    pub name: String,
    pub url: String,
    pub sync_interval: Duration,
    pub last: Option<DirectorySync>,
}

pub async fn list(state: &App, caller: &Caller) -> AppResult<Vec<DirectoryStatus>> {
    may_administer(caller)?;
    let syncs = state.store.directory_syncs().await?;
    Ok(state
        .directories
        .iter()
        .map(|c| DirectoryStatus {
            name: c.directory.name().to_owned(),
            url: c.directory.settings().url.clone(),
            sync_interval: c.sync_interval,
            last: syncs.iter().find(|s| s.directory == c.directory.name()).cloned(),
        })
        .collect())
}

/// Runs each directory's synchronisation when due, and ends the live sessions of disabled users
/// every few seconds (whoever disabled them, on whichever node).
pub async fn run(state: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: std::collections::HashMap<String, tokio::time::Instant> = Default::default();
    loop {
        tick.tick().await;
        for conn in state.directories.iter() {
            let name = conn.directory.name();
            if conn.sync_interval.is_zero() || last.get(name).is_some_and(|t| t.elapsed() < conn.sync_interval) {
                continue;
            }
            // One node synchronises each directory (the lease outlasts the interval a little,
            // so another node takes over only when this one stopped).
            let hold = conn.sync_interval + Duration::from_secs(30);
            if !crate::cluster::lead(&state, &format!("directory-sync:{name}"), hold).await {
                continue;
            }
            last.insert(name.to_owned(), tokio::time::Instant::now());
            // Errors are recorded and audited by `sync`.
            let _ = sync(&state, name, "local").await;
        }
        if let Err(e) = end_sessions_of_disabled(&state).await {
            tracing::warn!(error = %e.message, "cannot check live sessions against disabled users");
        }
    }
}
