//! The `portcullis` binary: the server (`serve`) and the command-line client, composed from
//! the workspace's crates. Errors become `anyhow` only here, at the edge.

mod backup;
mod config;
mod keys;
mod reset_link;
mod rotate;
mod serve;
mod tls;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Privileged access management: vault, access requests, session proxy, audit."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: portcullis_cli::GlobalArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. With no configuration it uses ./portcullis-data (SQLite, recordings,
    /// keys, a self-signed certificate) and prints a one-time bootstrap secret.
    Serve {
        /// Configuration file (TOML); see `portcullis config example`.
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// Log format, overriding log.format: text or json.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// On the server: make USER's password stop working and print a one-time set-password
    /// link to hand them (for a server without e-mail; with e-mail, User Administrators reset
    /// passwords and the link is mailed).
    ResetLink {
        /// The user name.
        username: String,
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// On the server: write a backup (one tar file): a consistent snapshot of the database, the
    /// recordings on this disk with their manifest, and the server's keys sealed under the vault
    /// key — never the vault key itself, which a restore needs given separately.
    Backup {
        /// The file to write (e.g. portcullis-2026-11-30.tar).
        #[arg(long)]
        to: PathBuf,
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// On a new server: restore a backup into the configured, empty data directory (and
    /// database). Give it the vault key the backed-up server used first (keys/vault.kek).
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Vault maintenance on this server's data (run with the server stopped).
    #[command(subcommand)]
    Vault(VaultCmd),
    #[command(flatten)]
    Client(Box<portcullis_cli::Command>),
}

#[derive(Subcommand)]
enum VaultCmd {
    /// Re-wrap every credential under a new key-encryption key; safe to interrupt and re-run.
    RotateKey {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// Pause between rows, to spread the load on a busy database.
        #[arg(long, default_value_t = 0)]
        throttle_ms: u64,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a complete, commented configuration file with the defaults.
    Example,
    /// Validate a configuration (file plus environment) and print the result.
    Check {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// The configuration a server-side command runs with; exit status 2 (after saying why) if it
/// is wrong.
fn load_config(path: Option<&std::path::Path>) -> Result<config::Config, std::process::ExitCode> {
    config::Config::load(path, std::env::vars()).map_err(|e| {
        eprintln!("error: {e}");
        std::process::ExitCode::from(2)
    })
}

/// The exit status of a server-side command.
fn finish(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &config::Config) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // The NLA and RDP acceptance crates trace the messages they handle, delegated credentials
    // and Client Info PDUs included: never below warnings, whatever the level.
    for quiet in ["sspi=warn", "ironrdp_acceptor=warn", "ironrdp_connector=warn"] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    // Colour only for a person at a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if config.log.format == "json" {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.init();
    }
}

/// glibc's allocator keeps an arena per thread that touched the heap and rarely gives freed
/// memory back; with a relay whose buffers move between threads that looks like growth. Two
/// arenas and a low trim threshold keep a long-running server's memory close to what it uses.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve { config, log_format } => {
            let mut env: Vec<(String, String)> = std::env::vars().collect();
            if let Some(f) = log_format {
                env.push(("PORTCULLIS_LOG_FORMAT".into(), f));
            }
            let config = match config::Config::load(config.as_deref(), env) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return std::process::ExitCode::from(2);
                }
            };
            init_logging(&config);
            match runtime.block_on(serve::run(config)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCmd::Example) => {
            print!("{}", config::EXAMPLE);
            std::process::ExitCode::SUCCESS
        }
        Command::Config(ConfigCmd::Check { config }) => match config::Config::load(config.as_deref(), std::env::vars())
        {
            Ok(c) => {
                println!(
                    "configuration is valid; database: {}",
                    if c.storage.database_url.is_empty() { "embedded SQLite" } else { "as configured" }
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(2)
            }
        },
        Command::Vault(VaultCmd::RotateKey { config, throttle_ms }) => match load_config(config.as_deref()) {
            Ok(config) => finish(runtime.block_on(rotate::run(config, std::time::Duration::from_millis(throttle_ms)))),
            Err(code) => code,
        },
        Command::Backup { to, config } => match load_config(config.as_deref()) {
            Ok(config) => finish(runtime.block_on(backup::backup(config, &to))),
            Err(code) => code,
        },
        Command::Restore { from, config } => match load_config(config.as_deref()) {
            Ok(config) => finish(runtime.block_on(backup::restore(config, &from))),
            Err(code) => code,
        },
        Command::ResetLink { username, config } => match load_config(config.as_deref()) {
            Ok(config) => finish(runtime.block_on(reset_link::run(config, &username))),
            Err(code) => code,
        },
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&portcullis_api::openapi()).expect("serializable"));
            std::process::ExitCode::SUCCESS
        }
        Command::Client(cmd) => {
            let code = runtime.block_on(portcullis_cli::run(*cmd, cli.global));
            std::process::ExitCode::from(code as u8)
        }
    }
}
