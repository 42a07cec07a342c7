use clap::Subcommand;
use serde_json::{json, Value};

use super::signed_in;
use crate::client::enc;
use crate::output::{done, print};
use crate::resolve::{self, Kind};
use crate::{CliError, GlobalArgs};

const ASSET_COLUMNS: &[&str] =
    &["id", "name", "address", "platform", "protocols", "host_key", "service_account_name", "identity_confirmed"];
const ACCOUNT_COLUMNS: &[&str] = &["id", "name", "asset_name", "kind", "description"];

#[derive(Debug, Subcommand)]
pub enum AssetCmd {
    /// List assets.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one asset.
    Show {
        /// The asset's name or id.
        #[arg(value_name = "ASSET")]
        id: String,
    },
    /// Add an asset.
    Create {
        name: String,
        /// IP address or DNS name.
        #[arg(long)]
        address: String,
        /// linux, unix, windows, network_device, directory (named like the server's [directories.NAME]) or other.
        #[arg(long)]
        platform: String,
        /// PROTOCOL[:PORT], repeatable (default ssh:22).
        #[arg(long = "protocol")]
        protocols: Vec<String>,
        /// Pinned SSH host key in OpenSSH format.
        #[arg(long)]
        host_key: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change an asset.
    Update {
        /// The asset's name or id.
        #[arg(value_name = "ASSET")]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        platform: Option<String>,
        /// Replaces the list: PROTOCOL[:PORT], repeatable.
        #[arg(long = "protocol")]
        protocols: Vec<String>,
        #[arg(long)]
        host_key: Option<String>,
        /// Unpin the host key.
        #[arg(long, conflicts_with = "host_key")]
        clear_host_key: bool,
        /// Unpin the RDP service's TLS certificate (the next RDP connection pins the one it sees).
        #[arg(long)]
        clear_tls_fingerprint: bool,
        /// The account (of this asset, by name or id) that changes other accounts' credentials.
        #[arg(long)]
        service_account: Option<String>,
        /// Each account changes its own credentials again.
        #[arg(long, conflicts_with = "service_account")]
        clear_service_account: bool,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an asset and its accounts.
    Delete {
        /// The asset's name or id.
        #[arg(value_name = "ASSET")]
        id: String,
    },
    /// Confirm another administrator's change of an asset's address, ports or host key, so
    /// that its vaulted credentials are sent to it again (checks, changes, sessions).
    ConfirmIdentity {
        /// The asset's name or id.
        #[arg(value_name = "ASSET")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// List accounts, optionally of one asset.
    List {
        /// The asset's name or id.
        #[arg(long)]
        asset: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one account.
    Show {
        /// ACCOUNT@ASSET or the account's id.
        #[arg(value_name = "ACCOUNT")]
        id: String,
    },
    /// Add an account to an asset.
    Create {
        name: String,
        /// The asset's name or id.
        #[arg(long)]
        asset: String,
        /// local (default) or directory.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change an account.
    Update {
        /// ACCOUNT@ASSET or the account's id.
        #[arg(value_name = "ACCOUNT")]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an account.
    Delete {
        /// ACCOUNT@ASSET or the account's id.
        #[arg(value_name = "ACCOUNT")]
        id: String,
    },
}

fn protocols(list: &[String]) -> Result<Value, CliError> {
    list.iter()
        .map(|p| match p.split_once(':') {
            None => Ok(json!({ "protocol": p })),
            Some((proto, port)) => port
                .parse::<i64>()
                .map(|n| json!({ "protocol": proto, "port": n }))
                .map_err(|_| CliError::Usage(format!("--protocol {p}: the port must be a number"))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn set_some(body: &mut Value, pairs: Vec<(&str, Option<String>)>) {
    for (k, v) in pairs {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
}

fn asset_target(cmd: &AssetCmd) -> Option<&str> {
    match cmd {
        AssetCmd::Show { id }
        | AssetCmd::Update { id, .. }
        | AssetCmd::Delete { id }
        | AssetCmd::ConfirmIdentity { id } => Some(id),
        AssetCmd::List { .. } | AssetCmd::Create { .. } => None,
    }
}

pub async fn assets(cmd: AssetCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let resolved = match asset_target(&cmd) {
        Some(t) => resolve::id(&c, Kind::Asset, t).await?,
        None => String::new(),
    };
    let item = |_: &str| format!("/api/v1/assets/{}", enc(&resolved));
    let shown = match cmd {
        AssetCmd::List { limit, offset } => c.get(&format!("/api/v1/assets?limit={limit}&offset={offset}")).await?,
        AssetCmd::Show { id } => c.get(&item(&id)).await?,
        AssetCmd::Create { name, address, platform, protocols: p, host_key, description } => {
            let mut body =
                json!({ "name": name, "address": address, "platform": platform, "description": description });
            if !p.is_empty() {
                body["protocols"] = protocols(&p)?;
            }
            set_some(&mut body, vec![("host_key", host_key)]);
            c.post("/api/v1/assets", &body).await?
        }
        AssetCmd::Update {
            id,
            name,
            address,
            platform,
            protocols: p,
            host_key,
            clear_host_key,
            clear_tls_fingerprint,
            service_account,
            clear_service_account,
            description,
        } => {
            // The service account is an account of this asset: its name alone will do.
            let service_account = match service_account {
                Some(a) if !resolve::is_id(&a) && !a.contains('@') => {
                    let asset = c.get(&item(&id)).await?;
                    let qualified = format!("{a}@{}", asset["name"].as_str().unwrap_or_default());
                    Some(resolve::id(&c, Kind::Account, &qualified).await?)
                }
                Some(a) => Some(resolve::id(&c, Kind::Account, &a).await?),
                None => None,
            };
            let mut body = json!({});
            set_some(
                &mut body,
                vec![
                    ("name", name),
                    ("address", address),
                    ("platform", platform),
                    ("host_key", host_key),
                    ("service_account_id", service_account),
                    ("description", description),
                ],
            );
            if clear_service_account {
                body["service_account_id"] = Value::Null;
            }
            if clear_tls_fingerprint {
                body["tls_fingerprint"] = Value::Null;
            }
            if !p.is_empty() {
                body["protocols"] = protocols(&p)?;
            }
            if clear_host_key {
                body["host_key"] = Value::Null;
            }
            let updated = c.patch(&item(&id), &body).await?;
            if updated["identity_confirmed"] == false && g.output != crate::output::Output::Json {
                eprintln!(
                    "Note: the address, ports or host key of {name} changed; another Asset Administrator must confirm \
                     it (portcullis asset confirm-identity {name}) before Portcullis sends {name} any credential again.",
                    name = updated["name"].as_str().unwrap_or_default()
                );
            }
            updated
        }
        AssetCmd::ConfirmIdentity { id } => c.post(&format!("{}/confirm-identity", item(&id)), &json!({})).await?,
        AssetCmd::Delete { id } => {
            c.delete(&item(&id)).await?;
            done(g.output, "Asset deleted with its accounts.");
            return Ok(());
        }
    };
    print(g.output, &shown, ASSET_COLUMNS);
    Ok(())
}

fn account_target(cmd: &AccountCmd) -> Option<&str> {
    match cmd {
        AccountCmd::Show { id } | AccountCmd::Update { id, .. } | AccountCmd::Delete { id } => Some(id),
        AccountCmd::List { .. } | AccountCmd::Create { .. } => None,
    }
}

pub async fn accounts(cmd: AccountCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let resolved = match account_target(&cmd) {
        Some(t) => resolve::id(&c, Kind::Account, t).await?,
        None => String::new(),
    };
    let item = |_: &str| format!("/api/v1/accounts/{}", enc(&resolved));
    let shown = match cmd {
        AccountCmd::List { asset, limit } => {
            let asset = match asset {
                Some(a) => Some(resolve::id(&c, Kind::Asset, &a).await?),
                None => None,
            };
            let filter = asset.map(|a| format!("&asset_id={}", enc(&a))).unwrap_or_default();
            c.get(&format!("/api/v1/accounts?limit={limit}{filter}")).await?
        }
        AccountCmd::Show { id } => c.get(&item(&id)).await?,
        AccountCmd::Create { name, asset, kind, description } => {
            let asset = resolve::id(&c, Kind::Asset, &asset).await?;
            let mut body = json!({ "name": name, "asset_id": asset, "description": description });
            set_some(&mut body, vec![("kind", kind)]);
            c.post("/api/v1/accounts", &body).await?
        }
        AccountCmd::Update { id, name, kind, description } => {
            let mut body = json!({});
            set_some(&mut body, vec![("name", name), ("kind", kind), ("description", description)]);
            c.patch(&item(&id), &body).await?
        }
        AccountCmd::Delete { id } => {
            c.delete(&item(&id)).await?;
            done(g.output, "Account deleted.");
            return Ok(());
        }
    };
    print(g.output, &shown, ACCOUNT_COLUMNS);
    Ok(())
}
