//! Your own profile: show it, change your display name, e-mail or time zone (unless a User
//! Administrator locked it).

use clap::Subcommand;
use serde_json::{json, Value};

use super::signed_in;
use crate::output::print;
use crate::{CliError, GlobalArgs};

#[derive(Debug, Subcommand)]
pub enum MeCmd {
    /// Who you are: name, roles, time zone, groups.
    Show,
    /// Change your display name, e-mail or time zone.
    Set {
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Remove your e-mail address.
        #[arg(long, conflicts_with = "email")]
        no_email: bool,
        /// IANA time zone, e.g. Europe/Paris: start times you type and time windows are read in it.
        #[arg(long)]
        time_zone: Option<String>,
    },
}

pub async fn run(cmd: MeCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let shown = match cmd {
        MeCmd::Show => c.get("/api/v1/me").await?,
        MeCmd::Set { display_name, email, no_email, time_zone } => {
            if display_name.is_none() && email.is_none() && !no_email && time_zone.is_none() {
                return Err(CliError::Usage(
                    "say what to change: --display-name, --email, --no-email or --time-zone".into(),
                ));
            }
            let mut body = json!({});
            for (k, v) in [("display_name", display_name), ("email", email), ("time_zone", time_zone)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if no_email {
                body["email"] = Value::Null;
            }
            c.patch("/api/v1/me", &body).await?
        }
    };
    print(g.output, &shown, &[]);
    Ok(())
}
