use clap::Subcommand;
use serde_json::Value;

use super::signed_in;
use crate::client::enc;
use crate::output::print;
use crate::{CliError, GlobalArgs, Output};

const COLUMNS: &[&str] = &["seq", "at", "actor_name", "source", "action", "object_type", "object_id", "outcome"];

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// List audit events (oldest first), filtered.
    List {
        /// RFC 3339 start (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 end (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Actor username.
        #[arg(long)]
        actor: Option<String>,
        /// Action, e.g. auth.login.
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        object_type: Option<String>,
        #[arg(long)]
        object_id: Option<String>,
        /// Start after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        /// Events per page (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Follow the pages to the end.
        #[arg(long)]
        all: bool,
    },
    /// Verify the hash chain; exits non-zero and names the first broken event if any.
    Verify,
}

pub async fn run(cmd: AuditCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    match cmd {
        AuditCmd::List { from, to, actor, action, object_type, object_id, mut after, limit, all } => {
            let mut filters = String::new();
            for (k, v) in [
                ("from", from),
                ("to", to),
                ("actor", actor),
                ("action", action),
                ("object_type", object_type),
                ("object_id", object_id),
            ] {
                if let Some(v) = v {
                    filters += &format!("&{k}={}", enc(&v));
                }
            }
            let mut events: Vec<Value> = Vec::new();
            loop {
                let cursor = after.map(|a| format!("&after={a}")).unwrap_or_default();
                let page = c.get(&format!("/api/v1/audit/events?limit={limit}{filters}{cursor}")).await?;
                if let Some(list) = page["events"].as_array() {
                    events.extend(list.iter().cloned());
                }
                after = page["next_after"].as_i64();
                if !all || after.is_none() {
                    break;
                }
            }
            print(g.output, &Value::Array(events), COLUMNS);
            Ok(())
        }
        AuditCmd::Verify => {
            let report = c.get("/api/v1/audit/verify").await?;
            let ok = report["ok"].as_bool() == Some(true);
            if g.output == Output::Json {
                print(g.output, &report, &[]);
            } else if ok {
                println!("Audit chain intact: {} events verified.", report["checked"]);
            } else {
                println!(
                    "AUDIT CHAIN BROKEN at event {}: {}",
                    report["first_broken_seq"],
                    report["reason"].as_str().unwrap_or("unknown reason")
                );
            }
            if ok {
                Ok(())
            } else {
                Err(CliError::Failed("audit chain broken".into()))
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum NotificationCmd {
    /// Send yourself a test notification through every configured channel: e-mail (to the
    /// address in your profile), webhook, and the SIEM (Appliance Administrators).
    Test,
    /// Notifications delivery gave up on after its last attempt (Appliance Administrators,
    /// Auditors); each is also in the audit log as notification.failed.
    Failed {
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

pub async fn notifications(cmd: NotificationCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let limit = match cmd {
        NotificationCmd::Test => {
            signed_in(g)?.post("/api/v1/notifications/test", &serde_json::json!({})).await?;
            println!(
                "A test notification is on its way to you through every configured channel. \
                 If it does not arrive, `portcullis notification failed` will say why once delivery gives up."
            );
            return Ok(());
        }
        NotificationCmd::Failed { limit } => limit,
    };
    let v = signed_in(g)?.get(&format!("/api/v1/notifications/failed?limit={limit}")).await?;
    if g.output == Output::Json {
        print(g.output, &v, &[]);
        return Ok(());
    }
    if v.as_array().is_none_or(Vec::is_empty) {
        println!("No notification has been given up: every one was delivered or is still being tried.");
        return Ok(());
    }
    let rows: Vec<Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let mut n = n.clone();
            let who: Vec<&str> = n["recipients"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            n["recipients"] = Value::String(who.join(", "));
            n
        })
        .collect();
    print(g.output, &Value::Array(rows), &["failed_at", "event", "recipients", "attempts", "last_error"]);
    Ok(())
}
