//! Finding 3 of the attack run: a User Administrator could reset the passwords of a requester
//! and an approver and act as both. Now a reset gives the administrator nothing to sign in
//! with: the user's password stops working, their sessions and tokens end, and a one-time
//! link goes to their mailbox (a real SMTP server here); an administrator who set that
//! address themself may not send it. Without e-mail, only the server's operator can make a
//! link (`portcullis reset-link`).

use std::time::Duration;

use portcullis_testkit::process::wait_until;
use serde_json::{json, Value};

use crate::harness::{Db, Server};
use crate::mail::Smtp;

/// The token of the `nth` set-password link mailed to `address` (from 0, in the order they
/// arrived), waiting for it.
fn mailed_token(smtp: &Smtp, address: &str, nth: usize) -> String {
    let mut token = None;
    let found = wait_until(Duration::from_secs(30), || {
        token = smtp
            .to(address, "Portcullis: ")
            .iter()
            .filter_map(|m| {
                let at = m.find("/set-password/")? + "/set-password/".len();
                Some(m[at..].chars().take_while(char::is_ascii_alphanumeric).collect::<String>())
            })
            .nth(nth);
        token.is_some()
    });
    assert!(found, "no set-password link #{nth} reached {address}: {:?}", smtp.mails());
    token.unwrap()
}

async fn status(server: &Server, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    server.call(method, path, token, body).await
}

