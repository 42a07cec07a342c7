//! Notifications by e-mail through a real SMTP server (aiosmtpd): approvers of a new request
//! and the requester of an approved one get their mail, in their time zone, without a secret;
//! with the SMTP server down for a while, everything is delivered once it is back, once.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis_testkit::process::{stop, wait_until};
use serde_json::{json, Value};

use crate::harness::{Db, Server};

pub(crate) struct Smtp {
    child: Option<Child>,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
}

impl Smtp {
    pub(crate) fn start() -> Smtp {
        let mut s = Smtp { child: None, port: portcullis_testkit::free_port(), dir: tempfile::tempdir().unwrap() };
        s.up();
        s
    }

    fn up(&mut self) {
        let python = crate::web::playwright_python();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mail/receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the SMTP receiver");
        let port = self.port;
        let ok = wait_until(Duration::from_secs(20), || {
            matches!(child.try_wait(), Ok(None)) && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ok, "the SMTP receiver (aiosmtpd, installed by scripts/test) did not start");
        self.child = Some(child);
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, libc::SIGTERM, Duration::from_secs(10));
        }
    }

    /// Where the received mails are kept (one `.eml` file each).
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Every mail received: (envelope recipients, the raw mail, decoded where quoted-printable).
    pub(crate) fn mails(&self) -> Vec<(String, String)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let raw = std::fs::read_to_string(p).unwrap_or_default();
                let to = raw.lines().next().unwrap_or_default().trim_start_matches("X-Envelope-To: ").to_owned();
                (to, raw.replace("=\r\n", "").replace("=\n", "").replace("=E2=80=93", "–"))
            })
            .collect()
    }

    pub(crate) fn to(&self, address: &str, subject_part: &str) -> Vec<String> {
        self.mails().into_iter().filter(|(to, m)| to == address && m.contains(subject_part)).map(|(_, m)| m).collect()
    }
}

/// A server whose notifications go by e-mail to a fresh SMTP receiver (retried every second).
pub(crate) fn server_with_mail(db: Db) -> (Smtp, Server) {
    let smtp = Smtp::start();
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let server = Server::start_with(
        db,
        false,
        &[
            ("PORTCULLIS_MAIL_SMTP", &url),
            ("PORTCULLIS_MAIL_FROM", "Portcullis <pam@example.test>"),
            ("PORTCULLIS_NOTIFICATIONS_RETRY_SECONDS", "1"),
        ],
    );
    (smtp, server)
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.down();
    }
}

pub(crate) async fn post(server: &Server, token: &str, path: &str, body: Value) -> Value {
    let (s, v) = server.call("POST", path, Some(token), Some(body)).await;
    assert!(s == 200 || s == 201, "{path}: {s} {v}");
    v
}

async fn mail(db: Db) {
    let (mut smtp, server) = server_with_mail(db);
    let admin = server.bootstrap().await;
    let alice = post(
        &server,
        &admin,
        "/api/v1/users",
        json!({ "username": "alice", "password": "alice password 1234",
        "email": "alice@example.test", "time_zone": "Europe/Paris" }),
    )
    .await;
    let bob = post(
        &server,
        &admin,
        "/api/v1/users",
        json!({ "username": "bob", "password": "bob password 1234",
        "email": "bob@example.test", "time_zone": "Asia/Tokyo" }),
    )
    .await;
    let asset =
        post(&server, &admin, "/api/v1/assets", json!({ "name": "web", "address": "10.0.0.5", "platform": "linux" }))
            .await;
    let mut accounts = Vec::new();
    for name in ["root", "oracle"] {
        let a = post(&server, &admin, "/api/v1/accounts", json!({ "asset_id": asset["id"], "name": name })).await;
        let path = format!("/api/v1/accounts/{}/password", a["id"].as_str().unwrap());
        let (s, _) = server.call("PUT", &path, Some(&admin), Some(json!({ "password": "Vaulted-Secret-9911" }))).await;
        assert_eq!(s, 201);
        accounts.push(a["id"].as_str().unwrap().to_owned());
    }
    let ent = post(
        &server,
        &admin,
        "/api/v1/entitlements",
        json!({ "name": "ops", "priority": 1, "user_ids": [alice["id"]] }),
    )
    .await;
    post(&server, &admin, "/api/v1/policies", json!({ "entitlement_id": ent["id"], "name": "web", "priority": 1,
        "access_type": "password", "scope": { "accounts": accounts },
        "settings": { "approval_levels": [{ "required": 1, "user_ids": [bob["id"]] }], "change_password_after_checkin": false } })).await;
    let alice_tok = server.login("alice", "alice password 1234").await;
    let bob_tok = server.login("bob", "bob password 1234").await;

    // A new request: its approver gets a mail with the details, in Tokyo time.
    let r = post(
        &server,
        &alice_tok,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": accounts[0], "access_type": "password" }],
        "ticket": "CHG-4711", "comment": "patch night" }),
    )
    .await;
    let id = r["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    assert!(
        wait_until(Duration::from_secs(20), || !smtp
            .to("bob@example.test", "Approval needed: root@web for alice")
            .is_empty()),
        "{:?}",
        smtp.mails()
    );
    let m = &smtp.to("bob@example.test", "Approval needed")[0];
    assert!(m.contains("CHG-4711") && m.contains("patch night") && m.contains("JST"), "{m}");
    // Their personal link to decide (no reply address: replies are off here).
    assert!(m.contains("/approve/") && m.contains("text/html") && !m.contains("Reply-To:"), "{m}");

    // Approved: the requester hears of it, in Paris time.
    post(&server, &bob_tok, &format!("/api/v1/requests/{id}/approve"), json!({})).await;
    assert!(wait_until(Duration::from_secs(20), || !smtp.to("alice@example.test", "Approved: root@web").is_empty()));
    let m = &smtp.to("alice@example.test", "Approved: root@web")[0];
    assert!(m.contains("CET") || m.contains("CEST"), "{m}");

    // The SMTP server is down while a request is made: retried with back-off, delivered once
    // it is back, exactly once.
    smtp.down();
    post(
        &server,
        &alice_tok,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": accounts[1], "access_type": "password" }],
        "ticket": "CHG-4712" }),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    smtp.up();
    assert!(
        wait_until(Duration::from_secs(40), || !smtp.to("bob@example.test", "oracle@web").is_empty()),
        "not delivered after the SMTP server came back"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.to("bob@example.test", "oracle@web").len(), 1, "delivered more than once");

    // No secret in any mail, and every mail went to someone it concerns.
    for (to, m) in smtp.mails() {
        assert!(!m.contains("Vaulted-Secret-9911") && !m.contains("password 1234"), "a secret in a mail to {to}");
        assert!(to == "bob@example.test" || to == "alice@example.test", "{to}");
    }
}

