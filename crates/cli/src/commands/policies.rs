use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::signed_in;
use crate::client::{enc, Client};
use crate::output::{done, print};
use crate::resolve::{self, Kind};
use crate::{CliError, GlobalArgs, Output};

const ENT_COLUMNS: &[&str] =
    &["id", "name", "priority", "user_names", "group_names", "windows", "expires_at", "unconfirmed_by"];
const POLICY_COLUMNS: &[&str] =
    &["id", "name", "entitlement_name", "priority", "access_type", "emergency_allowed", "unconfirmed_by"];

#[derive(Debug, Subcommand)]
pub enum EntitlementCmd {
    /// List entitlements, best priority first.
    List,
    /// Show one entitlement.
    Show {
        /// The entitlement's name or id.
        #[arg(value_name = "ENTITLEMENT")]
        id: String,
    },
    /// Create an entitlement: who may request, when.
    Create {
        name: String,
        /// 1 is the best.
        #[arg(long)]
        priority: i64,
        /// A user allowed to request: user name or id (repeatable).
        #[arg(long = "user")]
        users: Vec<String>,
        /// A user group whose members may request: name or id (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Time window DAYS/HH:MM-HH:MM, e.g. mon-fri/08:00-17:00 (repeatable).
        #[arg(long = "window")]
        windows: Vec<String>,
        /// RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change an entitlement: only what you name changes.
    Update {
        /// The entitlement's name or id.
        #[arg(value_name = "ENTITLEMENT")]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        priority: Option<i64>,
        /// Add a user (user name or id; repeatable).
        #[arg(long = "add-user")]
        add_users: Vec<String>,
        /// Remove a user (repeatable).
        #[arg(long = "remove-user")]
        remove_users: Vec<String>,
        /// Add a user group (name or id; repeatable).
        #[arg(long = "add-group")]
        add_groups: Vec<String>,
        /// Remove a user group (repeatable).
        #[arg(long = "remove-group")]
        remove_groups: Vec<String>,
        /// Replace the time windows: DAYS/HH:MM-HH:MM (repeatable).
        #[arg(long = "window")]
        windows: Vec<String>,
        /// Remove every time window (no time restriction).
        #[arg(long, conflicts_with = "windows")]
        no_windows: bool,
        /// RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<String>,
        /// The entitlement no longer expires.
        #[arg(long, conflicts_with = "expires_at")]
        no_expiry: bool,
    },
    /// Delete an entitlement and all its policies.
    Delete {
        /// The entitlement's name or id.
        #[arg(value_name = "ENTITLEMENT")]
        id: String,
    },
    /// Confirm an entitlement as it is, so that those who changed it (unconfirmed_by) get
    /// access through it: by a Security Policy Administrator who made none of the changes.
    Confirm {
        /// The entitlement's name or id.
        #[arg(value_name = "ENTITLEMENT")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// List policies, optionally of one entitlement.
    List {
        /// The entitlement's name or id.
        #[arg(long)]
        entitlement: Option<String>,
    },
    /// Show one policy with all its settings.
    Show {
        /// The policy's name or id.
        #[arg(value_name = "POLICY")]
        id: String,
    },
    /// Create a policy from a JSON file with the fields of POST /api/v1/policies. Users,
    /// groups, assets, accounts (ACCOUNT@ASSET) and the entitlement may be given by name.
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace a policy from a JSON file (names allowed, as for create).
    Replace {
        /// The policy's name or id.
        #[arg(value_name = "POLICY")]
        id: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete a policy.
    Delete {
        /// The policy's name or id.
        #[arg(value_name = "POLICY")]
        id: String,
    },
    /// Confirm a policy as it is (see `entitlement confirm`).
    Confirm {
        /// The policy's name or id.
        #[arg(value_name = "POLICY")]
        id: String,
    },
    /// Which policy would govern a request, and why the others were eliminated.
    Explain {
        /// The requester: user name or id.
        #[arg(long)]
        user: String,
        /// The account: ACCOUNT@ASSET or its id.
        #[arg(long)]
        account: String,
        /// password, ssh_key, ssh, rdp or telnet.
        #[arg(long)]
        access_type: String,
        /// Start of the access: a local time in the requester's time zone (2026-12-01T09:00)
        /// or RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        emergency: bool,
    },
}

/// Accepts a user id or a username.
pub(crate) async fn resolve_user(c: &Client, user: &str) -> Result<String, CliError> {
    resolve::id(c, Kind::User, user).await
}

fn window(text: &str) -> Result<Value, CliError> {
    let bad = || CliError::Usage(format!("--window {text}: expected DAYS/HH:MM-HH:MM, e.g. mon-fri/08:00-17:00"));
    let (days, range) = text.split_once('/').ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    Ok(json!({ "days": days.split(',').collect::<Vec<_>>(), "start": start, "end": end }))
}

fn read_json(path: &PathBuf) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Io(path.display().to_string(), e))?;
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("{}: not JSON: {e}", path.display())))
}

