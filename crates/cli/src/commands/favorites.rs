//! Favorites: saved requests to submit again, made from flags, from an existing request or
//! from a JSON file, and named by their name.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::requests::{print_outcomes, with, RequestSpec};
use super::signed_in;
use crate::client::{enc, Client};
use crate::output::{done, print};
use crate::{CliError, GlobalArgs};

const COLUMNS: &[&str] = &["id", "name", "accounts", "description", "colour"];

#[derive(Debug, Subcommand)]
pub enum FavoriteCmd {
    /// Your favorites, with their accounts.
    List,
    /// One favorite with the request it saves.
    Show {
        /// The favorite's name or id.
        #[arg(value_name = "FAVORITE")]
        id: String,
    },
    /// Save a request as a favorite: from flags (as `request create`), from one of your
    /// requests (--from-request), or from a JSON file with the body of POST /api/v1/requests.
    Create {
        name: String,
        #[command(flatten)]
        spec: RequestSpec,
        /// Copy the accounts, duration, ticket, reason and comment of this request.
        #[arg(long, conflicts_with_all = ["file", "accounts"])]
        from_request: Option<String>,
        #[arg(long, conflicts_with = "accounts")]
        file: Option<PathBuf>,
        #[arg(long, default_value = "")]
        description: String,
        /// #RRGGBB.
        #[arg(long)]
        colour: Option<String>,
    },
    /// Change a favorite: --account replaces its accounts; other flags change only themselves.
    Update {
        /// The favorite's name or id.
        #[arg(value_name = "FAVORITE")]
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        spec: RequestSpec,
        #[arg(long)]
        description: Option<String>,
        /// #RRGGBB.
        #[arg(long)]
        colour: Option<String>,
    },
    /// Submit a favorite as a new request.
    Submit {
        /// The favorite's name or id.
        #[arg(value_name = "FAVORITE")]
        id: String,
    },
    /// Delete a favorite.
    Delete {
        /// The favorite's name or id.
        #[arg(value_name = "FAVORITE")]
        id: String,
    },
}

/// One of the caller's favorites, by name or id.
async fn find(c: &Client, text: &str) -> Result<Value, CliError> {
    let list = c.get("/api/v1/favorites").await?;
    let all = list.as_array().cloned().unwrap_or_default();
    let found: Vec<&Value> = all.iter().filter(|f| f["id"] == text || f["name"] == text).collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(CliError::Usage(format!("you have no favorite named '{text}'; see `portcullis favorite list`"))),
        _ => Err(CliError::Usage(format!("several of your favorites are named '{text}'; give the id"))),
    }
}

/// The request body saved from an existing request of the caller's.
async fn from_request(c: &Client, id: &str) -> Result<Value, CliError> {
    let r = c.get(&format!("/api/v1/requests/{}", enc(id))).await?;
    let minutes = |field: &str| r[field].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let duration = match (minutes("start_at"), minutes("end_at")) {
        (Some(s), Some(e)) => Some(((e.as_second() - s.as_second()) / 60).max(1)),
        _ => None,
    };
    let mut body = json!({
        "accounts": [{ "account_id": r["account_id"], "access_type": r["access_type"] }],
        "emergency": r["emergency"],
    });
    for (to, from) in [("ticket", "ticket"), ("reason_code", "reason_code"), ("comment", "comment")] {
        if !r[from].is_null() {
            body[to] = r[from].clone();
        }
    }
    if let Some(d) = duration {
        body["duration_minutes"] = json!(d);
    }
    Ok(body)
}

pub async fn run(cmd: FavoriteCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let item = |f: &Value| format!("/api/v1/favorites/{}", enc(f["id"].as_str().unwrap_or_default()));
    match cmd {
        FavoriteCmd::List => print(g.output, &c.get("/api/v1/favorites").await?, COLUMNS),
        FavoriteCmd::Show { id } => print(g.output, &find(&c, &id).await?, &[]),
        FavoriteCmd::Create { name, spec, from_request: source, file, description, colour } => {
            let request = match (source, file) {
                (Some(r), _) => from_request(&c, &r).await?,
                (None, Some(file)) => {
                    let text =
                        std::fs::read_to_string(&file).map_err(|e| CliError::Io(file.display().to_string(), e))?;
                    serde_json::from_str(&text)
                        .map_err(|e| CliError::Usage(format!("{}: not JSON: {e}", file.display())))?
                }
                (None, None) => spec.body(&c).await?,
            };
            let body =
                with(json!({ "name": name, "description": description, "request": request }), vec![("colour", colour)]);
            print(g.output, &c.post("/api/v1/favorites", &body).await?, &[]);
        }
        FavoriteCmd::Update { id, name, spec, description, colour } => {
            let f = find(&c, &id).await?;
            let mut request = if spec.accounts.is_empty() { f["request"].clone() } else { spec.body(&c).await? };
            // Flags given without --account change only themselves.
            if spec.accounts.is_empty() {
                let given = [
                    ("ticket", spec.ticket.clone().map(Value::from)),
                    ("reason_code", spec.reason.clone().map(Value::from)),
                    ("comment", spec.comment.clone().map(Value::from)),
                    ("start_at", spec.start_at.clone().map(Value::from)),
                    ("duration_minutes", spec.duration.map(Value::from)),
                    ("emergency", spec.emergency.then_some(Value::Bool(true))),
                ];
                for (k, v) in given {
                    if let Some(v) = v {
                        request[k] = v;
                    }
                }
            }
            let body = json!({
                "name": name.map_or(f["name"].clone(), Value::from),
                "description": description.map_or(f["description"].clone(), Value::from),
                "colour": colour.map_or(f["colour"].clone(), Value::from),
                "request": request,
            });
            print(g.output, &c.put(&item(&f), Some(&body)).await?, &[]);
        }
        FavoriteCmd::Submit { id } => {
            let f = find(&c, &id).await?;
            let r = c.post(&format!("{}/submit", item(&f)), &json!({})).await?;
            return print_outcomes(g, &r);
        }
        FavoriteCmd::Delete { id } => {
            let f = find(&c, &id).await?;
            c.delete(&item(&f)).await?;
            done(g.output, "Favorite deleted.");
        }
    }
    Ok(())
}
