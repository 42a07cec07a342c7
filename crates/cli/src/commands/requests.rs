use clap::Subcommand;
use serde_json::{json, Value};

use super::signed_in;
use crate::client::{enc, Client};
use crate::output::{done, print};
use crate::resolve::{self, Kind};
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
    /// Request access to one or more accounts (see `portcullis request options` for what you
    /// may request and what each needs).
    Create {
        #[command(flatten)]
        spec: RequestSpec,
    },
    /// What you may request: accounts and access types, with what each policy needs.
    Options {
        /// A part of the asset's or account's name.
        search: Option<String>,
        /// Only this asset (name or id).
        #[arg(long)]
        asset: Option<String>,
        /// Only this account: ACCOUNT@ASSET or id.
        #[arg(long)]
        account: Option<String>,
        /// password, ssh_key, ssh, rdp or telnet.
        #[arg(long)]
        access_type: Option<String>,
        /// For access starting then: a local time in your time zone (2026-12-01T09:00) or
        /// RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        /// As an emergency request.
        #[arg(long)]
        emergency: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
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
    /// Start a session: a one-time launch token and ready-to-paste ssh/scp/sftp/plink commands
    /// (SSH requests), or a FreeRDP command and an .rdp file (RDP requests).
    Launch {
        id: String,
        /// RDP requests: write an .rdp file (for mstsc and other clients) here.
        #[arg(long)]
        rdp_file: Option<std::path::PathBuf>,
    },
}

/// What a request asks for, from flags (shared by `request create` and `favorite create`).
#[derive(Debug, clap::Args)]
pub struct RequestSpec {
    /// ACCOUNT@ASSET:ACCESS_TYPE, e.g. root@web-1:ssh (access type: password, ssh_key, ssh, rdp,
    /// telnet); an account id works too. Repeatable.
    #[arg(long = "account")]
    pub accounts: Vec<String>,
    /// Emergency access (only where a policy allows it; skips approval; every approver is told).
    #[arg(long)]
    pub emergency: bool,
    /// Start later: a local time in your time zone (2026-12-01T09:00) or RFC 3339 (default: now).
    #[arg(long)]
    pub start_at: Option<String>,
    /// Duration in minutes (default: the policy's).
    #[arg(long)]
    pub duration: Option<i64>,
    #[arg(long)]
    pub ticket: Option<String>,
    /// A reason code (see `portcullis reason-code list`).
    #[arg(long)]
    pub reason: Option<String>,
    /// At most 255 characters.
    #[arg(long)]
    pub comment: Option<String>,
}

impl RequestSpec {
    /// The body of POST /api/v1/requests, with each ACCOUNT@ASSET looked up among the
    /// caller's request options.
    pub async fn body(&self, c: &Client) -> Result<Value, CliError> {
        if self.accounts.is_empty() {
            return Err(CliError::Usage(
                "name at least one --account ACCOUNT@ASSET:ACCESS_TYPE (see `portcullis request options`)".into(),
            ));
        }
        let mut accounts = Vec::new();
        for a in &self.accounts {
            let (account, access_type) = a.rsplit_once(':').ok_or_else(|| {
                CliError::Usage(format!("--account {a}: expected ACCOUNT@ASSET:ACCESS_TYPE, e.g. root@web-1:ssh"))
            })?;
            let id = requestable_account(c, account, access_type).await?;
            accounts.push(json!({ "account_id": id, "access_type": access_type }));
        }
        let mut body = with(
            json!({ "accounts": accounts, "emergency": self.emergency }),
            vec![
                ("start_at", self.start_at.clone()),
                ("ticket", self.ticket.clone()),
                ("reason_code", self.reason.clone()),
                ("comment", self.comment.clone()),
            ],
        );
        if let Some(d) = self.duration {
            body["duration_minutes"] = json!(d);
        }
        Ok(body)
    }
}

