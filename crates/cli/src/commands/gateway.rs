//! `portcullis connection-policy …`: the ordered connection policies every proxied connection
//! is matched against, and which one a connection would get.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::signed_in;
use crate::client::{enc, Client};
use crate::output::{done, print};
use crate::resolve::{self, Kind};
use crate::{CliError, GlobalArgs, Output};

const COLUMNS: &[&str] = &["position", "name", "protocol", "enabled", "clients", "targets", "translate", "channels"];

#[derive(Debug, clap::Args)]
pub struct Rules {
    /// ssh, telnet or rdp.
    #[arg(long, default_value = "ssh")]
    protocol: String,
    /// A client network the policy admits, e.g. 10.0.0.0/8 (repeatable; none: any client).
    #[arg(long = "client")]
    clients: Vec<String>,
    /// A proxy port the client comes to (repeatable; none: any).
    #[arg(long = "listen-port")]
    listen_ports: Vec<u16>,
    /// An asset the policy covers: name or pattern with `*`, optionally :PORT (repeatable).
    #[arg(long = "asset")]
    assets: Vec<String>,
    /// A target network the policy covers, e.g. 10.1.0.0/16, optionally /PORT after a space-free
    /// `@`: 10.1.0.0/16@22 (repeatable).
    #[arg(long = "network")]
    networks: Vec<String>,
    /// Address translation: send the target leg to HOST[:PORT] instead.
    #[arg(long)]
    translate: Option<String>,
    /// The local address the target leg leaves from (SNAT).
    #[arg(long)]
    source_address: Option<String>,
    /// A channel kind to allow: SSH shell, exec, sftp, scp, local_forward; Telnet shell; RDP
    /// clipboard, drive, audio, dynamic (repeatable; none: nothing may open).
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// Only members of this user group (name or id) may open the allowed channels (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Channels may open only in this window, DAYS/HH:MM-HH:MM, e.g. mon-fri/08:00-18:00
    /// (repeatable; read in --time-zone).
    #[arg(long = "window")]
    windows: Vec<String>,
    /// exec: a regular expression the whole command must match (repeatable).
    #[arg(long = "command")]
    commands: Vec<String>,
    /// local_forward: an allowed destination HOST:PORT (`*` wildcards; repeatable).
    #[arg(long = "forward-to")]
    forward_to: Vec<String>,
    /// Refuse before the target is contacted when no channel could open now.
    #[arg(long)]
    pre_channel_check: bool,
    /// The zone the windows are read in.
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    /// The AA plugin to consult after sign-in (a name from the server's [aa_plugins]).
    #[arg(long)]
    aa_plugin: Option<String>,
    /// Usermapping: an account the AA plugin may map connections to (`*` wildcards; repeatable).
    #[arg(long = "map-to", requires = "aa_plugin")]
    map_to: Vec<String>,
    /// Record no terminal streams (input, output): the recording keeps only the session's
    /// metadata and events (channels, commands, file names, content hits).
    #[arg(long)]
    no_terminal_recording: bool,
    /// Create it disabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionPolicyCmd {
    /// List connection policies in the order they are tried.
    List,
    /// Show one connection policy with all its rules.
    Show {
        /// The policy's name or id.
        #[arg(value_name = "POLICY")]
        id: String,
    },
    /// Create a connection policy from flags, or from a JSON file with the fields of
    /// POST /api/v1/connection-policies (groups may be given by name).
    Create {
        name: String,
        /// 1 is tried first (default: last).
        #[arg(long)]
        position: Option<i64>,
        #[arg(long, conflicts_with_all = ["clients", "assets", "networks", "allow", "translate"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        rules: Box<Rules>,
    },
    /// Replace a policy's rules from a JSON file, and/or rename, move, enable or disable it.
    Update {
        /// The policy's name or id.
        #[arg(value_name = "POLICY")]
        id: String,
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        /// Move it: 1 is tried first.
        #[arg(long)]
        position: Option<i64>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Delete a connection policy.
    Delete {
        /// The policy's name or id.
        #[arg(value_name = "POLICY")]
        id: String,
    },
    /// Which policy a connection would get, and why the policies before it do not apply.
    Explain {
        /// ssh, telnet or rdp.
        #[arg(long, default_value = "ssh")]
        protocol: String,
        /// The client's IP address.
        #[arg(long)]
        client: String,
        /// The asset's name.
        #[arg(long)]
        asset: String,
        /// The proxy port the client connects to (default: the protocol's proxy port).
        #[arg(long)]
        listen_port: Option<u16>,
    },
}

/// The id of the connection policy named `text` (or `text` itself when it is an id).
async fn policy_id(c: &Client, text: &str) -> Result<String, CliError> {
    if resolve::is_id(text) {
        return Ok(text.to_owned());
    }
    let all = c.get("/api/v1/connection-policies").await?;
    all.as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some(text))
        .and_then(|p| p["id"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no connection policy is named '{text}'; `portcullis connection-policy list` shows them"
            ))
        })
}