#[tokio::test]
async fn notifications_reach_people_by_mail_sqlite() {
    mail(Db::Sqlite).await;
}

#[tokio::test]
async fn notifications_reach_people_by_mail_postgres() {
    mail(Db::postgres()).await;
}

/// bob (bob@example.test) approves the administrator's requests for root@web; returns the
/// account.
pub(crate) async fn admin_asks_bob_approves(server: &Server, admin: &str) -> Value {
    let bob = post(
        server,
        admin,
        "/api/v1/users",
        json!({ "username": "bob", "password": "bob password 1234", "email": "bob@example.test" }),
    )
    .await;
    let asset =
        post(server, admin, "/api/v1/assets", json!({ "name": "web", "address": "10.0.0.5", "platform": "linux" }))
            .await;
    let account = post(server, admin, "/api/v1/accounts", json!({ "asset_id": asset["id"], "name": "root" })).await;
    let (_, me) = server.call("GET", "/api/v1/me", Some(admin), None).await;
    let ent =
        post(server, admin, "/api/v1/entitlements", json!({ "name": "ops", "priority": 1, "user_ids": [me["id"]] }))
            .await;
    let policy = post(
        server,
        admin,
        "/api/v1/policies",
        json!({ "entitlement_id": ent["id"], "name": "web", "priority": 1,
        "access_type": "password", "scope": { "accounts": [account["id"]] },
        "settings": { "approval_levels": [{ "required": 1, "user_ids": [bob["id"]] }] } }),
    )
    .await;
    // The administrator entitled themself: a second one confirms (issue 13, finding 12).
    let rules = [("entitlement", ent["id"].as_str().unwrap()), ("policy", policy["id"].as_str().unwrap())];
    server.confirm_rules(admin, &rules).await;
    account
}