/// The id of an account the caller may request, named ACCOUNT@ASSET (or by id).
async fn requestable_account(c: &Client, account: &str, access_type: &str) -> Result<String, CliError> {
    if resolve::is_id(account) {
        return Ok(account.to_owned());
    }
    if !account.contains('@') {
        return Err(CliError::Usage(format!(
            "--account {account}:{access_type}: name the account as ACCOUNT@ASSET, e.g. root@web-1:{access_type}"
        )));
    }
    let q = format!("/api/v1/request-options?account={}&limit=1", enc(account));
    let found = c.get(&q).await?;
    match found["items"].as_array().and_then(|i| i.first()) {
        Some(o) => Ok(o["account_id"].as_str().unwrap_or_default().to_owned()),
        None => Err(CliError::Usage(format!(
            "you may not request {account}: it is not among your request options (no such account, or no \
             entitlement of yours covers it); see `portcullis request options`"
        ))),
    }
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

pub(crate) fn with(mut body: Value, pairs: Vec<(&str, Option<String>)>) -> Value {
    for (k, v) in pairs {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    body
}

/// Prints each account's outcome; fails when every account failed.
pub(crate) fn print_outcomes(g: &GlobalArgs, r: &Value) -> Result<(), CliError> {
    let outcomes = r["outcomes"].as_array().cloned().unwrap_or_default();
    if g.output == Output::Json {
        print(g.output, r, &[]);
    } else {
        for o in &outcomes {
            // ACCOUNT@ASSET when the server named it, else the id that was given.
            let target = o["account_name"].as_str().or(o["account_id"].as_str()).unwrap_or("?");
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

/// The options as a table: one line per account and access type, with what its policy needs.
fn print_options(g: &GlobalArgs, r: &Value, offset: i64) -> Result<(), CliError> {
    if g.output == Output::Json {
        print(g.output, r, &[]);
        return Ok(());
    }
    let items = r["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!(
            "Nothing you may request matches{}. Entitlements are granted by Security Policy Administrators.",
            if offset > 0 { " past this offset" } else { "" }
        );
        return Ok(());
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let t = &o["terms"];
            let needs: Vec<&str> = [("ticket_required", "ticket"), ("reason_required", "reason"), ("comment_required", "comment")]
                .into_iter()
                .filter(|(k, _)| t[*k].as_bool() == Some(true))
                .map(|(_, w)| w)
                .collect();
            let approval = if t.is_null() {
                String::new()
            } else if t["auto_approve"].as_bool() == Some(true) {
                "automatic".into()
            } else {
                format!("{} approval(s)", t["approvals_required"])
            };
            let duration = if t.is_null() {
                String::new()
            } else if t["duration_changeable"].as_bool() == Some(true) {
                format!("{} min (up to {})", t["default_duration_minutes"], t["max_duration_minutes"])
            } else {
                format!("{} min", t["default_duration_minutes"])
            };
            let status = match o["not_now"].as_str() {
                Some(why) => format!("not now: {why}"),
                None if o["in_use"].as_bool() == Some(true) => "in use by another request".into(),
                None => "can be requested".into(),
            };
            json!({
                "account": format!("{}@{}:{}", o["account_name"].as_str().unwrap_or("?"), o["asset_name"].as_str().unwrap_or("?"), o["access_type"].as_str().unwrap_or("?")),
                "policy": t["policy_name"],
                "approval": approval,
                "duration": duration,
                "needs": needs.join(", "),
                "emergency": o["emergency_allowed"],
                "status": status,
            })
        })
        .collect();
    print(
        g.output,
        &Value::Array(rows),
        &["account", "policy", "approval", "duration", "needs", "emergency", "status"],
    );
    let total = r["total"].as_u64().unwrap_or(0);
    println!(
        "{} of {total} shown (times in {}). Request with: portcullis request create --account ACCOUNT@ASSET:TYPE",
        items.len(),
        r["time_zone"].as_str().unwrap_or("UTC")
    );
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
        RequestCmd::Create { spec } => {
            let r = c.post("/api/v1/requests", &spec.body(&c).await?).await?;
            return print_outcomes(g, &r);
        }
        RequestCmd::Options { search, asset, account, access_type, at, emergency, limit, offset } => {
            let mut q = format!("?limit={limit}&offset={offset}&emergency={emergency}");
            for (key, value) in
                [("search", search), ("asset", asset), ("account", account), ("access_type", access_type), ("at", at)]
            {
                if let Some(v) = value {
                    q += &format!("&{key}={}", enc(&v));
                }
            }
            let r = c.get(&format!("/api/v1/request-options{q}")).await?;
            return print_options(g, &r, offset);
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
            // What the person does next, in the words of the commands that do it.
            let next = match queue.as_str() {
                "approvals" => "Decide: portcullis request approve|deny ID [ID …] --comment TEXT (approve may change --start-at/--end-at)",
                "approved" => "Revoke (ends its live sessions): portcullis request revoke ID --comment TEXT; sessions: portcullis session list --request ID",
                "reviews" => "Review: portcullis session list --request ID, portcullis recording play SESSION, then portcullis request review ID --comment TEXT",
                _ => "",
            };
            if g.output == Output::Table && !next.is_empty() {
                println!("{next}");
            }
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
        RequestCmd::Launch { id, rdp_file } => return super::sessions::launch(id, rdp_file, g).await,
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
            let id = resolve::id(&c, Kind::ReasonCode, &id).await?;
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
