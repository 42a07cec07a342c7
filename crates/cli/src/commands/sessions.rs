//! `portcullis session …` and `portcullis recording …`: live sessions and their recordings.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::signed_in;
use crate::client::enc;
use crate::output::print;
use crate::{CliError, GlobalArgs};

const COLUMNS: &[&str] = &[
    "id",
    "username",
    "client",
    "node",
    "started_at",
    "ended_at",
    "end_reason",
    "bytes_up",
    "bytes_down",
    "request_id",
    "legal_hold",
];

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Sessions you may see, newest first.
    List {
        /// Only live sessions.
        #[arg(long)]
        live: bool,
        #[arg(long)]
        request: Option<String>,
    },
    Show {
        id: String,
    },
    /// End a live session now (approvers of its request, Security Policy Administrators).
    Terminate {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Put a session under legal hold: its policy's retention never deletes it (Security Policy
    /// Administrators, Auditors).
    Hold {
        id: String,
        /// Why it is kept (e.g. the case), 1 to 500 characters.
        #[arg(long)]
        reason: String,
    },
    /// Release a session's legal hold: its policy's retention applies again.
    Release {
        id: String,
    },
    /// Watch a live session's terminal as it happens, read-only (approvers, reviewers,
    /// authorizers, Security Policy Administrators, Auditors). Ends with the session.
    Watch {
        id: String,
    },
    /// Connections waiting for your confirmation or for an authorizer.
    Waiting,
    /// Confirm your own waiting connection (gateway authentication).
    Confirm {
        /// The waiting id the SSH client showed.
        id: String,
    },
    /// Permit someone's waiting session (four-eyes authorizers).
    Permit {
        id: String,
    },
    /// Refuse a waiting connection; the user is told why.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecordingCmd {
    /// Check that a recording is complete and unaltered (exit 1 if not).
    Verify { id: String },
    /// Write a recording as asciicast v2, events, or (RDP) frames (to a file, or standard output).
    Export {
        id: String,
        /// asciicast (the terminal), events (every event as JSON lines) or frames (an RDP
        /// session's screen: a tar of PNG pictures and frames.ffconcat; make a video with
        /// `ffmpeg -f concat -i frames.ffconcat -pix_fmt yuv420p session.webm`).
        #[arg(long, default_value = "asciicast")]
        format: String,
        /// Output file (default: standard output).
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
    },
    /// Save the screen of an RDP session at a moment as a PNG picture.
    Screen {
        id: String,
        /// Seconds since the session started (decimals allowed).
        #[arg(long)]
        at: f64,
        /// Output file.
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    /// Replay a recording in this terminal, with its timing.
    Play {
        id: String,
        /// Playback speed (2 = twice as fast).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Longest pause, in seconds.
        #[arg(long, default_value_t = 2.0)]
        max_wait: f64,
        /// Start here: seconds into the recording (a search hit's `at`); what came before is
        /// drawn at once, so the screen is as it was.
        #[arg(long, default_value_t = 0.0)]
        at: f64,
    },
    /// Ask to view a recording whose access policy requires approval (another approver decides;
    /// an approval lasts 24 hours).
    RequestView {
        session: String,
        /// Why you need to see this session (10 to 1000 characters).
        #[arg(long)]
        justification: String,
    },
    /// Requests to view recordings: the pending ones you may decide, or (--mine) your own.
    ViewRequests {
        #[arg(long)]
        mine: bool,
    },
    /// Approve a request to view a recording (never your own).
    ApproveView {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request to view a recording (never your own).
    DenyView {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Search what sessions typed, showed, transferred and opened, and who connected where and
    /// when (live and past sessions you may replay), newest first. Example:
    /// portcullis recording search '"systemctl stop"' --asset db1 --since 7d
    Search {
        /// Words and "quoted phrases" that must all appear in one entry (case does not matter);
        /// none: the sessions matching the filters.
        #[arg(default_value = "")]
        query: String,
        /// Sessions of this Portcullis user (name).
        #[arg(long)]
        user: Option<String>,
        /// On this account (name).
        #[arg(long)]
        account: Option<String>,
        /// On this asset (name).
        #[arg(long)]
        asset: Option<String>,
        /// ssh, telnet or rdp.
        #[arg(long)]
        protocol: Option<String>,
        /// Only these kinds (comma-separated): command, output, file, channel, content, session.
        #[arg(long)]
        kind: Option<String>,
        /// From: how long ago (7d, 12h, 30m) or a time (2026-11-23T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Before: how long ago or a time.
        #[arg(long)]
        until: Option<String>,
        /// At most this many hits (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

pub async fn sessions(cmd: SessionCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    match cmd {
        SessionCmd::List { live, request } => {
            let mut q = vec!["limit=1000".to_owned()];
            if live {
                q.push("live=true".into());
            }
            if let Some(r) = &request {
                q.push(format!("request_id={}", enc(r)));
            }
            let v = c.get(&format!("/api/v1/sessions?{}", q.join("&"))).await?;
            if g.output != crate::Output::Json && v.as_array().is_some_and(Vec::is_empty) {
                let which = if live { "live sessions" } else { "sessions" };
                match request {
                    Some(r) => println!("No {which} of request {r} that you may see."),
                    None => println!("No {which} that you may see."),
                }
                return Ok(());
            }
            print(g.output, &v, COLUMNS);
        }
        SessionCmd::Show { id } => {
            let v = c.get(&format!("/api/v1/sessions/{}", enc(&id))).await?;
            print(g.output, &v, COLUMNS);
        }
        SessionCmd::Terminate { id, reason } => {
            let v = c.post(&format!("/api/v1/sessions/{}/terminate", enc(&id)), &json!({ "reason": reason })).await?;
            print(g.output, &v, COLUMNS);
        }
        SessionCmd::Hold { id, reason } => {
            c.put(&format!("/api/v1/sessions/{}/legal-hold", enc(&id)), Some(&json!({ "reason": reason }))).await?;
            crate::output::done(g.output, &format!("Session {id} is under legal hold: retention will not delete it."));
        }
        SessionCmd::Release { id } => {
            c.delete(&format!("/api/v1/sessions/{}/legal-hold", enc(&id))).await?;
            crate::output::done(
                g.output,
                &format!("Session {id}'s legal hold is released: its policy's retention applies again."),
            );
        }
        SessionCmd::Watch { id } => {
            let mut out = std::io::stdout();
            eprintln!("Watching session {id} (read-only); Ctrl-C stops watching, not the session.");
            c.follow(&format!("/api/v1/sessions/{}/live", enc(&id)), &mut out).await?;
        }
        SessionCmd::Waiting => {
            let v = c.get("/api/v1/session-waits").await?;
            print(
                g.output,
                &v,
                &["id", "kind", "username", "target", "client", "connection_policy", "until", "yours_to_decide"],
            );
        }
        SessionCmd::Confirm { id } | SessionCmd::Permit { id } => decide_wait(&c, g, &id, "permit", None).await?,
        SessionCmd::Deny { id, reason } => decide_wait(&c, g, &id, "deny", reason).await?,
    }
    Ok(())
}

/// Permits or denies a waiting connection and says what happened, by name.
async fn decide_wait(
    c: &crate::client::Client,
    g: &GlobalArgs,
    id: &str,
    verb: &str,
    reason: Option<String>,
) -> Result<(), CliError> {
    let v = c.post(&format!("/api/v1/session-waits/{}/{verb}", enc(id)), &json!({ "reason": reason })).await?;
    if g.output == crate::Output::Json {
        print(g.output, &v, &[]);
        return Ok(());
    }
    let (who, target) = (v["username"].as_str().unwrap_or("?"), v["target"].as_str().unwrap_or("?"));
    match verb {
        "permit" => println!("Permitted: {who}'s connection to {target} goes on."),
        _ => println!("Denied: {who}'s connection to {target} was refused."),
    }
    Ok(())
}

pub async fn recordings(cmd: RecordingCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    match cmd {
        RecordingCmd::Verify { id } => {
            let v = c.get(&format!("/api/v1/sessions/{}/recording/verify", enc(&id))).await?;
            print(
                g.output,
                &v,
                &[
                    "session_id",
                    "status",
                    "problem",
                    "chunks",
                    "events",
                    "payload_bytes",
                    "stored_bytes",
                    "duration_seconds",
                ],
            );
            if v["intact"] != Value::Bool(true) {
                let problem = v["problem"].as_str().unwrap_or("unknown problem");
                let message = match v["status"].as_str() {
                    Some("cut") => format!("CUT (not altered): {problem}"),
                    _ => format!("DAMAGED: {problem}"),
                };
                eprintln!("{message}");
                return Err(CliError::Failed(message));
            }
        }
        RecordingCmd::Export { id, format, file } => {
            let path = format!("/api/v1/sessions/{}/recording?format={}", enc(&id), enc(&format));
            match file {
                Some(f) => {
                    let mut out = std::fs::File::create(&f).map_err(|e| CliError::Io(f.display().to_string(), e))?;
                    c.download(&path, &mut out).await?;
                    out.flush().map_err(|e| CliError::Io(f.display().to_string(), e))?;
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    c.download(&path, &mut out).await?;
                }
            }
        }
        RecordingCmd::Screen { id, at, file } => {
            let path = format!("/api/v1/sessions/{}/screen?at={at}", enc(&id));
            let mut out = std::fs::File::create(&file).map_err(|e| CliError::Io(file.display().to_string(), e))?;
            c.download(&path, &mut out).await?;
            out.flush().map_err(|e| CliError::Io(file.display().to_string(), e))?;
            eprintln!("The screen {at} s into session {id} is in {}", file.display());
        }
        RecordingCmd::RequestView { session, justification } => {
            let v = c
                .post(
                    &format!("/api/v1/sessions/{}/view-requests", enc(&session)),
                    &json!({ "justification": justification }),
                )
                .await?;
            if g.output == crate::Output::Json {
                print(g.output, &v, &[]);
            } else {
                println!(
                    "Asked to view session {session}'s recording (request {}). An approver decides; see `portcullis recording view-requests --mine`.",
                    v["id"].as_str().unwrap_or("?")
                );
            }
        }
        RecordingCmd::ViewRequests { mine } => {
            let v = c.get(&format!("/api/v1/recording-view-requests?mine={mine}")).await?;
            if g.output != crate::Output::Json && v.as_array().is_some_and(Vec::is_empty) {
                println!(
                    "{}",
                    if mine {
                        "You have not asked to view a recording."
                    } else {
                        "No request to view a recording waits for you (see your own with --mine)."
                    }
                );
                return Ok(());
            }
            print(
                g.output,
                &v,
                &[
                    "id",
                    "state",
                    "requester",
                    "justification",
                    "session_user",
                    "asset_name",
                    "session_id",
                    "created_at",
                    "expires_at",
                ],
            );
        }
        RecordingCmd::ApproveView { id, comment } => decide_view(&c, g, &id, comment, true).await?,
        RecordingCmd::DenyView { id, comment } => decide_view(&c, g, &id, comment, false).await?,
        RecordingCmd::Search { query, user, account, asset, protocol, kind, since, until, limit } => {
            search(
                &c,
                g,
                &query,
                [
                    ("user", user),
                    ("account", account),
                    ("asset", asset),
                    ("protocol", protocol),
                    ("kind", kind),
                    ("from", since),
                    ("to", until),
                ],
                limit,
            )
            .await?;
        }
        RecordingCmd::Play { id, speed, max_wait, at } => {
            if !(speed > 0.0 && speed <= 1000.0) {
                return Err(CliError::Usage("--speed must be above 0 and at most 1000".into()));
            }
            if !(at >= 0.0 && at.is_finite()) {
                return Err(CliError::Usage("--at must be a number of seconds, 0 or more".into()));
            }
            let mut buf = Vec::new();
            c.download(&format!("/api/v1/sessions/{}/recording?format=asciicast", enc(&id)), &mut buf).await?;
            let mut out = std::io::stdout().lock();
            let mut last = at;
            for line in String::from_utf8_lossy(&buf).lines().skip(1) {
                let Ok(Value::Array(e)) = serde_json::from_str::<Value>(line) else { continue };
                let (Some(t), Some("o"), Some(text)) = (e[0].as_f64(), e[1].as_str(), e[2].as_str()) else { continue };
                // Before `--at`: drawn at once.
                let wait = if t <= at { 0.0 } else { ((t - last) / speed).clamp(0.0, max_wait) };
                last = last.max(t);
                std::thread::sleep(std::time::Duration::from_secs_f64(wait));
                out.write_all(text.as_bytes()).map_err(|e| CliError::Io("stdout".into(), e))?;
                out.flush().map_err(|e| CliError::Io("stdout".into(), e))?;
            }
        }
    }
    Ok(())
}

/// `portcullis recording approve-view|deny-view`.
async fn decide_view(
    c: &crate::client::Client,
    g: &GlobalArgs,
    id: &str,
    comment: Option<String>,
    approve: bool,
) -> Result<(), CliError> {
    let verb = if approve { "approve" } else { "deny" };
    let v =
        c.post(&format!("/api/v1/recording-view-requests/{}/{verb}", enc(id)), &json!({ "comment": comment })).await?;
    let (who, session) = (v["requester"].as_str().unwrap_or("?"), v["session_id"].as_str().unwrap_or("?"));
    if g.output == crate::Output::Json {
        print(g.output, &v, &[]);
    } else if approve {
        println!(
            "Approved: {who} may view session {session}'s recording until {}.",
            v["expires_at"].as_str().unwrap_or("?")
        );
    } else {
        println!("Denied: {who} may not view session {session}'s recording.");
    }
    Ok(())
}

/// `portcullis recording search`: the hits as a table, and how to play one.
async fn search<const N: usize>(
    c: &crate::client::Client,
    g: &GlobalArgs,
    query: &str,
    filters: [(&str, Option<String>); N],
    limit: usize,
) -> Result<(), CliError> {
    let mut q = vec![format!("q={}", enc(query)), format!("limit={limit}")];
    for (k, v) in filters {
        if let Some(v) = v {
            q.push(format!("{k}={}", enc(&v)));
        }
    }
    let v = c.get(&format!("/api/v1/recordings/search?{}", q.join("&"))).await.map_err(|e| match e {
        // The API's parameters are `from` and `to`; here they are `--since` and `--until`.
        CliError::Server { status, code, message } => {
            let message = match message.split_once(": ") {
                Some(("from", rest)) => format!("--since: {rest}"),
                Some(("to", rest)) => format!("--until: {rest}"),
                _ => message,
            };
            CliError::Server { status, code, message }
        }
        e => e,
    })?;
    if g.output == crate::Output::Json {
        print(g.output, &v, &[]);
        return Ok(());
    }
    let hits = v.as_array().cloned().unwrap_or_default();
    if hits.is_empty() {
        println!("No session matches (only sessions you may replay are searched).");
        return Ok(());
    }
    let rows: Vec<Value> = hits
        .iter()
        .map(|h| {
            let at = h["at_seconds"].as_f64().unwrap_or(0.0);
            let target = format!(
                "{}@{}",
                h["account_name"].as_str().unwrap_or("?"),
                h["asset_name"].as_str().unwrap_or("?")
            );
            let text: String = if h["view_approval_required"] == true {
                format!("(needs an approved view: portcullis recording request-view {})", h["session_id"].as_str().unwrap_or(""))
            } else {
                h["snippet"].as_str().unwrap_or("").replace('\n', " ⏎ ").chars().take(100).collect()
            };
            json!({
                "time": h["time"], "user": h["username"], "target": target, "session": h["session_id"],
                "at": format!("{}:{:02}{}", (at as u64) / 60, (at as u64) % 60, if h["live"] == true { " (live)" } else { "" }),
                "kind": h["kind"], "text": text,
            })
        })
        .collect();
    print(g.output, &Value::Array(rows), &["time", "user", "target", "session", "at", "kind", "text"]);
    let first = &hits[0];
    println!(
        "{} hit(s). Replay from a hit: portcullis recording play {} --at {}",
        hits.len(),
        first["session_id"].as_str().unwrap_or("SESSION"),
        first["at_seconds"].as_f64().unwrap_or(0.0).floor()
    );
    Ok(())
}

/// `portcullis request launch ID`: a launch token and the commands that use it.
pub async fn launch(id: String, rdp_file: Option<PathBuf>, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let v = c.post(&format!("/api/v1/requests/{}/launch", enc(&id)), &json!({})).await?;
    if g.output == crate::Output::Json {
        print(g.output, &v, &[]);
    } else if v["access_type"] == "rdp" {
        let until = v["expires_at"].as_str().unwrap_or("the request ends");
        println!("One-time launch token: connect ONCE, before {until} (run `portcullis request launch` again for another session).");
        println!("  FreeRDP: {}", v["freerdp"].as_str().unwrap_or(""));
        if let Some(file) = rdp_file {
            let text = v["rdp_file"].as_str().unwrap_or("");
            std::fs::write(&file, text).map_err(|e| CliError::Io(file.display().to_string(), e))?;
            println!("  Remote Desktop Connection (mstsc) and others: open {}", file.display());
        } else {
            println!("  Remote Desktop Connection (mstsc): add --rdp-file FILE.rdp to write a file to open");
        }
        if !v["rdp_file"].as_str().unwrap_or("").contains("loadbalanceinfo") {
            println!("  Any client that asks for a password: paste the token: {}", v["token"].as_str().unwrap_or(""));
        }
        println!(
            "Or sign in with your Portcullis password, as often as the request allows: user name '{}' (FreeRDP: /sec:tls)",
            v["inband_user"].as_str().unwrap_or("")
        );
    } else {
        println!(
            "One-time launch token: use ONE of these commands, once, before {} (run `portcullis request launch` again for another session):",
            v["expires_at"].as_str().unwrap_or("the request ends")
        );
        for k in ["ssh", "scp", "sftp", "plink"] {
            println!("  {k:6} {}", v[k].as_str().unwrap_or(""));
        }
        println!(
            "Or sign in with your Portcullis password, as often as the request allows: ssh -p PORT '{}@HOST'",
            v["inband_user"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum SshKeyCmd {
    /// Your registered SSH public keys.
    List,
    /// Register a public key for signing in to the SSH proxy. You prove you hold it: the
    /// server's challenge is signed with `ssh-keygen -Y sign` (the private key next to FILE,
    /// or ssh-agent), or give a signature made elsewhere with --signature.
    Add {
        /// A label, e.g. laptop.
        #[arg(long)]
        name: String,
        /// The public key file (e.g. ~/.ssh/id_ed25519.pub).
        #[arg(long)]
        file: PathBuf,
        /// A file with the signature of `portcullis ssh-key challenge`'s text, made with
        /// `ssh-keygen -Y sign -n portcullis -f KEY`.
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// The text to sign to register a key, and the command that signs it.
    Challenge,
    /// Remove a key.
    Remove { id: String },
}

pub async fn ssh_keys(cmd: SshKeyCmd, g: &GlobalArgs) -> Result<(), CliError> {
    let c = signed_in(g)?;
    let columns = &["id", "name", "fingerprint", "created_at", "last_used_at"];
    match cmd {
        SshKeyCmd::List => print(g.output, &c.get("/api/v1/me/ssh-keys").await?, columns),
        SshKeyCmd::Add { name, file, signature } => {
            let key = std::fs::read_to_string(&file).map_err(|e| CliError::Io(file.display().to_string(), e))?;
            let signature = match signature {
                Some(p) => std::fs::read_to_string(&p).map_err(|e| CliError::Io(p.display().to_string(), e))?,
                None => {
                    let challenge = c.get("/api/v1/me/ssh-keys/challenge").await?;
                    sign_challenge(&file, challenge["challenge"].as_str().unwrap_or_default())?
                }
            };
            let body = json!({ "name": name, "public_key": key.trim(), "signature": signature });
            let v = c.post("/api/v1/me/ssh-keys", &body).await?;
            print(g.output, &v, columns);
        }
        SshKeyCmd::Challenge => {
            let v = c.get("/api/v1/me/ssh-keys/challenge").await?;
            match g.output {
                crate::Output::Json => print(g.output, &v, &[]),
                _ => println!(
                    "Sign this text (exactly, with its line ends) with the key's private half:\n\n{}\n{}",
                    v["challenge"].as_str().unwrap_or_default(),
                    v["command"].as_str().unwrap_or_default()
                ),
            }
        }
        SshKeyCmd::Remove { id } => {
            c.delete(&format!("/api/v1/me/ssh-keys/{}", enc(&id))).await?;
        }
    }
    Ok(())
}

/// Signs `challenge` with `ssh-keygen -Y sign`: with the private key beside the public key
/// file (`KEY` for `KEY.pub`), or, when there is none, with the key in ssh-agent.
fn sign_challenge(public: &std::path::Path, challenge: &str) -> Result<String, CliError> {
    use std::io::Write;
    let private = public.to_string_lossy().strip_suffix(".pub").map(PathBuf::from).filter(|p| p.exists());
    let key = private.unwrap_or_else(|| public.to_path_buf());
    let mut child = std::process::Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "portcullis", "-f"])
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Usage(format!("cannot run ssh-keygen to sign the challenge ({e}); use --signature")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(challenge.as_bytes()).map_err(|e| CliError::Io("ssh-keygen".into(), e))?;
    }
    let out = child.wait_with_output().map_err(|e| CliError::Io("ssh-keygen".into(), e))?;
    if !out.status.success() {
        return Err(CliError::Usage(format!(
            "ssh-keygen could not sign with {}: {}; sign `portcullis ssh-key challenge`'s text yourself and pass \
             --signature",
            key.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The SSH proxy's address and host keys, to check on first connect.
pub async fn ssh_proxy(g: &GlobalArgs) -> Result<(), CliError> {
    let v = signed_in(g)?.get("/api/v1/ssh-proxy").await?;
    if g.output == crate::Output::Json {
        print(g.output, &v, &[]);
        return Ok(());
    }
    match v["address"].as_str() {
        Some(a) if !a.is_empty() => println!("SSH proxy: {a}"),
        _ => {
            println!("The SSH proxy is not running on this server.");
            return Ok(());
        }
    }
    print(g.output, &v["host_keys"], &["algorithm", "fingerprint"]);
    println!("Compare with the fingerprint ssh shows on first connect, or add to ~/.ssh/known_hosts:");
    for k in v["host_keys"].as_array().into_iter().flatten() {
        println!("{}", k["known_hosts"].as_str().unwrap_or_default());
    }
    Ok(())
}