/// With no SMTP server at all, delivery gives up after its attempts: audited, and listed for
/// administrators by the API and the CLI with the reason.
#[tokio::test]
async fn undeliverable_notifications_are_given_up_and_shown() {
    let closed = format!("smtp://127.0.0.1:{}", portcullis_testkit::free_port());
    let server = Server::start_with(
        Db::Sqlite,
        false,
        &[
            ("PORTCULLIS_MAIL_SMTP", &closed),
            ("PORTCULLIS_NOTIFICATIONS_RETRY_SECONDS", "1"),
            ("PORTCULLIS_NOTIFICATIONS_ATTEMPTS", "2"),
        ],
    );
    let admin = server.bootstrap().await;
    let account = admin_asks_bob_approves(&server, &admin).await;
    post(
        &server,
        &admin,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": account["id"], "access_type": "password" }] }),
    )
    .await;
    let mut failed = Value::Null;
    let given_up = {
        let mut ok = false;
        for _ in 0..100 {
            let (_, v) = server.call("GET", "/api/v1/notifications/failed", Some(&admin), None).await;
            if v.as_array().is_some_and(|a| !a.is_empty()) {
                failed = v;
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ok
    };
    assert!(given_up, "the notification was not given up");
    let n = &failed[0];
    assert_eq!((n["event"].as_str(), n["attempts"].as_i64()), (Some("pending_approval"), Some(2)), "{n}");
    assert_eq!(n["recipients"], json!(["bob"]), "{n}");
    assert!(n["last_error"].as_str().unwrap().contains("SMTP"), "{n}");
    let (_, e) = server.call("GET", "/api/v1/audit/events?action=notification.failed", Some(&admin), None).await;
    assert_eq!(e["events"][0]["outcome"], "failure", "{e}");
    // The CLI shows it, with the recipient by name.
    let pw = [("PORTCULLIS_PASSWORD", crate::harness::ADMIN_PASSWORD)];
    let out = server.cli(&["login", "--server", &server.url, "--username", "admin"], &pw);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = server.cli(&["notification", "failed"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("pending_approval") && text.contains("bob"), "{text}");
}

/// A webhook receiver: checks each POST's signature, answers 500 to the first `fail` ones,
/// then 200; keeps what it accepted.
#[derive(Clone, Default)]
struct Hook {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(bool, Value)>>>,
    fail: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const HOOK_SECRET: &str = "a webhook secret of some length";

async fn hook_receiver(hook: Hook) -> u16 {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            |axum::extract::State(h): axum::extract::State<Hook>, headers: HeaderMap, body: String| async move {
                let ts = headers["x-portcullis-timestamp"].to_str().unwrap().parse::<i64>().unwrap();
                let sig = headers["x-portcullis-signature"].to_str().unwrap().to_owned();
                let valid = sig == portcullis_notify_sign(HOOK_SECRET.as_bytes(), ts, body.as_bytes());
                let doc: Value = serde_json::from_str(&body).unwrap();
                h.seen.lock().unwrap().push((valid, doc));
                let left = h.fail.load(std::sync::atomic::Ordering::SeqCst);
                if left > 0 {
                    h.fail.store(left - 1, std::sync::atomic::Ordering::SeqCst);
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                StatusCode::OK
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app.with_state(hook)).await.unwrap() });
    port
}

/// HMAC-SHA256 as the receiver computes it, written here independently of the server's code.
fn portcullis_notify_sign(secret: &[u8], ts: i64, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut key = [0u8; 64];
    key[..secret.len()].copy_from_slice(secret);
    let inner: Vec<u8> = key.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
    let mut h = Sha256::new();
    h.update(&inner);
    h.update(format!("{ts}.").as_bytes());
    h.update(body);
    let first = h.finalize();
    let mut h = Sha256::new();
    h.update(&outer);
    h.update(first);
    format!("sha256={}", hex::encode(h.finalize()))
}

/// Mail and a webhook together: the webhook fails twice, then accepts; the mail was sent once
/// all the same (a retry sends only on the channel that has not delivered).
// Several threads: the receiver runs in this test's runtime while `wait_until` blocks one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_is_retried_without_sending_the_mail_again() {
    let smtp = Smtp::start();
    let hook = Hook::default();
    hook.fail.store(2, std::sync::atomic::Ordering::SeqCst);
    let port = hook_receiver(hook.clone()).await;
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let hook_url = format!("http://127.0.0.1:{port}/hook");
    let server = Server::start_with(
        Db::Sqlite,
        false,
        &[
            ("PORTCULLIS_MAIL_SMTP", &url),
            ("PORTCULLIS_WEBHOOK_URL", &hook_url),
            ("PORTCULLIS_WEBHOOK_SECRET", HOOK_SECRET),
            ("PORTCULLIS_NOTIFICATIONS_RETRY_SECONDS", "1"),
        ],
    );
    let admin = server.bootstrap().await;
    let account = admin_asks_bob_approves(&server, &admin).await;
    post(
        &server,
        &admin,
        "/api/v1/requests",
        json!({ "accounts": [{ "account_id": account["id"], "access_type": "password" }], "ticket": "CHG-9" }),
    )
    .await;
    let accepted = || hook.seen.lock().unwrap().len() >= 3;
    assert!(wait_until(Duration::from_secs(30), accepted), "the webhook was not retried until accepted");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = hook.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "sent again after it was accepted: {seen:?}");
    for (valid, doc) in &seen {
        assert!(*valid, "a bad signature: {doc}");
        assert_eq!(doc["event"], "pending_approval", "{doc}");
        assert_eq!(
            (doc["request"]["account"].as_str(), doc["request"]["ticket"].as_str()),
            (Some("root"), Some("CHG-9")),
            "{doc}"
        );
        assert_eq!(doc["recipients"], json!(["bob"]), "{doc}");
    }
    assert_eq!(
        smtp.to("bob@example.test", "Approval needed").len(),
        1,
        "the mail was sent again with the webhook's retries"
    );
}