fn window(text: &str) -> Result<Value, CliError> {
    let bad = || CliError::Usage(format!("--window {text}: expected DAYS/HH:MM-HH:MM, e.g. mon-fri/08:00-17:00"));
    let (days, range) = text.split_once('/').ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    Ok(json!({ "days": days.split(',').collect::<Vec<_>>(), "start": start, "end": end }))
}

fn with_port(flag: &str, text: &str, sep: char) -> Result<(String, Option<u16>), CliError> {
    match text.rsplit_once(sep) {
        Some((host, port)) if !host.is_empty() && !port.contains(':') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| CliError::Usage(format!("{flag} {text}: '{port}' is not a port (1 to 65535)")))?;
            Ok((host.to_owned(), Some(port)))
        }
        _ => Ok((text.to_owned(), None)),
    }
}

async fn body_from_flags(c: &Client, name: &str, position: Option<i64>, r: Rules) -> Result<Value, CliError> {
    let mut targets = Vec::new();
    for a in &r.assets {
        let (asset, port) = with_port("--asset", a, ':')?;
        targets.push(json!({ "asset": asset, "port": port }));
    }
    for n in &r.networks {
        let (network, port) = with_port("--network", n, '@')?;
        targets.push(json!({ "network": network, "port": port }));
    }
    let translate = match &r.translate {
        Some(t) => {
            let (address, port) = if t.starts_with('[') || t.matches(':').count() == 1 {
                with_port("--translate", t.trim_start_matches('['), ':')
                    .map(|(h, p)| (h.trim_end_matches(']').to_owned(), p))?
            } else {
                (t.clone(), None)
            };
            json!({ "address": address, "port": port })
        }
        None => Value::Null,
    };
    let groups = resolve::ids(c, Kind::UserGroup, &r.groups).await?;
    let windows = r.windows.iter().map(|w| window(w)).collect::<Result<Vec<_>, _>>()?;
    let channels: Vec<Value> = r
        .allow
        .iter()
        .map(|kind| {
            let mut rule = json!({ "kind": kind, "groups": groups, "windows": windows });
            if kind == "exec" && !r.commands.is_empty() {
                rule["commands"] = json!(r.commands);
            }
            if kind == "local_forward" && !r.forward_to.is_empty() {
                rule["destinations"] = json!(r.forward_to);
            }
            rule
        })
        .collect();
    if !r.commands.is_empty() && !r.allow.iter().any(|k| k == "exec") {
        return Err(CliError::Usage("--command needs --allow exec".into()));
    }
    if !r.forward_to.is_empty() && !r.allow.iter().any(|k| k == "local_forward") {
        return Err(CliError::Usage("--forward-to needs --allow local_forward".into()));
    }
    Ok(json!({
        "name": name,
        "position": position,
        "protocol": r.protocol,
        "enabled": !r.disabled,
        "clients": r.clients,
        "listen_ports": r.listen_ports,
        "targets": targets,
        "translate": translate,
        "source_address": r.source_address,
        "channels": channels,
        "pre_channel_check": r.pre_channel_check,
        "time_zone": r.time_zone,
        "aa_plugin": r.aa_plugin,
        "usermapping": r.map_to,
        "recording": !r.no_terminal_recording,
    }))
}

/// Group names to ids in each channel rule of a policy file.
async fn resolve_groups(c: &Client, body: &mut Value) -> Result<(), CliError> {
    let n = body.get("channels").and_then(Value::as_array).map_or(0, Vec::len);
    for i in 0..n {
        resolve::ids_in(c, &mut body["channels"][i], &["groups"], Kind::UserGroup).await?;
    }
    Ok(())
}

fn read_json(path: &PathBuf) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Io(path.display().to_string(), e))?;
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("{}: not JSON: {e}", path.display())))
}

