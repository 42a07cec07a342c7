//! The `portcullis` command-line client for administrators and requesters. It talks to the
//! server over the same HTTP API as the web UI; it never touches the database.

mod client;
mod commands;
mod output;
mod resolve;

use clap::Args;

pub use client::{load_saved, Client, Saved};
pub use commands::Command;
pub use output::Output;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {1}", path = .0)]
    Io(String, std::io::Error),
    #[error("cannot reach {0}: {1}")]
    Connect(String, String),
    #[error("{message} ({code}, HTTP {status})")]
    Server { status: u16, code: String, message: String },
    /// The command ran but found a problem (e.g. a broken audit chain); already reported.
    #[error("{0}")]
    Failed(String),
}

/// Options for every client command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Server URL, e.g. https://127.0.0.1:8443 (default: the one saved by `login`).
    #[arg(long, global = true, env = "PORTCULLIS_SERVER")]
    pub server: Option<String>,
    /// Trust the server's certificate only if its SHA-256 fingerprint is this (as printed by
    /// `portcullis serve`).
    #[arg(long, global = true, env = "PORTCULLIS_FINGERPRINT")]
    pub fingerprint: Option<String>,
    /// Accept any server certificate. Only for testing: it allows interception.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// API token to use instead of the saved sign-in.
    #[arg(long, global = true, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    pub output: Output,
}

/// Runs a client command; returns the process exit code.
pub async fn run(command: Command, global: GlobalArgs) -> i32 {
    match commands::dispatch(command, &global).await {
        Ok(()) => 0,
        Err(CliError::Failed(_)) => 1,
        Err(e) => {
            if global.output == Output::Json {
                let (code, status) = match &e {
                    CliError::Server { code, status, .. } => (code.clone(), *status),
                    _ => ("client_error".into(), 0),
                };
                eprintln!(
                    "{}",
                    serde_json::json!({ "error": { "code": code, "status": status, "message": e.to_string() } })
                );
            } else {
                eprintln!("error: {e}");
            }
            1
        }
    }
}
