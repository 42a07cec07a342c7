use clap::Subcommand;
use serde_json::json;

use super::signed_in;
use crate::client::enc;
use crate::output::{done, print};
use crate::{CliError, GlobalArgs};

const COLUMNS: &[&str] = &["id", "name", "created_at", "expires_at", "last_used_at", "revoked_at"];

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// List your API tokens with their last use.
    List,
    /// Create an API token; its value is printed once.
    Create {
        name: String,
        /// RFC 3339 expiry, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Revoke one of your API tokens.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TotpCmd {
    /// Start enrolment: prints the secret and otpauth URI for your authenticator app.
    Enroll,
    /// Confirm enrolment with the current code; sign-in needs codes from then on.
    Confirm { code: String },
    /// Turn one-time codes off (needs a current code).
    Disable { code: String },
}

pub async fn tokens(cmd: TokenCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let shown = match cmd {
        TokenCmd::List => c.get("/api/v1/me/tokens").await?,
        TokenCmd::Create { name, expires_at } => {
            let mut body = json!({ "name": name });
            if let Some(e) = expires_at {
                body["expires_at"] = json!(e);
            }
            c.post("/api/v1/me/tokens", &body).await?
        }
        TokenCmd::Revoke { id } => c.delete(&format!("/api/v1/me/tokens/{}", enc(&id))).await?,
    };
    print(g.output, &shown, COLUMNS);
    Ok(())
}

pub async fn totp(cmd: TotpCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    match cmd {
        TotpCmd::Enroll => {
            let v = c.post("/api/v1/me/totp", &json!({})).await?;
            print(g.output, &v, &[]);
        }
        TotpCmd::Confirm { code } => {
            c.post("/api/v1/me/totp/confirm", &json!({ "code": code })).await?;
            done(g.output, "One-time codes enabled: sign-in now needs --totp-code.");
        }
        TotpCmd::Disable { code } => {
            c.post("/api/v1/me/totp/disable", &json!({ "code": code })).await?;
            done(g.output, "One-time codes disabled.");
        }
    }
    Ok(())
}
