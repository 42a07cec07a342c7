//! `portcullis reset-link USER`: on the server, for a server without e-mail, a one-time
//! set-password link printed for the operator to hand over. Someone who can run this can read
//! the database and the keys anyway; no API role can.

use anyhow::{anyhow, Result};
use portcullis_app::approval_mail::{new_token, token_hash};
use portcullis_app::password_reset::LINK_HOURS;
use portcullis_store::Actor;

use crate::config::Config;
use crate::keys::load_or_create_key;

pub async fn run(config: Config, username: &str) -> Result<()> {
    let keys = config.data_dir().join("keys");
    let audit_key = load_or_create_key(&keys.join("audit.key"), 32)?;
    let store = crate::rotate::open_store(&config, &audit_key).await?;
    let user = store
        .login_state(username)
        .await?
        .ok_or_else(|| {
            anyhow!("there is no user named '{username}' (user names are listed by `portcullis user list`)")
        })?
        .user;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
    let actor = Actor { id: String::new(), name: "the server's operator".into(), source: "local".into() };
    let unusable = portcullis_app::auth::hash_password(&portcullis_app::auth::new_token("unusable_"));
    let details = serde_json::json!({ "username": user.username, "by": "the server's operator (reset-link)",
        "sent_to": "printed on the server", "invitation": false, "link_hours": LINK_HOURS });
    store.begin_password_reset(&actor, now, &user.id, &unusable, details, false).await?;
    let token = new_token();
    store.issue_password_reset(&token_hash(&token), &user.id, now, now + LINK_HOURS * 3_600_000_000).await?;
    // The web UI's address as configured for notifications, else as this server listens.
    let web = if config.notifications.web_url == crate::config::NotificationSettings::default().web_url {
        format!("{}://{}", if config.server.tls { "https" } else { "http" }, config.server.listen)
    } else {
        config.notifications.web_url.trim_end_matches('/').to_owned()
    };
    println!(
        "{}'s password no longer works and their sessions ended. Give them this link; it works once, for {LINK_HOURS} \
         hours:\n{web}/set-password/{token}",
        user.username
    );
    Ok(())
}