/// A compact table form: lists joined, targets and channels in words.
fn table_row(p: &Value) -> Value {
    let join = |v: &Value| v.as_array().map(|a| a.iter().map(short).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let mut row = p.clone();
    row["clients"] = json!(if join(&p["clients"]).is_empty() { "any".into() } else { join(&p["clients"]) });
    let targets: Vec<String> = p["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let what = t["asset"].as_str().or(t["network"].as_str()).unwrap_or("?").to_owned();
            match t["port"].as_u64() {
                Some(port) => format!("{what}:{port}"),
                None => what,
            }
        })
        .collect();
    row["targets"] = json!(if targets.is_empty() { "any".into() } else { targets.join(", ") });
    row["translate"] = match p["translate"]["address"].as_str() {
        Some(a) => {
            json!(format!("{a}{}", p["translate"]["port"].as_u64().map(|p| format!(":{p}")).unwrap_or_default()))
        }
        None => json!(""),
    };
    let channels: Vec<String> = p["channels"].as_array().into_iter().flatten().map(|c| short(&c["kind"])).collect();
    row["channels"] = json!(if channels.is_empty() { "none".into() } else { channels.join(", ") });
    row
}

fn short(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

pub async fn run(cmd: ConnectionPolicyCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let item = |id: &str| format!("/api/v1/connection-policies/{}", enc(id));
    let shown = match cmd {
        ConnectionPolicyCmd::List => {
            let list = c.get("/api/v1/connection-policies").await?;
            if g.output == Output::Json {
                list
            } else {
                Value::Array(list.as_array().into_iter().flatten().map(table_row).collect())
            }
        }
        ConnectionPolicyCmd::Show { id } => {
            let p = c.get(&item(&policy_id(&c, &id).await?)).await?;
            if g.output != Output::Json {
                println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
                return Ok(());
            }
            p
        }
        ConnectionPolicyCmd::Create { name, position, file, rules } => {
            let body = match file {
                Some(f) => {
                    let mut body = read_json(&f)?;
                    body["name"] = json!(name);
                    if position.is_some() {
                        body["position"] = json!(position);
                    }
                    resolve_groups(&c, &mut body).await?;
                    body
                }
                None => body_from_flags(&c, &name, position, *rules).await?,
            };
            let p = c.post("/api/v1/connection-policies", &body).await?;
            if g.output == Output::Json {
                p
            } else {
                done(
                    g.output,
                    &format!(
                        "Connection policy '{}' created at position {}.",
                        short(&p["name"]),
                        p["position"].as_i64().unwrap_or(0)
                    ),
                );
                return Ok(());
            }
        }
        ConnectionPolicyCmd::Update { id, file, name, position, enable, disable } => {
            let id = policy_id(&c, &id).await?;
            let now = c.get(&item(&id)).await?;
            let mut body = match file {
                Some(f) => {
                    let mut body = read_json(&f)?;
                    resolve_groups(&c, &mut body).await?;
                    body
                }
                None => {
                    let mut body = now.clone();
                    for key in ["id", "position", "group_names", "created_at", "updated_at"] {
                        body.as_object_mut().map(|o| o.remove(key));
                    }
                    body
                }
            };
            body["name"] = name.map_or(now["name"].clone(), Value::from);
            if let Some(p) = position {
                body["position"] = json!(p);
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            let p = c.put(&item(&id), Some(&body)).await?;
            if g.output == Output::Json {
                p
            } else {
                done(
                    g.output,
                    &format!(
                        "Connection policy '{}' updated (position {}{}).",
                        short(&p["name"]),
                        p["position"].as_i64().unwrap_or(0),
                        if p["enabled"].as_bool() == Some(false) { ", disabled" } else { "" }
                    ),
                );
                return Ok(());
            }
        }
        ConnectionPolicyCmd::Delete { id } => {
            c.delete(&item(&policy_id(&c, &id).await?)).await?;
            done(g.output, "Connection policy deleted.");
            return Ok(());
        }
        ConnectionPolicyCmd::Explain { protocol, client, asset, listen_port } => {
            let body = json!({ "protocol": protocol, "client": client, "asset": asset, "listen_port": listen_port });
            let r = c.post("/api/v1/connection-policies/explain", &body).await?;
            if g.output == Output::Json {
                print(g.output, &r, &[]);
                return Ok(());
            }
            match r["policy_name"].as_str() {
                Some(name) => {
                    let via = r["source_address"].as_str().map(|s| format!(" from {s}")).unwrap_or_default();
                    println!(
                        "Connection policy: {name} ({} from {client} to {asset}; the target leg goes to {}{via})",
                        protocol.to_uppercase(),
                        short(&r["destination"])
                    );
                }
                None => println!(
                    "No connection policy admits {} from {client} to {asset}: the connection would be refused.",
                    protocol.to_uppercase()
                ),
            }
            print(g.output, &r["verdicts"], &["position", "policy_name", "outcome", "reason"]);
            if let Some(n) = r["not_consulted"].as_u64().filter(|n| *n > 0) {
                println!("{n} later polic{} not consulted.", if n == 1 { "y was" } else { "ies were" });
            }
            return Ok(());
        }
    };
    print(g.output, &shown, COLUMNS);
    Ok(())
}
