//! Approving by e-mail reply, through real mail: approval mails go out to a real SMTP server
//! (aiosmtpd), and replies come back from Python's smtplib to Portcullis's own listener. A
//! genuine reply decides; a forged sender, a reply only quoting the word, a 20 MB mail and a
//! replayed token are refused, audited, and explained to the approver by mail. The mail's
//! personal link opens the request for that approver only, and decides nothing by itself.

use std::time::Duration;

use portcullis_testkit::process::wait_until;
use serde_json::{json, Value};

use crate::harness::{Db, Server};
use crate::mail::{admin_asks_bob_approves, post, Smtp};

/// Sends a reply with smtplib; returns the server's final answer (code, message).
fn reply(port: u16, envelope_from: &str, header_from: &str, to: &str, body: &str, extra: &[&str]) -> (i64, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.txt");
    std::fs::write(&file, body).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mail/reply.py");
    let out = std::process::Command::new(crate::web::playwright_python())
        .arg(script)
        .args([&port.to_string(), envelope_from, header_from, to, file.to_str().unwrap()])
        .args(extra)
        .output()
        .expect("run reply.py");
    assert!(out.status.success(), "reply.py: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["code"].as_i64().unwrap(), v["message"].as_str().unwrap().to_owned())
}

/// The value of a header in a raw mail.
fn header(mail: &str, name: &str) -> Option<String> {
    mail.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_owned()))
}

async fn state(server: &Server, token: &str, id: &str) -> String {
    let (_, v) = server.call("GET", &format!("/api/v1/requests/{id}"), Some(token), None).await;
    v["request"]["state"].as_str().or_else(|| v["state"].as_str()).unwrap_or_else(|| panic!("{v}")).to_owned()
}

/// The refusal codes audited for mail replies, in order.
async fn refusals(server: &Server, admin: &str) -> Vec<String> {
    let (_, e) =
        server.call("GET", "/api/v1/audit/events?action=request.mail_reply&limit=100", Some(admin), None).await;
    e["events"].as_array().unwrap().iter().map(|e| e["details"]["code"].as_str().unwrap_or("").to_owned()).collect()
}

async fn wait_refusals(server: &Server, admin: &str, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let r = refusals(server, admin).await;
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    refusals(server, admin).await
}

/// Signs in to the web UI; returns the session cookie (name=value).
pub async fn web_login(server: &Server, username: &str, password: &str, next: &str) -> (String, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = client
        .post(format!("{}/login", server.url))
        .form(&[("username", username), ("password", password), ("next", next)])
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let location = resp.headers()[reqwest::header::LOCATION].to_str().unwrap().to_owned();
    (cookie, location)
}

