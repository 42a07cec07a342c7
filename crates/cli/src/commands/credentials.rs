use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::{read_secret, signed_in};
use crate::client::enc;
use crate::output::print;
use crate::{CliError, GlobalArgs, Output};

const COLUMNS: &[&str] = &["kind", "version", "reason", "set_by", "created_at", "public_key"];

#[derive(Debug, Subcommand)]
pub enum CredentialCmd {
    /// An account's credential versions (never the secrets).
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
}

pub async fn credentials(cmd: CredentialCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let base = |a: &str| format!("/api/v1/accounts/{}", enc(a));
    let shown = match cmd {
        CredentialCmd::List { account } => c.get(&format!("{}/credentials", base(&account))).await?,
        CredentialCmd::SetPassword { account } => {
            let pw = read_secret("Password: ", "PORTCULLIS_NEW_PASSWORD", false)?;
            c.put(&format!("{}/password", base(&account)), Some(&json!({ "password": &*pw }))).await?
        }
        CredentialCmd::GeneratePassword { account, length, no_symbols, exclude } => {
            let mut body = json!({ "symbols": !no_symbols });
            if let Some(l) = length {
                body["length"] = json!(l);
            }
            if let Some(x) = exclude {
                body["excluded"] = json!(x);
            }
            c.post(&format!("{}/password/generate", base(&account)), &body).await?
        }
        CredentialCmd::ImportKey { account, file } => {
            let key = zeroize::Zeroizing::new(
                std::fs::read_to_string(&file).map_err(|e| CliError::Io(file.display().to_string(), e))?,
            );
            c.put(&format!("{}/ssh-key", base(&account)), Some(&json!({ "private_key": &*key }))).await?
        }
        CredentialCmd::GenerateKey { account, algorithm } => {
            c.post(&format!("{}/ssh-key/generate", base(&account)), &json!({ "algorithm": algorithm })).await?
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
