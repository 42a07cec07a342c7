//! `portcullis node`: the nodes that share the server's database.

use clap::Subcommand;

use super::signed_in;
use crate::output::print;
use crate::{CliError, GlobalArgs};

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Every node, its state (up, lost, stopped), last heartbeat and live sessions (Auditors,
    /// Appliance Administrators).
    List,
}

pub async fn run(cmd: NodeCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let client = signed_in(g)?;
    match cmd {
        NodeCmd::List => {
            let v = client.get("/api/v1/nodes").await?;
            print(
                g.output,
                &v,
                &["name", "state", "live_sessions", "last_heartbeat_at", "started_at", "version", "this_node"],
            );
        }
    }
    Ok(())
}