pub async fn entitlements(cmd: EntitlementCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let item = |id: &str| format!("/api/v1/entitlements/{}", enc(id));
    let shown = match cmd {
        EntitlementCmd::List => c.get("/api/v1/entitlements").await?,
        EntitlementCmd::Show { id } => c.get(&item(&resolve::id(&c, Kind::Entitlement, &id).await?)).await?,
        EntitlementCmd::Create { name, priority, users, groups, windows, expires_at, description } => {
            let windows = windows.iter().map(|w| window(w)).collect::<Result<Vec<_>, _>>()?;
            let mut body = json!({
                "name": name, "description": description, "priority": priority,
                "user_ids": resolve::ids(&c, Kind::User, &users).await?,
                "group_ids": resolve::ids(&c, Kind::UserGroup, &groups).await?,
                "windows": windows,
            });
            if let Some(e) = expires_at {
                body["expires_at"] = json!(e);
            }
            c.post("/api/v1/entitlements", &body).await?
        }
        EntitlementCmd::Update {
            id,
            name,
            description,
            priority,
            add_users,
            remove_users,
            add_groups,
            remove_groups,
            windows,
            no_windows,
            expires_at,
            no_expiry,
        } => {
            let id = resolve::id(&c, Kind::Entitlement, &id).await?;
            let now = c.get(&item(&id)).await?;
            let list = |key: &str| -> Vec<String> {
                now[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
            };
            let mut users = list("user_ids");
            let mut groups = list("group_ids");
            let change = |set: &mut Vec<String>, add: Vec<String>, remove: Vec<String>| {
                set.retain(|x| !remove.contains(x));
                for a in add {
                    if !set.contains(&a) {
                        set.push(a);
                    }
                }
            };
            change(
                &mut users,
                resolve::ids(&c, Kind::User, &add_users).await?,
                resolve::ids(&c, Kind::User, &remove_users).await?,
            );
            change(
                &mut groups,
                resolve::ids(&c, Kind::UserGroup, &add_groups).await?,
                resolve::ids(&c, Kind::UserGroup, &remove_groups).await?,
            );
            let windows = if no_windows {
                json!([])
            } else if windows.is_empty() {
                now["windows"].clone()
            } else {
                Value::Array(windows.iter().map(|w| window(w)).collect::<Result<Vec<_>, _>>()?)
            };
            let mut body = json!({
                "name": name.map_or(now["name"].clone(), Value::from),
                "description": description.map_or(now["description"].clone(), Value::from),
                "priority": priority.map_or(now["priority"].clone(), Value::from),
                "user_ids": users,
                "group_ids": groups,
                "windows": windows,
            });
            match (expires_at, no_expiry) {
                (Some(e), _) => body["expires_at"] = json!(e),
                (None, false) if !now["expires_at"].is_null() => body["expires_at"] = now["expires_at"].clone(),
                _ => {}
            }
            c.put(&item(&id), Some(&body)).await?
        }
        EntitlementCmd::Delete { id } => {
            c.delete(&item(&resolve::id(&c, Kind::Entitlement, &id).await?)).await?;
            done(g.output, "Entitlement deleted with its policies.");
            return Ok(());
        }
        EntitlementCmd::Confirm { id } => {
            let path = format!("{}/confirm", item(&resolve::id(&c, Kind::Entitlement, &id).await?));
            c.post(&path, &json!({})).await?
        }
    };
    print(g.output, &shown, ENT_COLUMNS);
    Ok(())
}

pub async fn policies(cmd: PolicyCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let item = |id: &str| format!("/api/v1/policies/{}", enc(id));
    let shown = match cmd {
        PolicyCmd::List { entitlement } => {
            let filter = match entitlement {
                Some(e) => format!("?entitlement_id={}", enc(&resolve::id(&c, Kind::Entitlement, &e).await?)),
                None => String::new(),
            };
            c.get(&format!("/api/v1/policies{filter}")).await?
        }
        PolicyCmd::Show { id } => c.get(&item(&resolve::id(&c, Kind::Policy, &id).await?)).await?,
        PolicyCmd::Create { file } => {
            let mut body = read_json(&file)?;
            resolve::policy_body(&c, &mut body).await?;
            c.post("/api/v1/policies", &body).await?
        }
        PolicyCmd::Replace { id, file } => {
            let mut body = read_json(&file)?;
            resolve::policy_body(&c, &mut body).await?;
            c.put(&item(&resolve::id(&c, Kind::Policy, &id).await?), Some(&body)).await?
        }
        PolicyCmd::Delete { id } => {
            c.delete(&item(&resolve::id(&c, Kind::Policy, &id).await?)).await?;
            done(g.output, "Policy deleted.");
            return Ok(());
        }
        PolicyCmd::Confirm { id } => {
            let path = format!("{}/confirm", item(&resolve::id(&c, Kind::Policy, &id).await?));
            c.post(&path, &json!({})).await?
        }
        PolicyCmd::Explain { user, account, access_type, at, emergency } => {
            let user_id = resolve_user(&c, &user).await?;
            let account_id = resolve::id(&c, Kind::Account, &account).await?;
            let mut body = json!({ "user_id": user_id, "account_id": account_id, "access_type": access_type, "emergency": emergency });
            if let Some(at) = at {
                body["at"] = json!(at);
            }
            let r = c.post("/api/v1/policies/explain", &body).await?;
            if g.output == Output::Json {
                print(g.output, &r, &[]);
            } else {
                // The requester's wall-clock time: windows are read in their zone.
                let when = format!("{user}'s local time {}", r["at_local"].as_str().unwrap_or(""));
                match r["governing_policy_name"].as_str() {
                    Some(name) => println!("Governing policy: {name} (for {account} at {when})"),
                    None => println!("No policy governs this request (for {account} at {when})."),
                }
                print(g.output, &r["candidates"], &["policy_name", "entitlement_name", "outcome", "reason"]);
                match r["out_of_scope_policies"].as_u64() {
                    Some(0) | None => {}
                    Some(n) => {
                        println!("{n} other polic{} do not cover this account.", if n == 1 { "y" } else { "ies" })
                    }
                }
            }
            return Ok(());
        }
    };
    print(g.output, &shown, POLICY_COLUMNS);
    Ok(())
}
