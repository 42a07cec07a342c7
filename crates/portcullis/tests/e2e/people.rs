//! The people in the loop, each with only their own rights and only names: an administrator
//! sets up with names, a requester finds what they may request and asks for it, an approver
//! approves and revokes from their own lists, a reviewer reviews from their queue; every
//! refusal is audited. On SQLite and PostgreSQL, through the real CLI.

use serde_json::{json, Value};

use crate::harness::{Db, Server, ADMIN_PASSWORD};

/// One person's CLI, with their own saved sign-in.
pub struct Person<'a> {
    pub server: &'a Server,
    pub cfg: String,
}

pub struct Ran {
    pub ok: bool,
    pub code: Option<i32>,
    pub out: String,
    pub text: String,
}

impl Ran {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.out).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }
}

impl<'a> Person<'a> {
    pub fn login(server: &'a Server, user: &str, password: &str) -> Person<'a> {
        let cfg = server.dir.path().join(format!("{user}.json")).display().to_string();
        let o = server.cli(
            &["login", "--server", &server.url, "--username", user],
            &[("PORTCULLIS_CLI_CONFIG", &cfg), ("PORTCULLIS_PASSWORD", password)],
        );
        assert!(o.status.success(), "login {user}: {}", String::from_utf8_lossy(&o.stderr));
        Person { server, cfg }
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        let o = self.server.cli(args, &[("PORTCULLIS_CLI_CONFIG", &self.cfg)]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let text = format!("{out}{}", String::from_utf8_lossy(&o.stderr));
        Ran { ok: o.status.success(), code: o.status.code(), out, text }
    }

    /// Runs a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> Ran {
        let r = self.run(args);
        assert!(r.ok, "{args:?} failed: {}", r.text);
        r
    }
}

/// The audit events with this action and outcome, as the admin sees them.
pub async fn audited(server: &Server, admin: &str, action: &str, outcome: &str) -> Vec<Value> {
    let (s, v) =
        server.call("GET", &format!("/api/v1/audit/events?action={action}&limit=1000"), Some(admin), None).await;
    assert_eq!(s, 200, "{v}");
    v["events"].as_array().unwrap().iter().filter(|e| e["outcome"] == outcome).cloned().collect()
}

async fn walk(db: Db) {
    let server = Server::start(db);
    let admin_token = server.bootstrap().await;
    let admin = Person::login(&server, "admin", ADMIN_PASSWORD);
    let pw = |u: &str| format!("{u} password 1234");
    for (user, tz) in [("alice", "Europe/Paris"), ("bob", "UTC"), ("carol", "UTC"), ("dave", "UTC")] {
        let o = server.cli(
            &["user", "create", user, "--time-zone", tz],
            &[("PORTCULLIS_CLI_CONFIG", &admin.cfg), ("PORTCULLIS_NEW_PASSWORD", &pw(user))],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    // The administrator, by names only.
    admin.ok(&["group", "create", "dbas"]);
    admin.ok(&["group", "add-member", "dbas", "alice"]);
    let g = admin.ok(&["group", "show", "dbas", "-o", "json"]).json();
    assert_eq!(g["member_names"], json!(["alice"]), "{g}");
    let r = admin.run(&["group", "add-member", "dbas", "nobody"]);
    assert!(!r.ok && r.text.contains("no user is named 'nobody'"), "{}", r.text);
    admin.ok(&["asset", "create", "web", "--address", "10.0.0.5", "--platform", "linux"]);
    admin.ok(&["asset", "create", "mail", "--address", "10.0.0.6", "--platform", "linux"]);
    admin.ok(&["account", "create", "root", "--asset", "web"]);
    admin.ok(&["account", "create", "root", "--asset", "mail"]);
    let a = admin.ok(&["account", "show", "root@web", "-o", "json"]).json();
    assert_eq!(a["asset_name"], "web", "{a}");
    // An ambiguous name lists what it could mean.
    let r = admin.run(&["account", "show", "root"]);
    assert!(!r.ok && r.text.contains("root@mail") && r.text.contains("root@web"), "{}", r.text);
    admin.ok(&["entitlement", "create", "web-ops", "--priority", "1", "--group", "dbas"]);
    admin.ok(&["entitlement", "update", "web-ops", "--add-user", "dave", "--window", "mon-sun/00:00-23:59"]);
    let e = admin.ok(&["entitlement", "show", "web-ops", "-o", "json"]).json();
    assert_eq!((e["user_names"].clone(), e["group_names"].clone()), (json!(["dave"]), json!(["dbas"])), "{e}");
    admin.ok(&["entitlement", "update", "web-ops", "--remove-user", "dave", "--no-windows"]);
    let e = admin.ok(&["entitlement", "show", "web-ops", "-o", "json"]).json();
    assert_eq!((e["user_ids"].clone(), e["windows"].clone()), (json!([]), json!([])), "{e}");
    let file = server.dir.path().join("policy.json");
    let policy = json!({
        "entitlement_id": "web-ops", "name": "web root", "priority": 1, "access_type": "password",
        "scope": { "accounts": ["root@web"] },
        "settings": {
            "ticket_required": true, "review_required": true, "reviewer_user_ids": ["carol"],
            "approval_levels": [{ "required": 1, "user_ids": ["bob"] }], "change_password_after_checkin": false
        }
    });
    std::fs::write(&file, policy.to_string()).unwrap();
    admin.ok(&["policy", "create", "--file", &file.display().to_string()]);
    let p = admin.ok(&["policy", "show", "web root", "-o", "json"]).json();
    assert_eq!(p["entitlement_name"], "web-ops");
    let names: Vec<&str> = p["names"].as_object().unwrap().values().filter_map(Value::as_str).collect();
    for n in ["root@web", "bob", "carol"] {
        assert!(names.contains(&n), "{p}");
    }
    let listed = admin.ok(&["policy", "list"]);
    assert!(listed.out.contains("web-ops") && listed.out.contains("web root"), "{}", listed.text);
    // Explain takes the requester's local time and answers with names and local time.
    let explain = |at: &str| {
        let args = ["policy", "explain", "--user", "alice", "--account", "root@web", "--access-type", "password"];
        admin.run(&[&args[..], &["--at", at]].concat())
    };
    let r = explain("2030-07-01T09:00");
    assert!(r.out.contains("Governing policy: web root") && r.out.contains("2030-07-01T09:00:00+02:00"), "{}", r.text);
    // A local time the clocks skip is refused with its reason, not moved.
    let r = explain("2030-03-31T02:30");
    assert!(!r.ok && r.text.contains("does not exist in Europe/Paris"), "{}", r.text);

    // The requester: what may I request, then ask for it by name.
    let alice = Person::login(&server, "alice", &pw("alice"));
    let r = alice.ok(&["request", "options"]);
    assert!(
        r.out.contains("root@web:password") && r.out.contains("web root") && r.out.contains("ticket"),
        "{}",
        r.text
    );
    assert!(!r.out.contains("root@mail"), "only what alice may request: {}", r.text);
    let o = alice.ok(&["request", "options", "mail", "-o", "json"]).json();
    assert_eq!(o["total"], 0, "{o}");
    let o = alice.ok(&["request", "options", "WEB", "-o", "json"]).json();
    assert_eq!((o["total"].clone(), o["items"][0]["terms"]["approvals_required"].clone()), (json!(1), json!(1)), "{o}");
    let r = alice.run(&["request", "create", "--account", "root@mail:password"]);
    assert!(!r.ok && r.text.contains("not among your request options"), "{}", r.text);
    let r = alice.run(&["request", "create", "--account", "root@web:password"]);
    assert!(!r.ok && r.text.contains("a ticket number is required") && r.text.contains("'web root'"), "{}", r.text);
    let denied = audited(&server, &admin_token, "request.create", "denied").await;
    assert!(denied.iter().any(|e| e["details"].to_string().contains("ticket")), "refusal audited: {denied:?}");
    let r = alice.ok(&["request", "create", "--account", "root@web:password", "--ticket", "CHG-1", "-o", "json"]);
    let id = r.json()["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();

    // The approver: their queue, by names; approve; then revoke from "approved by me".
    let bob = Person::login(&server, "bob", &pw("bob"));
    let r = bob.ok(&["request", "list", "--queue", "approvals"]);
    assert!(r.out.contains(&id) && r.out.contains("alice") && r.out.contains("CHG-1"), "{}", r.text);
    bob.ok(&["request", "approve", &id]);
    let r = bob.ok(&["request", "list", "--queue", "approved", "--account", "root@web", "-o", "json"]);
    assert_eq!(r.json()[0]["id"], id.as_str(), "{}", r.text);
    bob.ok(&["request", "revoke", &id, "--comment", "change window closed"]);

    // Revoked under a policy with review: revoked for alice (and resubmittable), in review for carol.
    let mine = alice.ok(&["request", "list", "-o", "json"]).json();
    let it = mine.as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap().clone();
    assert_eq!((it["state"].as_str(), it["ended_by"].as_str()), (Some("pending_review"), Some("revocation")), "{it}");
    assert_eq!(it["status_text"], "pending review (revoked)");
    let r = alice.ok(&["request", "resubmit", &id]);
    assert!(r.out.contains("root@web") && r.out.contains("Pending 1 approval"), "{}", r.text);
    let carol = Person::login(&server, "carol", &pw("carol"));
    let r = carol.ok(&["request", "list", "--queue", "reviews"]);
    assert!(r.out.contains(&id) && r.out.contains("revoked"), "{}", r.text);
    carol.ok(&["request", "review", &id, "--comment", "fine"]);
    let r = carol.ok(&["request", "list", "--queue", "reviews"]);
    assert!(!r.out.contains(&id), "{}", r.text);

    // Self-service: time zone; a locked zone refused and audited; the same value is no update.
    let me = alice.ok(&["me", "set", "--time-zone", "Asia/Tokyo", "-o", "json"]).json();
    assert_eq!(me["time_zone"], "Asia/Tokyo");
    admin.ok(&["user", "update", "alice", "--lock-time-zone", "true"]);
    let before = audited(&server, &admin_token, "user.update", "success").await.len();
    alice.ok(&["me", "set", "--time-zone", "Asia/Tokyo"]);
    assert_eq!(audited(&server, &admin_token, "user.update", "success").await.len(), before, "no change, no update");
    let r = alice.run(&["me", "set", "--time-zone", "UTC"]);
    assert!(!r.ok && r.text.contains("locked your time zone"), "{}", r.text);
    assert_eq!(audited(&server, &admin_token, "user.update", "denied").await.len(), 1);
    // A role refusal is audited with the route.
    let r = alice.run(&["service", "set", "--session-requests", "false"]);
    assert_eq!(r.code, Some(1), "{}", r.text);
    let refused = audited(&server, &admin_token, "api.call", "denied").await;
    assert!(refused.iter().any(|e| e["object_id"] == "PUT /api/v1/services"), "{refused:?}");

    // Favorites from flags and from a request, shown with their accounts, changed, submitted.
    alice.ok(&["favorite", "create", "daily", "--account", "root@web:password", "--ticket", "CHG-2"]);
    alice.ok(&["favorite", "create", "again", "--from-request", &id]);
    let r = alice.ok(&["favorite", "list"]);
    assert!(r.out.contains("daily") && r.out.contains("again") && r.out.contains("root@web:password"), "{}", r.text);
    alice.ok(&["favorite", "update", "daily", "--comment", "the usual"]);
    let f = alice.ok(&["favorite", "show", "daily", "-o", "json"]).json();
    assert_eq!((f["request"]["comment"].as_str(), f["request"]["ticket"].as_str()), (Some("the usual"), Some("CHG-2")));
    let r = alice.ok(&["favorite", "submit", "again"]);
    assert!(r.out.contains("root@web: request"), "{}", r.text);
    let r = alice.run(&["favorite", "show", "nope"]);
    assert!(!r.ok && r.text.contains("no favorite named 'nope'"), "{}", r.text);
}

#[tokio::test]
async fn people_walk_by_name_sqlite() {
    walk(Db::Sqlite).await;
}

#[tokio::test]
async fn people_walk_by_name_postgres() {
    walk(Db::postgres()).await;
}