async fn run(db: Db) {
    let (smtp, server) = crate::mail::server_with_mail(db);
    let admin = server.bootstrap().await;
    let (_, ursula) = server.user_with_roles(&admin, "ursula", &["user_admin"]).await;
    let (_, uwe) = server.user_with_roles(&admin, "uwe", &["user_admin"]).await;
    let (s, bob) = status(
        &server,
        "POST",
        "/api/v1/users",
        Some(&admin),
        Some(json!({ "username": "bob", "password": "bob password 1234", "email": "bob@example.test" })),
    )
    .await;
    assert_eq!(s, 201, "{bob}");
    let bob_id = bob["id"].as_str().unwrap().to_owned();
    let reset = format!("/api/v1/users/{bob_id}/password");
    let bob_session = server.login("bob", "bob password 1234").await;
    let (_, t) = status(&server, "POST", "/api/v1/me/tokens", Some(&bob_session), Some(json!({ "name": "s" }))).await;
    let bob_token = t["secret"].as_str().unwrap().to_owned();

    // The old attack: choosing bob's password. Refused, and nothing changes.
    let (s, v) =
        status(&server, "POST", &reset, Some(&ursula), Some(json!({ "new_password": "taken over 12345" }))).await;
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("administrators do not choose"), "{v}");
    assert!(!v.to_string().contains("taken over"), "{v}");
    assert_eq!(status(&server, "GET", "/api/v1/me", Some(&bob_session), None).await.0, 200);

    // The administrator who created bob chose his address: their link may not go there.
    let (s, v) = status(&server, "POST", &reset, Some(&admin), None).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("own_change")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("confirms the address under My account"), "{v}");

    // A reset: the administrator learns where the link went, and nothing to sign in with.
    let (s, v) = status(&server, "POST", &reset, Some(&ursula), None).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["sent_to"], "b…@example.test", "{v}");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["link_hours", "message", "sent_to"], "the answer holds nothing else: {v}");
    assert!(v["message"].as_str().unwrap().contains("bob's password no longer works"), "{v}");
    // bob's password, session and token stopped working.
    let (s, _) = status(
        &server,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "username": "bob", "password": "bob password 1234" })),
    )
    .await;
    assert_eq!(s, 401, "the old password outlived the reset");
    assert_eq!(status(&server, "GET", "/api/v1/me", Some(&bob_session), None).await.0, 401);
    assert_eq!(status(&server, "GET", "/api/v1/me", Some(&bob_token), None).await.0, 401);
    // The link went to bob's mailbox, and to nobody else's.
    let token = mailed_token(&smtp, "bob@example.test", 0);
    assert_eq!(token.len(), 32, "{token}");
    let elsewhere: Vec<_> =
        smtp.mails().into_iter().filter(|(to, m)| to != "bob@example.test" && m.contains(&token)).collect();
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    let mail = smtp.to("bob@example.test", "your password was reset").pop().expect("the reset mail");
    assert!(mail.contains("ursula, a User Administrator"), "{mail}");
    // The reset is audited as an alert, and the token is nowhere in the audit or the log.
    let (_, events) =
        status(&server, "GET", "/api/v1/audit/events?action=user.password_reset", Some(&admin), None).await;
    let e = &events["events"].as_array().unwrap()[0];
    assert_eq!((e["actor_name"].as_str(), e["details"]["alert"].as_bool()), (Some("ursula"), Some(true)), "{e}");
    assert!(!events.to_string().contains(&token) && !server.all_output().contains(&token), "the link leaked");

    // Redirecting the channel: ursula points bob's address at herself and resets again.
    let user = format!("/api/v1/users/{bob_id}");
    let (s, _) = status(&server, "PATCH", &user, Some(&ursula), Some(json!({ "email": "ursula@evil.test" }))).await;
    assert_eq!(s, 200);
    let (s, v) = status(&server, "POST", &reset, Some(&ursula), None).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("own_change")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("another User Administrator"), "{v}");
    // The refusal changed nothing: the link bob got still works; nothing reached ursula.
    assert!(smtp.to("ursula@evil.test", "").is_empty());
    let (s, _) = status(&server, "PATCH", &user, Some(&uwe), Some(json!({ "email": "bob@example.test" }))).await;
    assert_eq!(s, 200);

    // bob uses his link: once.
    let (s, v) = status(&server, "GET", "/api/v1/me", None, None).await;
    assert_eq!(s, 401, "{v}");
    let set = json!({ "token": token, "new_password": "bob's own password 5678" });
    let (s, v) = status(&server, "POST", "/api/v1/auth/set-password", None, Some(set.clone())).await;
    assert_eq!((s, v["username"].as_str()), (200, Some("bob")), "{v}");
    let (s, v) = status(&server, "POST", "/api/v1/auth/set-password", None, Some(set)).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("link_invalid")), "a link works once: {v}");
    let bob_session = server.login("bob", "bob's own password 5678").await;
    // bob confirms the address (uwe set it back) as his own: any administrator may now send.
    let (s, v) =
        status(&server, "PATCH", "/api/v1/me", Some(&bob_session), Some(json!({ "email": "bob@example.test" }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = status(&server, "POST", &reset, Some(&uwe), None).await;
    assert_eq!(s, 202, "once bob confirmed his address: {v}");
    let token = mailed_token(&smtp, "bob@example.test", 1);
    let set = json!({ "token": token, "new_password": "bob's own password 9999" });
    assert_eq!(status(&server, "POST", "/api/v1/auth/set-password", None, Some(set)).await.0, 200);
    // A guessed link is refused the same way.
    let guess = json!({ "token": "a".repeat(32), "new_password": "guessed password 1234" });
    let (s, v) = status(&server, "POST", "/api/v1/auth/set-password", None, Some(guess)).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("link_invalid")), "{v}");

    // An invitation: a new user gets a link to choose their own first password.
    let (s, v) = status(
        &server,
        "POST",
        "/api/v1/users",
        Some(&uwe),
        Some(json!({ "username": "carla", "email": "carla@example.test" })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let token = mailed_token(&smtp, "carla@example.test", 0);
    assert!(smtp.to("carla@example.test", "set your password").pop().unwrap().contains("user name: carla"));
    let set = json!({ "token": token, "new_password": "carla's own 12345" });
    assert_eq!(status(&server, "POST", "/api/v1/auth/set-password", None, Some(set)).await.0, 200);
    server.login("carla", "carla's own 12345").await;
}

/// Without e-mail, a reset is refused with what to do, and the server's operator makes the
/// link on the server.
async fn without_mail(db: Db) {
    let server = Server::start(db);
    let admin = server.bootstrap().await;
    let (bob_id, bob) = server.user_with_roles(&admin, "bob", &[]).await;
    let (s, v) = status(&server, "POST", &format!("/api/v1/users/{bob_id}/password"), Some(&admin), None).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("mail_not_configured")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("portcullis reset-link bob"), "{v}");
    assert_eq!(status(&server, "GET", "/api/v1/me", Some(&bob), None).await.0, 200, "a refusal changes nothing");
    let (s, v) = status(&server, "POST", "/api/v1/users", Some(&admin), Some(json!({ "username": "dora" }))).await;
    assert_eq!((s, v["field"].as_str()), (422, Some("email")), "{v}");

    let out = server.local(&["reset-link", "bob"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let link = text.lines().find(|l| l.contains("/set-password/")).expect("a link");
    assert!(link.starts_with(&server.url), "{link}");
    assert_eq!(status(&server, "GET", "/api/v1/me", Some(&bob), None).await.0, 401, "bob's session ended");
    // bob uses it with the CLI, which takes the server from the link.
    let out = server.cli(&["set-password", link.trim()], &[("PORTCULLIS_NEW_PASSWORD", "bob's new one 12345")]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said} {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("The password of bob is set"), "{said}");
    server.login("bob", "bob's new one 12345").await;
    let out = server.local(&["reset-link", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named 'nobody'"));
}

#[tokio::test]
async fn an_administrators_reset_gives_them_nothing_to_sign_in_with_sqlite() {
    run(Db::Sqlite).await;
    without_mail(Db::Sqlite).await;
}

#[tokio::test]
async fn an_administrators_reset_gives_them_nothing_to_sign_in_with_postgres() {
    run(Db::postgres()).await;
    without_mail(Db::postgres()).await;
}
