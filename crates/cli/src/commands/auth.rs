use clap::Args;
use serde_json::json;

use super::{read_secret, signed_in};
use crate::client::{forget_saved, load_saved, normalise_fingerprint, store_saved, Client, Saved};
use crate::output::{done, print};
use crate::{CliError, GlobalArgs};

pub(crate) const USER_COLUMNS: &[&str] =
    &["id", "username", "display_name", "roles", "time_zone", "disabled", "totp_enabled"];

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The first administrator's username.
    #[arg(long)]
    username: String,
    #[arg(long)]
    display_name: Option<String>,
    /// IANA time zone (default UTC).
    #[arg(long)]
    time_zone: Option<String>,
    /// Read the new password from the first line of standard input (the bootstrap secret
    /// comes from PORTCULLIS_BOOTSTRAP_SECRET or a prompt).
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(long, required_unless_present = "sso")]
    username: Option<String>,
    /// Sign in with the server's single sign-on provider, in a browser (the command prints the
    /// address to open and waits for the browser to come back).
    #[arg(long, conflicts_with_all = ["username", "password_stdin"])]
    sso: bool,
    /// With --sso: only print the address, do not try to open a browser.
    #[arg(long, requires = "sso")]
    no_browser: bool,
    /// The current one-time code, if you enrolled TOTP.
    #[arg(long)]
    totp_code: Option<String>,
    /// Read the password from the first line of standard input (or set PORTCULLIS_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct SetPasswordArgs {
    /// The link from the mail (https://…/set-password/TOKEN), or its last part.
    link: String,
}

fn anonymous(g: &GlobalArgs) -> Result<(Client, String), CliError> {
    let server = g
        .server
        .clone()
        .or_else(|| load_saved().ok().flatten().map(|s| s.server))
        .ok_or_else(|| CliError::Usage("pass --server URL (as printed by `portcullis serve`)".into()))?;
    Ok((Client::new(&server, None, g.fingerprint.as_deref(), g.insecure)?, server))
}

async fn sign_in(
    g: &GlobalArgs,
    client: &Client,
    server: String,
    username: &str,
    password: &str,
    totp: Option<&str>,
) -> Result<serde_json::Value, CliError> {
    let mut body = json!({ "username": username, "password": password });
    if let Some(code) = totp {
        body["totp_code"] = json!(code);
    }
    let resp = client.post("/api/v1/auth/login", &body).await?;
    let token = resp["token"].as_str().ok_or_else(|| CliError::Usage("the server sent no token".into()))?.to_owned();
    let fingerprint = g.fingerprint.as_deref().map(normalise_fingerprint).transpose()?;
    let path = store_saved(&Saved { server, token, fingerprint, insecure: g.insecure })?;
    Ok(json!({ "user": resp["user"], "expires_at": resp["expires_at"], "saved_to": path.display().to_string() }))
}

pub async fn bootstrap(a: BootstrapArgs, g: &GlobalArgs) -> Result<(), CliError> {
    let (client, server) = anonymous(g)?;
    let secret = read_secret("Bootstrap secret: ", "PORTCULLIS_BOOTSTRAP_SECRET", false)?;
    let password = read_secret("New administrator password: ", "PORTCULLIS_PASSWORD", a.password_stdin)?;
    let mut body = json!({ "secret": &*secret, "username": a.username, "password": &*password });
    if let Some(d) = a.display_name {
        body["display_name"] = json!(d);
    }
    if let Some(tz) = a.time_zone {
        body["time_zone"] = json!(tz);
    }
    client.post("/api/v1/bootstrap", &body).await?;
    let signed = sign_in(g, &client, server, &a.username, &password, None).await?;
    report_sign_in(g, &signed, "Created the first administrator");
    Ok(())
}

fn report_sign_in(g: &GlobalArgs, signed: &serde_json::Value, what: &str) {
    if g.output == crate::Output::Json {
        print(g.output, signed, &[]);
    } else {
        println!(
            "{what} {}; session saved to {}",
            signed["user"]["username"].as_str().unwrap_or("?"),
            signed["saved_to"].as_str().unwrap_or("?")
        );
    }
}

pub async fn set_password(a: SetPasswordArgs, g: &GlobalArgs) -> Result<(), CliError> {
    // The link names the server: use it when no --server was given.
    let from_link = a.link.trim().split_once("/set-password/").map(|(origin, _)| origin.to_owned());
    let client = match (&g.server, from_link.filter(|o| o.starts_with("http"))) {
        (None, Some(origin)) => Client::new(&origin, None, g.fingerprint.as_deref(), g.insecure)?,
        _ => anonymous(g)?.0,
    };
    let token = a.link.trim().trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
    let new = read_secret("New password: ", "PORTCULLIS_NEW_PASSWORD", false)?;
    if std::env::var("PORTCULLIS_NEW_PASSWORD").is_err() {
        let again = read_secret("New password again: ", "PORTCULLIS_NEW_PASSWORD", false)?;
        if *again != *new {
            return Err(CliError::Usage("the two new passwords differ".into()));
        }
    }
    let user = client.post("/api/v1/auth/set-password", &json!({ "token": token, "new_password": &*new })).await?;
    let name = user["username"].as_str().unwrap_or("?");
    done(g.output, &format!("The password of {name} is set; sign in with `portcullis login --username {name}`."));
    Ok(())
}

pub async fn login(a: LoginArgs, g: &GlobalArgs) -> Result<(), CliError> {
    let (client, server) = anonymous(g)?;
    let Some(username) = a.username.filter(|_| !a.sso) else {
        let signed = super::sso::login(g, &client, server, !a.no_browser, a.totp_code.as_deref()).await?;
        report_sign_in(g, &signed, "Signed in as");
        return Ok(());
    };
    let password = read_secret("Password: ", "PORTCULLIS_PASSWORD", a.password_stdin)?;
    let signed = sign_in(g, &client, server, &username, &password, a.totp_code.as_deref()).await?;
    report_sign_in(g, &signed, "Signed in as");
    Ok(())
}

pub async fn logout(g: &GlobalArgs) -> Result<(), CliError> {
    if let Ok(client) = signed_in(g) {
        // The local session is forgotten even if the server cannot be reached.
        let _ = client.post("/api/v1/auth/logout", &json!({})).await;
    }
    forget_saved()?;
    done(g.output, "Signed out.");
    Ok(())
}

pub async fn whoami(g: &GlobalArgs) -> Result<(), CliError> {
    let me = signed_in(g)?.get("/api/v1/me").await?;
    print(g.output, &me, USER_COLUMNS);
    Ok(())
}

pub async fn passwd(g: &GlobalArgs) -> Result<(), CliError> {
    let client = signed_in(g)?;
    let current = read_secret("Current password: ", "PORTCULLIS_PASSWORD", false)?;
    let new = read_secret("New password: ", "PORTCULLIS_NEW_PASSWORD", false)?;
    if std::env::var("PORTCULLIS_NEW_PASSWORD").is_err() {
        let again = read_secret("New password again: ", "PORTCULLIS_NEW_PASSWORD", false)?;
        if *again != *new {
            return Err(CliError::Usage("the two new passwords differ".into()));
        }
    }
    client.post("/api/v1/me/password", &json!({ "current_password": &*current, "new_password": &*new })).await?;
    done(g.output, "Password changed; your other sessions ended.");
    Ok(())
}
