//! `portcullis login --sso`: single sign-on from a terminal. The command listens on a loopback
//! port, asks the server to start a sign-in that returns there, and prints the provider's
//! address (and opens it in a browser when it can). The browser comes back to the command with
//! a one-time grant, which the command trades — with a verifier only it knows — for a session.

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::client::{store_saved, Client, Saved};
use crate::{CliError, GlobalArgs};

/// How long the command waits for the browser.
const WAIT: Duration = Duration::from_secs(300);

fn random_hex() -> Result<Zeroizing<String>, CliError> {
    let mut bytes = [0u8; 32];
    getrandom(&mut bytes)?;
    Ok(Zeroizing::new(hex::encode(bytes)))
}

fn getrandom(buf: &mut [u8]) -> Result<(), CliError> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| CliError::Io("/dev/urandom".into(), e))
}

/// Waits for the browser's GET /callback?grant=… and answers it with a page that says so.
async fn wait_for_grant(listener: tokio::net::TcpListener) -> Result<Zeroizing<String>, CliError> {
    loop {
        let (mut stream, _) = listener.accept().await.map_err(|e| CliError::Io("the loopback listener".into(), e))?;
        let mut buf = vec![0u8; 8192];
        let mut n = 0;
        while n < buf.len() {
            let Ok(read) = stream.read(&mut buf[n..]).await else { break };
            if read == 0 {
                break;
            }
            n += read;
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let request = String::from_utf8_lossy(&buf[..n]).into_owned();
        let target = request.lines().next().and_then(|l| l.split(' ').nth(1)).unwrap_or_default().to_owned();
        let grant = target
            .strip_prefix("/callback?")
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("grant=")))
            .map(|g| Zeroizing::new(g.to_owned()));
        let body = if grant.is_some() {
            "Signed in to Portcullis. You can close this window and return to the terminal."
        } else {
            "This is not a Portcullis sign-in answer."
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
        if let Some(g) = grant {
            return Ok(g);
        }
    }
}

pub async fn login(
    g: &GlobalArgs,
    client: &Client,
    server: String,
    open_browser: bool,
    totp: Option<&str>,
) -> Result<serde_json::Value, CliError> {
    let info = client.get("/api/v1/auth/sso").await?;
    if info["enabled"] != true {
        return Err(CliError::Usage(format!(
            "single sign-on is not configured on {server}; sign in with --username instead"
        )));
    }
    let provider = info["display_name"].as_str().unwrap_or("single sign-on").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Io("a loopback port for the browser's answer".into(), e))?;
    let port = listener.local_addr().map_err(|e| CliError::Io("the loopback listener".into(), e))?.port();
    let verifier = random_hex()?;
    let challenge = hex::encode(Sha256::digest(verifier.as_bytes()));
    let started = client
        .post(
            "/api/v1/auth/sso/start",
            &json!({ "redirect": format!("http://127.0.0.1:{port}/callback"), "challenge": challenge }),
        )
        .await?;
    let url = started["url"].as_str().ok_or_else(|| CliError::Usage("the server sent no sign-in address".into()))?;
    eprintln!("To sign in with {provider}, open this address in a browser on this machine:\n\n  {url}\n");
    if open_browser {
        let _ = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    eprintln!("Waiting for the browser (up to {} minutes)…", WAIT.as_secs() / 60);
    let grant = tokio::time::timeout(WAIT, wait_for_grant(listener))
        .await
        .map_err(|_| CliError::Usage("no answer from the browser within 5 minutes; run the command again".into()))??;
    let mut body = json!({ "grant": &*grant, "verifier": &*verifier });
    if let Some(code) = totp {
        body["totp_code"] = json!(code);
    }
    let resp = match client.post("/api/v1/auth/sso/token", &body).await {
        Err(CliError::Server { code, .. }) if code == "totp_required" => {
            let code = super::read_secret("One-time code: ", "PORTCULLIS_TOTP_CODE", false)?;
            body["totp_code"] = json!(code.trim());
            client.post("/api/v1/auth/sso/token", &body).await?
        }
        other => other?,
    };
    let token = resp["token"].as_str().ok_or_else(|| CliError::Usage("the server sent no token".into()))?.to_owned();
    let fingerprint = g.fingerprint.as_deref().map(crate::client::normalise_fingerprint).transpose()?;
    let path = store_saved(&Saved { server, token, fingerprint, insecure: g.insecure })?;
    Ok(json!({ "user": resp["user"], "expires_at": resp["expires_at"], "saved_to": path.display().to_string() }))
}