pub async fn web_get(server: &Server, cookie: Option<&str>, path: &str) -> (u16, String, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut req = client.get(format!("{}{path}", server.url));
    if let Some(c) = cookie {
        req = req.header(reqwest::header::COOKIE, c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let location =
        resp.headers().get(reqwest::header::LOCATION).map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, location, resp.text().await.unwrap())
}

async fn replies(db: Db) {
    let smtp = Smtp::start();
    let listen_port = portcullis_testkit::free_port();
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let listen = format!("127.0.0.1:{listen_port}");
    let server = Server::start_with(
        db,
        false,
        &[
            ("PORTCULLIS_MAIL_SMTP", &url),
            ("PORTCULLIS_MAIL_FROM", "Portcullis <pam@example.test>"),
            ("PORTCULLIS_MAIL_REPLY_LISTEN", &listen),
            ("PORTCULLIS_MAIL_REPLY_MAX_BYTES", "1048576"),
            ("PORTCULLIS_NOTIFICATIONS_RETRY_SECONDS", "1"),
            ("PORTCULLIS_NOTIFICATIONS_WEB_URL", "https://pam.example.test"),
        ],
    );
    let admin = server.bootstrap().await;
    let account = admin_asks_bob_approves(&server, &admin).await;
    post(
        &server,
        &admin,
        "/api/v1/users",
        json!({ "username": "mallory", "password": "mallory password 1234", "email": "mallory@example.test" }),
    )
    .await;
    let ask = || async {
        let r = post(
            &server,
            &admin,
            "/api/v1/requests",
            json!({ "accounts": [{ "account_id": account["id"], "access_type": "password" }], "ticket": "CHG-77" }),
        )
        .await;
        r["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned()
    };
    let id = ask().await;
    assert!(
        wait_until(Duration::from_secs(20), || !smtp.to("bob@example.test", "Approval needed").is_empty()),
        "{:?}",
        smtp.mails()
    );
    let mail = smtp.to("bob@example.test", "Approval needed").remove(0);
    let reply_to = header(&mail, "Reply-To").expect("a Reply-To header");
    assert!(reply_to.starts_with("pam+") && reply_to.ends_with("@example.test"), "{reply_to}");
    assert!(mail.contains("APPROVE or DISAPPROVE") && mail.contains("CHG-77"), "{mail}");
    let link = mail
        .split("https://pam.example.test/approve/")
        .nth(1)
        .map(|s| s.chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>())
        .expect("a personal link");
    let quoted = format!("\n\nOn Mon, Portcullis <pam@example.test> wrote:\n> {}\n> APPROVE\n", "Approval needed");

    // A forged sender (envelope and header), then a forged header behind bob's envelope.
    let (code, _) = reply(listen_port, "mallory@example.test", "mallory@example.test", &reply_to, "APPROVE", &[]);
    assert_eq!(code, 250);
    let (code, _) = reply(listen_port, "bob@example.test", "Mallory <mallory@example.test>", &reply_to, "APPROVE", &[]);
    assert_eq!(code, 250);
    // A reply that only quotes the word.
    let (code, _) = reply(
        listen_port,
        "bob@example.test",
        "Bob <bob@example.test>",
        &reply_to,
        &format!("Looking at it.{quoted}"),
        &[],
    );
    assert_eq!(code, 250);
    // 20 MB: refused before the data when the size is announced, and after it when not.
    let pad = (20 * 1024 * 1024).to_string();
    let (code, msg) = reply(
        listen_port,
        "bob@example.test",
        "bob@example.test",
        &reply_to,
        "APPROVE",
        &["--pad", &pad, "--announce-size"],
    );
    assert_eq!(code, 552, "{msg}");
    let (code, msg) =
        reply(listen_port, "bob@example.test", "bob@example.test", &reply_to, "APPROVE", &["--pad", &pad]);
    assert_eq!(code, 552, "{msg}");
    assert!(msg.contains("limited to 1048576 bytes"), "{msg}");
    // Mail for any other address is not taken at all.
    let (code, msg) = reply(listen_port, "bob@example.test", "bob@example.test", "root@example.test", "APPROVE", &[]);
    assert_eq!(code, 550, "{msg}");
    let codes = wait_refusals(&server, &admin, 5).await;
    assert_eq!(codes, ["forged_sender", "forged_sender", "unclear", "oversized", "oversized"]);
    assert_eq!(state(&server, &admin, &id).await, "pending_approval", "a refused reply decided");

    // The personal link: a sign-in first; for bob, the request's page; for anyone else, a
    // clear refusal; opening it decides nothing.
    let path = format!("/approve/{link}");
    let (status, location, _) = web_get(&server, None, &path).await;
    assert!(status == 303 && location.starts_with("/login?next=/approve/"), "{status} {location}");
    let (cookie, location) = web_login(&server, "bob", "bob password 1234", &path).await;
    assert_eq!(location, path);
    let (status, location, _) = web_get(&server, Some(&cookie), &path).await;
    assert_eq!((status, location.as_str()), (303, format!("/requests/{id}").as_str()));
    let (mallory, _) = web_login(&server, "mallory", "mallory password 1234", "/").await;
    let (status, _, page) = web_get(&server, Some(&mallory), &path).await;
    assert!(status == 403 && page.contains("sent to another approver"), "{status} {page}");
    let (status, _, page) = web_get(&server, Some(&cookie), "/approve/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert!(status == 404 && page.contains("not valid"), "{status} {page}");
    assert_eq!(state(&server, &admin, &id).await, "pending_approval", "opening the link decided");

    // bob's genuine reply decides, with his comment; he is told.
    let body = format!("Approve - fine for the patch night{quoted}");
    let (code, _) = reply(listen_port, "bob@example.test", "Bob <bob@example.test>", &reply_to, &body, &[]);
    assert_eq!(code, 250);
    let decided = wait_until(Duration::from_secs(10), || {
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| rt.block_on(state(&server, &admin, &id))) != "pending_approval"
    });
    assert!(decided, "the reply did not decide");
    let (_, r) = server.call("GET", &format!("/api/v1/requests/{id}"), Some(&admin), None).await;
    let text = r.to_string();
    assert!(text.contains("fine for the patch night"), "{text}");
    // The same reply again: the token is spent.
    let (code, _) = reply(listen_port, "bob@example.test", "bob@example.test", &reply_to, &body, &[]);
    assert_eq!(code, 250);
    let codes = wait_refusals(&server, &admin, 6).await;
    assert_eq!(codes.last().map(String::as_str), Some("used_token"), "{codes:?}");
    let (_, e) = server.call("GET", "/api/v1/audit/events?action=request.approve&limit=10", Some(&admin), None).await;
    let approval = &e["events"][0];
    assert!(
        approval["actor_name"] == "bob" && approval["source"].as_str().unwrap().starts_with("mail via 127.0.0.1"),
        "{e}"
    );

    // bob hears of each: forged (twice), unclear, oversized (twice), counted, replayed.
    let told = wait_until(Duration::from_secs(30), || {
        smtp.to("bob@example.test", "Not counted").len() >= 6
            && !smtp.to("bob@example.test", "Recorded: your approval").is_empty()
    });
    let to_bob: Vec<String> = smtp.to("bob@example.test", "Not counted");
    let subjects: Vec<String> = smtp.mails().iter().filter_map(|(_, m)| header(m, "Subject")).collect();
    assert!(
        told,
        "{subjects:?}\n{}",
        server
            .all_output()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("notif"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        to_bob.iter().any(|m| m.contains("did not come from the approver's address bob@example.test")),
        "{to_bob:?}"
    );
    assert!(to_bob.iter().any(|m| m.contains("does not start with APPROVE or DISAPPROVE")), "{to_bob:?}");
    assert!(to_bob.iter().any(|m| m.contains("larger than 1048576 bytes")), "{to_bob:?}");
    assert!(to_bob.iter().any(|m| m.contains("already answered")), "{to_bob:?}");
    // The forger is never written to.
    assert!(smtp.mails().iter().all(|(to, _)| to != "mallory@example.test"), "backscatter to the forger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_approve_by_mail_reply_sqlite() {
    replies(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_approve_by_mail_reply_postgres() {
    replies(Db::postgres()).await;
}
