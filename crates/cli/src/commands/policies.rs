use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::signed_in;
use crate::client::{enc, Client};
use crate::output::{done, print};
use crate::{CliError, GlobalArgs, Output};

const ENT_COLUMNS: &[&str] = &["id", "name", "priority", "user_ids", "group_ids", "expires_at"];
const POLICY_COLUMNS: &[&str] = &["id", "name", "entitlement_id", "priority", "access_type", "emergency_allowed"];

#[derive(Debug, Subcommand)]
pub enum EntitlementCmd {
    /// List entitlements, best priority first.
    List,
    /// Show one entitlement.
    Show { id: String },
    /// Create an entitlement from a JSON file (see the API document) or from flags.
    Create {
        name: String,
        /// 1 is the best.
        #[arg(long)]
        priority: i64,
        /// User id or username allowed to request (repeatable).
        #[arg(long = "user")]
        users: Vec<String>,
        /// User group id allowed to request (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Time window DAYS/HH:MM-HH:MM, e.g. mon-fri/08:00-17:00 (repeatable).
        #[arg(long = "window")]
        windows: Vec<String>,
        /// RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Delete an entitlement and all its policies.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// List policies, optionally of one entitlement.
    List {
        #[arg(long)]
        entitlement: Option<String>,
    },
    /// Show one policy with all its settings.
    Show { id: String },
    /// Create a policy from a JSON file with the fields of POST /api/v1/policies.
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace a policy from a JSON file.
    Replace {
        id: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete a policy.
    Delete { id: String },
    /// Which policy would govern a request, and why the others were eliminated.
    Explain {
        /// The requester: user id or username.
        #[arg(long)]
        user: String,
        /// The account id.
        #[arg(long)]
        account: String,
        /// password, ssh_key, ssh, rdp or telnet.
        #[arg(long)]
        access_type: String,
        /// RFC 3339 start of the access (default: now).
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        emergency: bool,
    },
}

/// Accepts a user id or a username.
pub(crate) async fn resolve_user(c: &Client, user: &str) -> Result<String, CliError> {
    if user.len() == 36 && user.chars().filter(|ch| *ch == '-').count() == 4 {
        return Ok(user.to_owned());
    }
    let users = c.get("/api/v1/users?limit=1000").await?;
    users
        .as_array()
        .and_then(|list| list.iter().find(|u| u["username"] == user))
        .and_then(|u| u["id"].as_str().map(str::to_owned))
        .ok_or_else(|| CliError::Usage(format!("no user named '{user}'")))
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
    let shown = match cmd {
        EntitlementCmd::List => c.get("/api/v1/entitlements").await?,
        EntitlementCmd::Show { id } => c.get(&format!("/api/v1/entitlements/{}", enc(&id))).await?,
        EntitlementCmd::Create { name, priority, users, groups, windows, expires_at } => {
            let mut user_ids = Vec::new();
            for u in &users {
                user_ids.push(resolve_user(&c, u).await?);
            }
            let windows = windows.iter().map(|w| window(w)).collect::<Result<Vec<_>, _>>()?;
            let mut body = json!({ "name": name, "priority": priority, "user_ids": user_ids, "group_ids": groups, "windows": windows });
            if let Some(e) = expires_at {
                body["expires_at"] = json!(e);
            }
            c.post("/api/v1/entitlements", &body).await?
        }
        EntitlementCmd::Delete { id } => {
            c.delete(&format!("/api/v1/entitlements/{}", enc(&id))).await?;
            done(g.output, "Entitlement deleted with its policies.");
            return Ok(());
        }
    };
    print(g.output, &shown, ENT_COLUMNS);
    Ok(())
}

pub async fn policies(cmd: PolicyCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let shown = match cmd {
        PolicyCmd::List { entitlement } => {
            let filter = entitlement.map(|e| format!("?entitlement_id={}", enc(&e))).unwrap_or_default();
            c.get(&format!("/api/v1/policies{filter}")).await?
        }
        PolicyCmd::Show { id } => c.get(&format!("/api/v1/policies/{}", enc(&id))).await?,
        PolicyCmd::Create { file } => c.post("/api/v1/policies", &read_json(&file)?).await?,
        PolicyCmd::Replace { id, file } => {
            c.put(&format!("/api/v1/policies/{}", enc(&id)), Some(&read_json(&file)?)).await?
        }
        PolicyCmd::Delete { id } => {
            c.delete(&format!("/api/v1/policies/{}", enc(&id))).await?;
            done(g.output, "Policy deleted.");
            return Ok(());
        }
        PolicyCmd::Explain { user, account, access_type, at, emergency } => {
            let user_id = resolve_user(&c, &user).await?;
            let mut body = json!({ "user_id": user_id, "account_id": account, "access_type": access_type, "emergency": emergency });
            if let Some(at) = at {
                body["at"] = json!(at);
            }
            let r = c.post("/api/v1/policies/explain", &body).await?;
            if g.output == Output::Json {
                print(g.output, &r, &[]);
            } else {
                match r["governing_policy_id"].as_str() {
                    Some(id) => println!(
                        "Governing policy: {id} (evaluated at {} in {})",
                        r["at"].as_str().unwrap_or(""),
                        r["time_zone"].as_str().unwrap_or("")
                    ),
                    None => println!(
                        "No policy governs this request (evaluated at {} in {}).",
                        r["at"].as_str().unwrap_or(""),
                        r["time_zone"].as_str().unwrap_or("")
                    ),
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
