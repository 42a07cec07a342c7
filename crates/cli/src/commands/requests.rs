use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::signed_in;
use crate::client::{enc, Client};
use crate::output::{done, print};
use crate::{CliError, GlobalArgs, Output};

const COLUMNS: &[&str] = &[
    "id",
    "requester_name",
    "account_name",
    "asset_name",
    "access_type",
    "status_text",
    "start_at",
    "end_at",
    "emergency",
];

#[derive(Debug, Subcommand)]
pub enum RequestCmd {
    /// Request access to one or more accounts.
    Create {
        /// ACCOUNT_ID:ACCESS_TYPE (access type: password, ssh_key, ssh, rdp, telnet); repeatable.
        #[arg(long = "account", required = true)]
        accounts: Vec<String>,
        /// Emergency access (only where a policy allows it; skips approval; every approver is told).
        #[arg(long)]
        emergency: bool,
        /// Start later, RFC 3339 (default: now).
        #[arg(long)]
        start_at: Option<String>,
        /// Duration in minutes (default: the policy's).
        #[arg(long)]
        duration: Option<i64>,
        #[arg(long)]
        ticket: Option<String>,
        /// A reason code (see `portcullis reason-code list`).
        #[arg(long)]
        reason: Option<String>,
        /// At most 255 characters.
        #[arg(long)]
        comment: Option<String>,
    },
    /// A work queue: your requests (default), or those waiting for your approval
    /// (--queue approvals) or review (--queue reviews), those you approved (--queue approved,
    /// with live sessions), or everyone's (--queue all / --all).
    List {
        /// mine, approvals, approved, reviews or all.
        #[arg(long, default_value = "mine")]
        queue: String,
        /// The same as --queue all (Security Policy Administrators, Auditors).
        #[arg(long)]
        all: bool,
        /// Only requests in this state, e.g. available, pending_review, revoked.
        #[arg(long)]
        state: Option<String>,
        /// Only requests for this account: its id, or ACCOUNT@ASSET.
        #[arg(long)]
        account: Option<String>,
        /// Only requests for accounts on this asset: its id or name.
        #[arg(long)]
        asset: Option<String>,
        /// Only requests by this user: id or user name.
        #[arg(long)]
        requester: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Skip this many (paging).
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// One request with its approvals and history.
    Show { id: String },
    /// Approve at the current level (optionally changing the window).
    Approve {
        ids: Vec<String>,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        start_at: Option<String>,
        #[arg(long)]
        end_at: Option<String>,
    },
    /// Deny.
    Deny {
        ids: Vec<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Revoke access at once (approvers, Security Policy Administrators).
    Revoke {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Cancel your pending or approved request.
    Cancel { id: String },
    /// Check your request in: the use ends.
    Checkin {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Mark a completed request reviewed (reviewers).
    Review {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Submit a revoked or denied request again.
    Resubmit { id: String },
    /// Remove a finished request from your list (the audit keeps it).
    Remove { id: String },
    /// Print the password or SSH key of your available request (audited).
    Checkout {
        id: String,
        /// Record the checkout as a copy rather than a show.
        #[arg(long)]
        copy: bool,
    },
    /// Start a session: a one-time launch token and ready-to-paste ssh/scp/sftp/plink commands.
    Launch { id: String },
}

#[derive(Debug, Subcommand)]
pub enum FavoriteCmd {
    /// Your favorites.
    List,
    /// Save a request (a JSON file with the body of POST /api/v1/requests) as a favorite.
    Create {
        name: String,
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value = "")]
        description: String,
        /// #RRGGBB.
        #[arg(long)]
        colour: Option<String>,
    },
    /// Submit a favorite as a new request.
    Submit { id: String },
    /// Delete a favorite.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ReasonCodeCmd {
    /// The reason codes to choose from.
    List,
    /// Add a reason code (Security Policy Administrators).
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a reason code.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Which request services are on.
    Show,
    /// Switch session requests on or off (Appliance Administrators).
    Set {
        /// true: SSH, RDP and Telnet session requests may be made and used; false: they are
        /// refused (password and SSH key requests go on).
        #[arg(long, action = clap::ArgAction::Set, value_name = "true|false")]
        session_requests: bool,
    },
}

fn with(mut body: Value, pairs: Vec<(&str, Option<String>)>) -> Value {
    for (k, v) in pairs {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    body
}

/// Prints each account's outcome; fails when every account failed.
fn print_outcomes(g: &GlobalArgs, r: &Value) -> Result<(), CliError> {
    let outcomes = r["outcomes"].as_array().cloned().unwrap_or_default();
    if g.output == Output::Json {
        print(g.output, r, &[]);
    } else {
        for o in &outcomes {
            // ACCOUNT@ASSET when the server named them, else the id that was given.
            let target = match (o["request"]["account_name"].as_str(), o["request"]["asset_name"].as_str()) {
                (Some(a), Some(s)) => format!("{a}@{s}"),
                _ => o["account_id"].as_str().unwrap_or("?").to_owned(),
            };
            match o["request"].as_object() {
                Some(req) => println!(
                    "{target}: request {} is {}",
                    req["id"].as_str().unwrap_or("?"),
                    req["status_text"].as_str().unwrap_or("?")
                ),
                None => println!(
                    "{target}: FAILED: {} ({})",
                    o["error"]["message"].as_str().unwrap_or("?"),
                    o["error"]["code"].as_str().unwrap_or("?")
                ),
            }
        }
    }
    let failed = outcomes.iter().filter(|o| o["request"].is_null()).count();
    if !outcomes.is_empty() && failed == outcomes.len() {
        return Err(CliError::Failed("no request was created".into()));
    }
    if failed > 0 {
        // Scripts must see that part of the request failed (exit 1); the others were made.
        let message = format!("{failed} of {} accounts failed (see above); the others were requested", outcomes.len());
        eprintln!("{message}");
        return Err(CliError::Failed(message));
    }
    Ok(())
}

async fn decide(
    c: &Client,
    g: &GlobalArgs,
    ids: Vec<String>,
    decision: &str,
    comment: Option<String>,
    window: (Option<String>, Option<String>),
) -> Result<(), CliError> {
    if ids.len() == 1 {
        let body = with(json!({}), vec![("comment", comment), ("start_at", window.0), ("end_at", window.1)]);
        let r = c.post(&format!("/api/v1/requests/{}/{decision}", enc(&ids[0])), &body).await?;
        print(g.output, &r, COLUMNS);
        return Ok(());
    }
    let r = c
        .post(
            "/api/v1/requests/bulk-decision",
            &with(json!({ "ids": ids, "decision": decision }), vec![("comment", comment)]),
        )
        .await?;
    if g.output == Output::Json {
        print(g.output, &r, &[]);
    } else {
        for o in r.as_array().into_iter().flatten() {
            match o["request"].as_object() {
                Some(req) => {
                    println!("{}: {}", o["id"].as_str().unwrap_or("?"), req["status_text"].as_str().unwrap_or("?"))
                }
                None => println!(
                    "{}: FAILED: {}",
                    o["id"].as_str().unwrap_or("?"),
                    o["error"]["message"].as_str().unwrap_or("?")
                ),
            }
        }
    }
    Ok(())
}

pub async fn requests(cmd: RequestCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let item = |id: &str, action: &str| format!("/api/v1/requests/{}/{action}", enc(id));
    let shown = match cmd {
        RequestCmd::Create { accounts, emergency, start_at, duration, ticket, reason, comment } => {
            let accounts = accounts
                .iter()
                .map(|a| {
                    let (id, t) = a
                        .rsplit_once(':')
                        .ok_or_else(|| CliError::Usage(format!("--account {a}: expected ACCOUNT_ID:ACCESS_TYPE")))?;
                    Ok(json!({ "account_id": id, "access_type": t }))
                })
                .collect::<Result<Vec<_>, CliError>>()?;
            let mut body = with(
                json!({ "accounts": accounts, "emergency": emergency }),
                vec![("start_at", start_at), ("ticket", ticket), ("reason_code", reason), ("comment", comment)],
            );
            if let Some(d) = duration {
                body["duration_minutes"] = json!(d);
            }
            let r = c.post("/api/v1/requests", &body).await?;
            return print_outcomes(g, &r);
        }
        RequestCmd::List { queue, all, state, account, asset, requester, limit, offset } => {
            let queue = if all { "all".to_owned() } else { queue };
            let mut q = format!("?queue={}&limit={limit}&offset={offset}", enc(&queue));
            if let Some(s) = state {
                q += &format!("&state={}", enc(&s));
            }
            for (key, value) in [("account", account), ("asset", asset), ("requester", requester)] {
                if let Some(v) = value {
                    q += &format!("&{key}={}", enc(&v));
                }
            }
            let mut columns = COLUMNS.to_vec();
            match queue.as_str() {
                // What an approver or reviewer decides on: the ticket and the requester's words.
                "approvals" | "reviews" => columns.extend(["ticket", "comment"]),
                "approved" => columns.push("live_sessions"),
                _ => {}
            }
            let list = c.get(&format!("/api/v1/requests{q}")).await?;
            if g.output == Output::Table && list.as_array().is_some_and(Vec::is_empty) {
                println!("Nothing in the '{queue}' queue{}.", if offset > 0 { " past this offset" } else { "" });
                return Ok(());
            }
            print(g.output, &list, &columns);
            return Ok(());
        }
        RequestCmd::Show { id } => {
            let r = c.get(&format!("/api/v1/requests/{}", enc(&id))).await?;
            if g.output == Output::Table {
                let mut summary = r.clone();
                if let Some(o) = summary.as_object_mut() {
                    o.remove("history");
                    o.remove("approvals");
                }
                print(g.output, &summary, &[]);
                print(g.output, &r["history"], &["at", "actor_name", "action", "from_state", "to_state", "comment"]);
                return Ok(());
            }
            r
        }
        RequestCmd::Approve { ids, comment, start_at, end_at } => {
            return decide(&c, g, ids, "approve", comment, (start_at, end_at)).await
        }
        RequestCmd::Deny { ids, comment } => return decide(&c, g, ids, "deny", comment, (None, None)).await,
        RequestCmd::Revoke { id, comment } => {
            c.post(&item(&id, "revoke"), &with(json!({}), vec![("comment", comment)])).await?
        }
        RequestCmd::Cancel { id } => c.post(&item(&id, "cancel"), &json!({})).await?,
        RequestCmd::Checkin { id, comment } => {
            c.post(&item(&id, "checkin"), &with(json!({}), vec![("comment", comment)])).await?
        }
        RequestCmd::Review { id, comment } => {
            c.post(&item(&id, "review"), &with(json!({}), vec![("comment", comment)])).await?
        }
        RequestCmd::Resubmit { id } => {
            let r = c.post(&item(&id, "resubmit"), &json!({})).await?;
            return print_outcomes(g, &r);
        }
        RequestCmd::Checkout { id, copy } => return super::credentials::checkout(id, copy, g).await,
        RequestCmd::Launch { id } => return super::sessions::launch(id, g).await,
        RequestCmd::Remove { id } => {
            c.post(&item(&id, "remove"), &json!({})).await?;
            done(g.output, "Removed from your list.");
            return Ok(());
        }
    };
    print(g.output, &shown, COLUMNS);
    Ok(())
}

pub async fn approvals(g: &GlobalArgs) -> Result<(), CliError> {
    let r = signed_in(g)?.get("/api/v1/approvals").await?;
    let mut columns = COLUMNS.to_vec();
    columns.extend(["ticket", "comment"]);
    print(g.output, &r, &columns);
    Ok(())
}

pub async fn favorites(cmd: FavoriteCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    match cmd {
        FavoriteCmd::List => {
            print(g.output, &c.get("/api/v1/favorites").await?, &["id", "name", "description", "colour"])
        }
        FavoriteCmd::Create { name, file, description, colour } => {
            let text = std::fs::read_to_string(&file).map_err(|e| CliError::Io(file.display().to_string(), e))?;
            let request: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: not JSON: {e}", file.display())))?;
            let body =
                with(json!({ "name": name, "description": description, "request": request }), vec![("colour", colour)]);
            print(g.output, &c.post("/api/v1/favorites", &body).await?, &[]);
        }
        FavoriteCmd::Submit { id } => {
            let r = c.post(&format!("/api/v1/favorites/{}/submit", enc(&id)), &json!({})).await?;
            return print_outcomes(g, &r);
        }
        FavoriteCmd::Delete { id } => {
            c.delete(&format!("/api/v1/favorites/{}", enc(&id))).await?;
            done(g.output, "Favorite deleted.");
        }
    }
    Ok(())
}

pub async fn reason_codes(cmd: ReasonCodeCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    match cmd {
        ReasonCodeCmd::List => print(g.output, &c.get("/api/v1/reason-codes").await?, &["id", "name", "description"]),
        ReasonCodeCmd::Create { name, description } => print(
            g.output,
            &c.post("/api/v1/reason-codes", &json!({ "name": name, "description": description })).await?,
            &[],
        ),
        ReasonCodeCmd::Delete { id } => {
            c.delete(&format!("/api/v1/reason-codes/{}", enc(&id))).await?;
            done(g.output, "Reason code deleted.");
        }
    }
    Ok(())
}

pub async fn services(cmd: ServiceCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let r = match cmd {
        ServiceCmd::Show => c.get("/api/v1/services").await?,
        ServiceCmd::Set { session_requests } => {
            c.put("/api/v1/services", Some(&json!({ "session_requests": session_requests }))).await?
        }
    };
    print(g.output, &r, &[]);
    Ok(())
}
