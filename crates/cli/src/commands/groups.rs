use clap::Subcommand;
use serde_json::json;

use super::signed_in;
use crate::client::enc;
use crate::output::{done, print};
use crate::{CliError, GlobalArgs};

const COLUMNS: &[&str] = &["id", "name", "description", "members"];

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List groups.
    List,
    /// Show one group with its members.
    Show { id: String },
    /// Create a group.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Rename or redescribe a group.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a group (its members stay).
    Delete { id: String },
    /// Add a member by id.
    AddMember { id: String, member_id: String },
    /// Remove a member by id.
    RemoveMember { id: String, member_id: String },
}

pub async fn run(cmd: GroupCmd, base: &str, noun: &str, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let item = |id: &str| format!("{base}/{}", enc(id));
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
            c.put(&format!("{}/members/{}", item(&id), enc(&member_id)), None).await?
        }
        GroupCmd::RemoveMember { id, member_id } => {
            c.delete(&format!("{}/members/{}", item(&id), enc(&member_id))).await?
        }
    };
    print(g.output, &shown, COLUMNS);
    Ok(())
}
