use clap::Subcommand;
use serde_json::{json, Value};

use super::{read_secret, signed_in};
use crate::client::enc;
use crate::output::{done, print};
use crate::resolve::{self, Kind};
use crate::{CliError, GlobalArgs};

const COLUMNS: &[&str] =
    &["id", "username", "display_name", "roles", "time_zone", "disabled", "locked_until", "totp_enabled", "directory"];

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// List users.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one user (by user name or id).
    Show {
        /// User name or id.
        #[arg(value_name = "USER")]
        id: String,
    },
    /// Create a user; the initial password comes from PORTCULLIS_NEW_PASSWORD or a prompt, or,
    /// with --invite, the user is mailed a link to set their own.
    Create {
        username: String,
        /// Mail the user a one-time link to set their own password (needs --email and e-mail
        /// configured on the server); you never know it.
        #[arg(long)]
        invite: bool,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// IANA time zone (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// Forbid the user to change their time zone.
        #[arg(long)]
        lock_time_zone: bool,
        /// Administrative role (repeatable): appliance_admin, security_policy_admin,
        /// user_admin, asset_admin, auditor.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Change a user's profile, time-zone rule or disabled flag.
    Update {
        /// User name or id.
        #[arg(value_name = "USER")]
        id: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        time_zone: Option<String>,
        #[arg(long)]
        lock_time_zone: Option<bool>,
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Delete a user (the audit log keeps their events).
    Delete {
        /// User name or id.
        #[arg(value_name = "USER")]
        id: String,
    },
    /// Replace a user's administrative roles (Appliance Administrators).
    Roles {
        /// User name or id.
        #[arg(value_name = "USER")]
        id: String,
        /// Role (repeatable); none removes all.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Reset a user's password: it stops working, their sessions and API tokens end, and they
    /// are mailed a one-time link to choose a new one (you never see it).
    #[command(alias = "set-password")]
    ResetPassword {
        /// User name or id.
        #[arg(value_name = "USER")]
        id: String,
    },
    /// Lift a lockout after failed sign-ins.
    Unlock {
        /// User name or id.
        #[arg(value_name = "USER")]
        id: String,
    },
    /// Remove a user's one-time-code enrolment.
    ResetTotp {
        /// User name or id.
        #[arg(value_name = "USER")]
        id: String,
    },
    /// Link a directory account (ACCOUNT@DIRECTORY) to a user: sessions of policies in Linked
    /// Account mode log in with it.
    LinkAccount {
        /// User name or id.
        #[arg(value_name = "USER")]
        id: String,
        /// ACCOUNT@DIRECTORY (an account of a directory asset), or its id.
        account: String,
    },
    /// Remove a linked directory account from a user.
    UnlinkAccount {
        #[arg(value_name = "USER")]
        id: String,
        account: String,
    },
    /// A user's linked directory accounts.
    LinkedAccounts {
        #[arg(value_name = "USER")]
        id: String,
    },
}

/// The user a command names, by user name or id.
fn target(cmd: &UserCmd) -> Option<&str> {
    match cmd {
        UserCmd::Show { id }
        | UserCmd::Update { id, .. }
        | UserCmd::Delete { id }
        | UserCmd::Roles { id, .. }
        | UserCmd::ResetPassword { id }
        | UserCmd::Unlock { id }
        | UserCmd::ResetTotp { id }
        | UserCmd::LinkAccount { id, .. }
        | UserCmd::UnlinkAccount { id, .. }
        | UserCmd::LinkedAccounts { id } => Some(id),
        UserCmd::List { .. } | UserCmd::Create { .. } => None,
    }
}

pub async fn run(cmd: UserCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let resolved = match target(&cmd) {
        Some(t) => resolve::id(&c, Kind::User, t).await?,
        None => String::new(),
    };
    let item = |_: &str| format!("/api/v1/users/{}", enc(&resolved));
    let shown: Value = match cmd {
        UserCmd::List { limit, offset } => {
            let v = c.get(&format!("/api/v1/users?limit={limit}&offset={offset}")).await?;
            print(g.output, &v, COLUMNS);
            return Ok(());
        }
        UserCmd::Show { id } => c.get(&item(&id)).await?,
        UserCmd::Create { username, invite, display_name, email, time_zone, lock_time_zone, roles } => {
            let mut body = json!({ "username": username, "time_zone_locked": lock_time_zone, "roles": roles });
            if !invite {
                let password = read_secret("Initial password: ", "PORTCULLIS_NEW_PASSWORD", false)?;
                body["password"] = json!(&*password);
            }
            for (k, v) in [("display_name", display_name), ("email", email), ("time_zone", time_zone)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            c.post("/api/v1/users", &body).await?
        }
        UserCmd::Update { id, display_name, email, time_zone, lock_time_zone, disabled } => {
            let mut body = json!({});
            for (k, v) in [("display_name", display_name), ("email", email), ("time_zone", time_zone)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if let Some(v) = lock_time_zone {
                body["time_zone_locked"] = json!(v);
            }
            if let Some(v) = disabled {
                body["disabled"] = json!(v);
            }
            c.patch(&item(&id), &body).await?
        }
        UserCmd::Delete { id } => {
            c.delete(&item(&id)).await?;
            done(g.output, "User deleted.");
            return Ok(());
        }
        UserCmd::Roles { id, roles } => {
            c.put(&format!("{}/roles", item(&id)), Some(&json!({ "roles": roles }))).await?
        }
        UserCmd::ResetPassword { id } => {
            let r = c.post(&format!("{}/password", item(&id)), &json!({})).await?;
            match g.output {
                crate::Output::Json => print(g.output, &r, &[]),
                _ => done(g.output, &format!("{}.", r["message"].as_str().unwrap_or("Reset"))),
            }
            return Ok(());
        }
        UserCmd::Unlock { id } => c.post(&format!("{}/unlock", item(&id)), &json!({})).await?,
        UserCmd::ResetTotp { id } => {
            c.post(&format!("{}/totp/reset", item(&id)), &json!({})).await?;
            done(g.output, "One-time-code enrolment removed.");
            return Ok(());
        }
        UserCmd::LinkAccount { id, account } => {
            let account_id = resolve::id(&c, Kind::Account, &account).await?;
            c.put(&format!("{}/linked-accounts/{}", item(&id), enc(&account_id)), None).await?;
            done(g.output, &format!("{account} is linked to {id}."));
            return Ok(());
        }
        UserCmd::UnlinkAccount { id, account } => {
            let account_id = resolve::id(&c, Kind::Account, &account).await?;
            c.delete(&format!("{}/linked-accounts/{}", item(&id), enc(&account_id))).await?;
            done(g.output, &format!("{account} is no longer linked to {id}."));
            return Ok(());
        }
        UserCmd::LinkedAccounts { id } => {
            let v = c.get(&format!("{}/linked-accounts", item(&id))).await?;
            print(g.output, &v, &["account_name", "account_id"]);
            return Ok(());
        }
    };
    print(g.output, &shown, COLUMNS);
    Ok(())
}
