use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::{read_secret, signed_in};
use crate::client::enc;
use crate::output::print;
use crate::resolve::{self, Kind};
use crate::{CliError, GlobalArgs, Output};

const COLUMNS: &[&str] = &["kind", "version", "status", "reason", "set_by", "created_at", "public_key", "error"];
const CHANGE_COLUMNS: &[&str] =
    &["kind", "reason", "state", "attempts", "due_at", "version", "request_id", "last_error", "updated_at"];
const PROFILE_COLUMNS: &[&str] = &["scope", "profile"];

#[derive(Debug, Subcommand)]
pub enum CredentialCmd {
    /// An account's credential versions (never the secrets). Accounts are named ACCOUNT@ASSET
    /// (or by id) in every command.
    List { account: String },
    /// Store the account's password (from PORTCULLIS_NEW_PASSWORD or a prompt).
    SetPassword { account: String },
    /// Generate and store a new password.
    GeneratePassword {
        account: String,
        #[arg(long)]
        length: Option<usize>,
        /// Leave out symbols.
        #[arg(long)]
        no_symbols: bool,
        /// Characters never to use.
        #[arg(long)]
        exclude: Option<String>,
    },
    /// Store an SSH private key (unencrypted OpenSSH format) read from a file.
    ImportKey {
        account: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Generate and store a new SSH key pair; prints the public key.
    GenerateKey {
        account: String,
        /// ed25519, rsa-3072 or rsa-4096.
        #[arg(long, default_value = "ed25519")]
        algorithm: String,
    },
    /// Check credential: log in to the target with the stored password or key (exit 1 if it fails).
    Check {
        account: String,
        /// password or ssh_key (default: the password if there is one).
        #[arg(long)]
        kind: Option<String>,
    },
    /// Change now: a new password or key on the target, verified before it becomes current.
    Change {
        account: String,
        /// password or ssh_key (default: the password if there is one).
        #[arg(long)]
        kind: Option<String>,
    },
    /// The account's automatic changes (after check-in, expiry, revocation).
    Changes { account: String },
    /// Password profiles: list.
    Profiles,
    /// Set the password profile of a platform (platform:linux) or an asset (asset:ID).
    SetProfile {
        scope: String,
        #[arg(long, default_value_t = 24)]
        length: usize,
        #[arg(long)]
        no_lowercase: bool,
        #[arg(long)]
        no_uppercase: bool,
        #[arg(long)]
        no_digits: bool,
        #[arg(long)]
        no_symbols: bool,
        /// Characters never to use.
        #[arg(long, default_value = "")]
        exclude: String,
    },
    /// Remove a password profile.
    DeleteProfile { scope: String },
}

/// A spinner on standard error while the target is worked on (only on a terminal).
fn spinner(message: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

pub async fn credentials(cmd: CredentialCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    // The account by ACCOUNT@ASSET or id.
    let account = match &cmd {
        CredentialCmd::List { account }
        | CredentialCmd::SetPassword { account }
        | CredentialCmd::GeneratePassword { account, .. }
        | CredentialCmd::ImportKey { account, .. }
        | CredentialCmd::GenerateKey { account, .. }
        | CredentialCmd::Check { account, .. }
        | CredentialCmd::Change { account, .. }
        | CredentialCmd::Changes { account } => resolve::id(&c, Kind::Account, account).await?,
        CredentialCmd::Profiles | CredentialCmd::SetProfile { .. } | CredentialCmd::DeleteProfile { .. } => {
            String::new()
        }
    };
    let base = format!("/api/v1/accounts/{}", enc(&account));
    let shown = match cmd {
        CredentialCmd::List { .. } => c.get(&format!("{}/credentials", base)).await?,
        CredentialCmd::SetPassword { .. } => {
            let pw = read_secret("Password: ", "PORTCULLIS_NEW_PASSWORD", false)?;
            c.put(&format!("{}/password", base), Some(&json!({ "password": &*pw }))).await?
        }
        CredentialCmd::GeneratePassword { length, no_symbols, exclude, .. } => {
            let mut body = json!({ "symbols": !no_symbols });
            if let Some(l) = length {
                body["length"] = json!(l);
            }
            if let Some(x) = exclude {
                body["excluded"] = json!(x);
            }
            c.post(&format!("{}/password/generate", base), &body).await?
        }
        CredentialCmd::ImportKey { file, .. } => {
            let key = zeroize::Zeroizing::new(
                std::fs::read_to_string(&file).map_err(|e| CliError::Io(file.display().to_string(), e))?,
            );
            c.put(&format!("{}/ssh-key", base), Some(&json!({ "private_key": &*key }))).await?
        }
        CredentialCmd::GenerateKey { algorithm, .. } => {
            c.post(&format!("{}/ssh-key/generate", base), &json!({ "algorithm": algorithm })).await?
        }
        CredentialCmd::Check { kind, .. } => {
            let bar = spinner("logging in to the target…");
            let r = c.post(&format!("{}/credentials/check", base), &json!({ "kind": kind })).await;
            bar.finish_and_clear();
            let r = r?;
            print(g.output, &r, &["kind", "version", "ok", "code", "message"]);
            if r["ok"] != json!(true) {
                return Err(CliError::Failed(format!(
                    "the stored credential does not log in: {}",
                    r["message"].as_str().unwrap_or("unknown reason")
                )));
            }
            return Ok(());
        }
        CredentialCmd::Change { kind, .. } => {
            let bar = spinner("changing the credential on the target and verifying it…");
            let r = c.post(&format!("{}/credentials/change", base), &json!({ "kind": kind })).await;
            bar.finish_and_clear();
            r?
        }
        CredentialCmd::Changes { .. } => {
            let r = c.get(&format!("{}/credential-changes", base)).await?;
            print(g.output, &r, CHANGE_COLUMNS);
            return Ok(());
        }
        CredentialCmd::Profiles => {
            let r = c.get("/api/v1/password-profiles").await?;
            print(g.output, &r, PROFILE_COLUMNS);
            return Ok(());
        }
        CredentialCmd::SetProfile { scope, length, no_lowercase, no_uppercase, no_digits, no_symbols, exclude } => {
            let body = json!({
                "length": length, "lowercase": !no_lowercase, "uppercase": !no_uppercase,
                "digits": !no_digits, "symbols": !no_symbols, "excluded": exclude,
            });
            let r = c.put(&format!("/api/v1/password-profiles/{}", enc(&scope)), Some(&body)).await?;
            print(g.output, &r, PROFILE_COLUMNS);
            return Ok(());
        }
        CredentialCmd::DeleteProfile { scope } => {
            c.delete(&format!("/api/v1/password-profiles/{}", enc(&scope))).await?;
            return Ok(());
        }
    };
    print(g.output, &shown, COLUMNS);
    Ok(())
}

/// `portcullis request checkout ID [--copy]`: prints the credential of an available request.
pub async fn checkout(id: String, copy: bool, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let r = c
        .post(
            &format!("/api/v1/requests/{}/checkout", enc(&id)),
            &json!({ "action": if copy { "copy" } else { "show" } }),
        )
        .await?;
    if g.output == Output::Json {
        print(g.output, &r, &[]);
    } else if let Some(p) = r["password"].as_str() {
        println!("{p}");
    } else if let Some(k) = r["private_key"].as_str() {
        print!("{k}");
    }
    Ok(())
}
