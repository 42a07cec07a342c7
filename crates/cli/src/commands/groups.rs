use clap::Subcommand;
use serde_json::json;

use super::signed_in;
use crate::client::enc;
use crate::output::{done, print};
use crate::resolve::{self, Kind};
use crate::{CliError, GlobalArgs};

const COLUMNS: &[&str] = &["id", "name", "description", "member_names"];

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List groups.
    List,
    /// Show one group with its members.
    Show {
        /// The group's name or id.
        #[arg(value_name = "GROUP")]
        id: String,
    },
    /// Create a group.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Rename or redescribe a group.
    Update {
        /// The group's name or id.
        #[arg(value_name = "GROUP")]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a group (its members stay).
    Delete {
        /// The group's name or id.
        #[arg(value_name = "GROUP")]
        id: String,
    },
    /// Add a member: a user name, an asset name or ACCOUNT@ASSET (or its id).
    AddMember {
        /// The group's name or id.
        #[arg(value_name = "GROUP")]
        id: String,
        #[arg(value_name = "MEMBER")]
        member_id: String,
    },
    /// Remove a member (by name or id).
    RemoveMember {
        /// The group's name or id.
        #[arg(value_name = "GROUP")]
        id: String,
        #[arg(value_name = "MEMBER")]
        member_id: String,
    },
}

/// Which groups a command manages: their route, their noun and the kinds of the group and
/// its members.
pub struct Groups {
    pub base: &'static str,
    pub kind: Kind,
    pub member: Kind,
}

pub const USER_GROUPS: Groups = Groups { base: "/api/v1/user-groups", kind: Kind::UserGroup, member: Kind::User };
pub const ASSET_GROUPS: Groups = Groups { base: "/api/v1/asset-groups", kind: Kind::AssetGroup, member: Kind::Asset };
pub const ACCOUNT_GROUPS: Groups =
    Groups { base: "/api/v1/account-groups", kind: Kind::AccountGroup, member: Kind::Account };

fn target(cmd: &GroupCmd) -> Option<&str> {
    match cmd {
        GroupCmd::Show { id }
        | GroupCmd::Update { id, .. }
        | GroupCmd::Delete { id }
        | GroupCmd::AddMember { id, .. }
        | GroupCmd::RemoveMember { id, .. } => Some(id),
        GroupCmd::List | GroupCmd::Create { .. } => None,
    }
}

pub async fn run(cmd: GroupCmd, groups: Groups, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let (base, noun) = (groups.base, groups.kind.noun());
    let resolved = match target(&cmd) {
        Some(t) => resolve::id(&c, groups.kind, t).await?,
        None => String::new(),
    };
    let item = |_: &str| format!("{base}/{}", enc(&resolved));
    let shown = match cmd {
        GroupCmd::List => c.get(&format!("{base}?limit=1000")).await?,
        GroupCmd::Show { id } => c.get(&item(&id)).await?,
        GroupCmd::Create { name, description } => {
            c.post(base, &json!({ "name": name, "description": description })).await?
        }
        GroupCmd::Update { id, name, description } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            c.patch(&item(&id), &body).await?
        }
        GroupCmd::Delete { id } => {
            c.delete(&item(&id)).await?;
            done(g.output, &format!("The {noun} was deleted."));
            return Ok(());
        }
        GroupCmd::AddMember { id, member_id } => {
            let member = resolve::id(&c, groups.member, &member_id).await?;
            c.put(&format!("{}/members/{}", item(&id), enc(&member)), None).await?
        }
        GroupCmd::RemoveMember { id, member_id } => {
            let member = resolve::id(&c, groups.member, &member_id).await?;
            c.delete(&format!("{}/members/{}", item(&id), enc(&member))).await?
        }
    };
    print(g.output, &shown, COLUMNS);
    Ok(())
}
