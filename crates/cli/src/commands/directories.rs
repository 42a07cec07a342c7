//! `portcullis directory`: the LDAP / Active Directory connections of the server and their
//! synchronisations.

use clap::Subcommand;
use serde_json::Value;

use super::signed_in;
use crate::client::enc;
use crate::output::print;
use crate::{CliError, GlobalArgs, Output};

#[derive(Debug, Subcommand)]
pub enum DirectoryCmd {
    /// The configured directories and how their last synchronisation went (User and Appliance
    /// Administrators, Auditors).
    List,
    /// Reads a directory's users and groups now and applies them, all or nothing (User and
    /// Appliance Administrators). Users disabled in or gone from the directory are disabled
    /// and their live sessions end.
    Sync {
        /// The directory's name (`[directories.NAME]` in the server's configuration).
        name: String,
    },
}

pub async fn run(cmd: DirectoryCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let client = signed_in(g)?;
    match cmd {
        DirectoryCmd::List => {
            let v = client.get("/api/v1/directories").await?;
            if g.output == Output::Table && v.as_array().is_none_or(Vec::is_empty) {
                println!("No directory is configured: users are Portcullis users only ([directories.NAME] in the server's configuration adds one).");
                return Ok(());
            }
            print(
                g.output,
                &v,
                &["name", "url", "sync_interval_seconds", "last_success_at", "users", "groups", "last_error"],
            );
        }
        DirectoryCmd::Sync { name } => {
            let v = client.post(&format!("/api/v1/directories/{}/sync", enc(&name)), &serde_json::json!({})).await?;
            if g.output == Output::Json {
                print(g.output, &v, &[]);
                return Ok(());
            }
            println!("Directory {name}: {}", v["summary"].as_str().unwrap_or_default());
            let list = |key: &str| -> String {
                v[key].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
            };
            for (key, label) in [
                ("created", "Users created"),
                ("disabled", "Users disabled (their sessions end)"),
                ("enabled", "Users enabled again"),
                ("groups_created", "Groups created"),
                ("groups_emptied", "Groups no longer in the directory (emptied)"),
            ] {
                let names = list(key);
                if !names.is_empty() {
                    println!("{label}: {names}");
                }
            }
            for s in v["skipped"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                println!("Skipped: {s}");
            }
        }
    }
    Ok(())
}
