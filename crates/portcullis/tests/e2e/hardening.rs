//! Findings of the security run (issue 13), each performed as an attack against the real
//! binary; each test fails if the attack works again. On SQLite and PostgreSQL.

use portcullis_testkit::sshd::{Sshd, UnixUser};
use serde_json::{json, Value};

use crate::harness::{Db, Server};

async fn call(s: &Server, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    s.call(method, path, Some(token), body).await
}

async fn run(db: Db) {
    let server = Server::start(db);
    let admin = server.bootstrap().await;
    let (bob_id, bob) = server.user_with_roles(&admin, "bob", &[]).await;

    // Finding 21: a password sent as a JSON number is not echoed in the refusal.
    let (s, v) = server
        .call("POST", "/api/v1/auth/login", None, Some(json!({ "username": "bob", "password": 987654321 })))
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(!v.to_string().contains("987654321") && v["message"].as_str().unwrap().contains("password"), "{v}");

    // Finding 9: a disable revokes the user's API tokens as well as their sessions (a reset
    // does too: resets.rs).
    let (_, t) = call(&server, "POST", "/api/v1/me/tokens", &bob, Some(json!({ "name": "script 2" }))).await;
    let token = t["secret"].as_str().unwrap().to_owned();
    let user = format!("/api/v1/users/{bob_id}");
    call(&server, "PATCH", &user, &admin, Some(json!({ "disabled": true }))).await;
    call(&server, "PATCH", &user, &admin, Some(json!({ "disabled": false }))).await;
    assert_eq!(call(&server, "GET", "/api/v1/me", &token, None).await.0, 401, "the token outlived disable/enable");
    let bob = server.login("bob", "bob password 1234").await;

    // Finding 17: confusable names. `Bob` beside `bob`, and names that display as others.
    let (s, v) = call(
        &server,
        "POST",
        "/api/v1/users",
        &admin,
        Some(json!({ "username": "Bob", "password": "another password 1234" })),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("differ by more than case"), "{v}");
    for (path, field, value) in
        [("/api/v1/users", "display_name", "Eve\u{202E}nimda"), ("/api/v1/user-groups", "name", "ops\u{200B}")]
    {
        let mut body = if path.ends_with("groups") {
            json!({})
        } else {
            json!({ "username": "eve", "password": "eve password 12345" })
        };
        body[field] = json!(value);
        let (s, v) = call(&server, "POST", path, &admin, Some(body)).await;
        assert_eq!((s, v["field"].as_str()), (422, Some(field)), "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains("invisible or text-direction"), "{v}");
    }

    // Finding 21 (part): an expiry in the past, 10,000 windows, a password with NUL.
    let window = json!({ "days": ["mon"], "start": "08:00", "end": "09:00" });
    for (body, field) in [
        (json!({ "name": "old", "priority": 5, "expires_at": "1999-01-01T00:00:00Z" }), "expires_at"),
        (json!({ "name": "many", "priority": 5, "windows": vec![window; 10_000] }), "windows"),
    ] {
        let (s, v) = call(&server, "POST", "/api/v1/entitlements", &admin, Some(body)).await;
        assert_eq!((s, v["field"].as_str()), (422, Some(field)), "{v}");
    }

    // Finding 18: one request naming the same account twice is refused whole.
    let (_, asset) = call(
        &server,
        "POST",
        "/api/v1/assets",
        &admin,
        Some(json!({ "name": "db", "address": "10.0.0.1", "platform": "linux" })),
    )
    .await;
    let (_, account) =
        call(&server, "POST", "/api/v1/accounts", &admin, Some(json!({ "asset_id": asset["id"], "name": "root" })))
            .await;
    let (_, me) = call(&server, "GET", "/api/v1/me", &admin, None).await;
    let (_, ent) = call(
        &server,
        "POST",
        "/api/v1/entitlements",
        &admin,
        Some(json!({ "name": "e", "priority": 1, "user_ids": [me["id"]] })),
    )
    .await;
    let policy = json!({ "entitlement_id": ent["id"], "name": "p", "priority": 1, "access_type": "password",
                         "scope": { "accounts": [account["id"]] }, "settings": { "auto_approve": true } });
    let (s, pol) = call(&server, "POST", "/api/v1/policies", &admin, Some(policy)).await;
    assert_eq!(s, 201, "{pol}");
    let one = json!({ "account_id": account["id"], "access_type": "password" });
    // Finding 12: the administrator entitled themself; until a second Security Policy
    // Administrator confirms, that grants them nothing, and they cannot confirm it themself.
    let (s, v) = call(&server, "POST", "/api/v1/requests", &admin, Some(json!({ "accounts": [one.clone()] }))).await;
    let refused = &v["outcomes"][0]["error"];
    assert_eq!((s, refused["code"].as_str()), (200, Some("no_governing_policy")), "{v}");
    assert!(refused["message"].as_str().unwrap().contains("you changed the entitlement or policy"), "{v}");
    assert!(refused["message"].as_str().unwrap().contains("ask another Security Policy Administrator"), "{v}");
    assert_eq!(v["outcomes"][0]["account_name"], "root@db", "the refused account is named: {v}");
    let (s, v) =
        call(&server, "GET", &format!("/api/v1/entitlements/{}", ent["id"].as_str().unwrap()), &admin, None).await;
    assert_eq!((s, v["unconfirmed_by"].clone()), (200, json!(["admin"])), "{v}");
    let confirm = format!("/api/v1/entitlements/{}/confirm", ent["id"].as_str().unwrap());
    let (s, v) = call(&server, "POST", &confirm, &admin, None).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("own_change")), "{v}");
    let rules = [("entitlement", ent["id"].as_str().unwrap()), ("policy", pol["id"].as_str().unwrap())];
    server.confirm_rules(&admin, &rules).await;
    let (s, v) = call(&server, "POST", &confirm, &admin, None).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("already_confirmed")), "{v}");
    let (s, v) =
        call(&server, "POST", "/api/v1/requests", &admin, Some(json!({ "accounts": [one.clone(), one.clone()] })))
            .await;
    assert_eq!((s, v["field"].as_str()), (422, Some("accounts[1]")), "{v}");
    let (_, all) = call(&server, "GET", "/api/v1/requests?queue=all", &admin, None).await;
    assert_eq!(all.as_array().unwrap().len(), 0, "nothing was created: {all}");

    let path = format!("/api/v1/accounts/{}/password", account["id"].as_str().unwrap());
    let (s, v) = call(&server, "PUT", &path, &admin, Some(json!({ "password": "abc\u{0}def" }))).await;
    assert_eq!((s, v["field"].as_str()), (422, Some("password")), "{v}");
    assert!(!v["message"].as_str().unwrap().contains("abc"), "the password is not echoed: {v}");

    asset_identity(&server, &admin).await;

    // Finding 16: another user's request answers like an unknown one (no existence oracle).
    let (s, v) = call(&server, "POST", "/api/v1/requests", &admin, Some(json!({ "accounts": [one] }))).await;
    assert_eq!(s, 200, "{v}");
    let id = v["outcomes"][0]["request"]["id"].as_str().unwrap().to_owned();
    let ghost = "00000000-0000-4000-8000-000000000000";
    for path in ["", "/checkout"] {
        let method = if path.is_empty() { "GET" } else { "POST" };
        let body = (!path.is_empty()).then(|| json!({ "action": "show" }));
        let theirs = call(&server, method, &format!("/api/v1/requests/{id}{path}"), &bob, body.clone()).await;
        let unknown = call(&server, method, &format!("/api/v1/requests/{ghost}{path}"), &bob, body).await;
        assert_eq!(theirs, unknown, "{method} {path}: another's request must look unknown");
        assert_eq!(theirs.0, 404);
    }
    self_added_membership(&server, &admin, &account).await;
}

/// Finding 12: a User Administrator adds herself to a group that is entitled: that membership
/// grants her nothing; the same membership given by someone else does.
async fn self_added_membership(server: &Server, admin: &str, account: &Value) {
    let admin = admin.to_owned();
    let (_, account) = call(
        server,
        "POST",
        "/api/v1/accounts",
        &admin,
        Some(json!({ "asset_id": account["asset_id"], "name": "svc" })),
    )
    .await;
    let one = json!({ "account_id": account["id"], "access_type": "password" });
    let (uma_id, uma) = server.user_with_roles(&admin, "uma", &["user_admin"]).await;
    let (_, ops) = call(server, "POST", "/api/v1/user-groups", &admin, Some(json!({ "name": "ops" }))).await;
    let ops_id = ops["id"].as_str().unwrap().to_owned();
    let (_, ent2) = call(
        server,
        "POST",
        "/api/v1/entitlements",
        &admin,
        Some(json!({ "name": "ops-e", "priority": 2, "group_ids": [ops_id] })),
    )
    .await;
    let policy2 = json!({ "entitlement_id": ent2["id"], "name": "p2", "priority": 1, "access_type": "password",
                          "scope": { "accounts": [account["id"]] }, "settings": { "auto_approve": true } });
    call(server, "POST", "/api/v1/policies", &admin, Some(policy2)).await;
    let member = format!("/api/v1/user-groups/{ops_id}/members/{uma_id}");
    assert_eq!(call(server, "PUT", &member, &uma, None).await.0, 200);
    let ask = json!({ "accounts": [one.clone()] });
    let (_, v) = call(server, "POST", "/api/v1/requests", &uma, Some(ask.clone())).await;
    assert_eq!(v["outcomes"][0]["error"]["code"], "no_governing_policy", "a self-added membership granted access: {v}");
    assert_eq!(call(server, "PUT", &member, &admin, None).await.0, 200);
    let (_, v) = call(server, "POST", "/api/v1/requests", &uma, Some(ask)).await;
    assert!(v["outcomes"][0]["request"]["id"].is_string(), "added by another, she may request: {v}");
}

/// Finding 1: an Asset Administrator points an asset with a vaulted password at a host of
/// their own (a capturing sshd) and asks for a credential check. The vault sends nothing to a
/// changed address, port or host key until another administrator confirms it.
async fn asset_identity(server: &Server, admin: &str) {
    const VAULTED: &str = "Plant-Harvest-Me-7731x";
    let user = UnixUser::create(VAULTED);
    let real = Sshd::start();
    let capture = Sshd::start();
    // The harness's readiness probe connects once; a login attempt names the user.
    let contacted = || {
        let log = capture.log();
        log.contains(&user.name) || log.matches("Connection from").count() > 1
    };
    let (_, mallory) = server.user_with_roles(admin, "mallory", &["asset_admin"]).await;
    let ssh = |port: u16| json!([{ "protocol": "ssh", "port": port }]);
    let body = json!({ "name": "vaulted", "address": "127.0.0.1", "platform": "linux", "protocols": ssh(real.port()) });
    let (s, asset) = call(server, "POST", "/api/v1/assets", admin, Some(body)).await;
    assert_eq!(s, 201, "{asset}");
    let asset_path = format!("/api/v1/assets/{}", asset["id"].as_str().unwrap());
    assert_eq!(asset["identity_confirmed"], true, "a new asset is trusted as created: {asset}");
    let body = json!({ "asset_id": asset["id"], "name": user.name });
    let (_, account) = call(server, "POST", "/api/v1/accounts", admin, Some(body)).await;
    let acct = format!("/api/v1/accounts/{}", account["id"].as_str().unwrap());
    let (s, v) = call(server, "PUT", &format!("{acct}/password"), admin, Some(json!({ "password": VAULTED }))).await;
    assert_eq!(s, 201, "{v}");
    let check = json!({ "kind": "password" });
    let (s, v) = call(server, "POST", &format!("{acct}/credentials/check"), &mallory, Some(check.clone())).await;
    assert_eq!((s, v["ok"].as_bool()), (200, Some(true)), "the real host accepts the vaulted password: {v}");

    // The attack: the asset now points at the capturing server, its host key unpinned.
    let (s, a) = call(
        server,
        "PATCH",
        &asset_path,
        &mallory,
        Some(json!({ "protocols": ssh(capture.port()), "host_key": null })),
    )
    .await;
    assert_eq!(
        (s, &a["identity_confirmed"], &a["identity_changed_by"]),
        (200, &json!(false), &json!(["mallory"])),
        "{a}"
    );
    for action in ["check", "change"] {
        let (s, v) = call(server, "POST", &format!("{acct}/credentials/{action}"), &mallory, Some(check.clone())).await;
        assert_eq!((s, v["code"].as_str()), (409, Some("asset_identity_unconfirmed")), "{action}: {v}");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains("changed by mallory") && message.contains("confirm-identity vaulted"), "{message}");
    }
    assert!(!contacted(), "the capturing host was contacted:\n{}", capture.log());
    let (_, events) = call(server, "GET", "/api/v1/audit/events?action=asset.update", admin, None).await;
    let change = events["events"].as_array().unwrap().iter().find(|e| e["object_id"] == asset["id"]).unwrap().clone();
    assert_eq!(change["details"]["alert"], true, "the change is audited as an alert: {change}");

    // Nobody confirms their own change; undoing it is a change too, so a third one confirms.
    let confirm = format!("{asset_path}/confirm-identity");
    let (s, v) = call(server, "POST", &confirm, &mallory, None).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("own_change")), "{v}");
    let (s, a) = call(server, "PATCH", &asset_path, admin, Some(json!({ "protocols": ssh(real.port()) }))).await;
    assert_eq!((s, a["identity_changed_by"].as_array().map(Vec::len)), (200, Some(2)), "{a}");
    let (s, v) = call(server, "POST", &confirm, admin, None).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("own_change")), "{v}");
    server.confirm_identity(admin, asset["id"].as_str().unwrap()).await;
    let (s, v) = call(server, "POST", &format!("{acct}/credentials/check"), admin, Some(check)).await;
    assert_eq!((s, v["ok"].as_bool()), (200, Some(true)), "confirmed, the check runs again: {v}");
    let (_, events) = call(server, "GET", "/api/v1/audit/events?action=asset.identity_confirm", admin, None).await;
    assert_eq!(events["events"][0]["actor_name"], "asset-admin-2", "{events}");
    assert!(!contacted(), "the capturing host was contacted:\n{}", capture.log());
}

/// Finding 14: the database, its journal and the data directory are the server's only, and a
/// looser mode left from before is narrowed at start-up.
#[tokio::test]
async fn data_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start(Db::Sqlite);
    server.bootstrap().await;
    let data = server.data_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let check = |data: &std::path::Path| {
        assert_eq!(mode(data), 0o700, "data directory");
        assert_eq!(mode(&data.join("recordings")), 0o700, "recordings directory");
        for f in ["portcullis.db", "portcullis.db-wal"] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
    };
    check(&data);
    server.stop();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("portcullis.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    server.restart();
    check(&data);
    assert!(server.all_output().contains("narrowed the mode"), "the narrowing is logged");
}

#[tokio::test]
async fn hardening_attacks_fail_sqlite() {
    run(Db::Sqlite).await;
}

#[tokio::test]
async fn hardening_attacks_fail_postgres() {
    run(Db::postgres()).await;
}

/// A burst of failed sign-ins does not exhaust memory (issue 13, finding 5): 384 at once, each
/// an argon2 check with 19 MiB of working memory, queue for the password checker instead of
/// allocating all at once. (Before: the server grew from 152 MB to 2.2 GB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failed_sign_ins_queues_instead_of_exhausting_memory() {
    let server = Server::start(Db::Sqlite);
    server.bootstrap().await;
    let before = server.rss_kib();
    let client = server.client();
    let url = format!("{}/api/v1/auth/login", server.url);
    let tasks: Vec<_> = (0..384)
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let body = serde_json::json!({ "username": format!("nobody{i}"), "password": "wrong password 1234" });
                client.post(url).json(&body).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
            })
        })
        .collect();
    let mut peak = before;
    let sampler = async {
        for _ in 0..600 {
            peak = peak.max(server.rss_kib());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let all = futures_util::future::join_all(tasks);
    let statuses = tokio::select! {
        s = all => s,
        _ = sampler => panic!("384 sign-ins did not finish in 30 s"),
    };
    // Refused each: wrong credentials, or (once this address failed 30 times in a minute)
    // told to wait.
    assert!(statuses.iter().all(|s| matches!(s, Ok(401) | Ok(429))), "{statuses:?}");
    assert!(peak < before + 256 * 1024, "memory grew from {before} KiB to {peak} KiB under 384 failed sign-ins");
}

/// Every response forbids framing and sniffing, and over TLS carries HSTS (issue 13, finding
/// 15): the API's docs page, its JSON, the health check and the web UI alike.
#[tokio::test]
async fn every_response_forbids_framing_and_carries_hsts_over_tls() {
    let token = "metrics-token-for-prometheus-42";
    let server = Server::start_with(Db::Sqlite, true, &[("PORTCULLIS_SERVER_METRICS_TOKEN", token)]);
    let client = server.client();

    // Finding 15: the metrics (routes, failed sign-ins, checkouts) need the configured token.
    let metrics = format!("{}/metrics", server.url);
    for bearer in [None, Some("metrics-token-for-prometheus-43")] {
        let mut req = client.get(&metrics);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{bearer:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "metrics_token_required", "{body}");
        assert!(body["message"].as_str().unwrap().contains("server.metrics_token"), "{body}");
    }
    let r = client.get(&metrics).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("portcullis_"), "the metrics themselves");
    for path in ["/api/v1/docs", "/api/v1/openapi.json", "/healthz", "/login", "/api/v1/no-such-route"] {
        let resp = client.get(format!("{}{path}", server.url)).send().await.unwrap();
        let h = resp.headers();
        let get = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert_eq!(get("x-frame-options"), "DENY", "{path}");
        assert!(get("content-security-policy").contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
        assert!(get("strict-transport-security").starts_with("max-age="), "{path}");
    }

    // Finding 21: a body over the limit sent over HTTP/2 gets a visible 413 as over HTTP/1.1.
    let h2 = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http2_prior_knowledge()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let big = format!("{{\"username\": \"{}\", \"password\": \"x\"}}", "a".repeat(2 * 1024 * 1024));
    let r = h2
        .post(format!("{}/api/v1/auth/login", server.url))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 413));
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "payload_too_large");

    // Finding 21: the generated certificate is valid for about a year from today, not until
    // 4096 (its validity's two UTCTimes, YYMMDDhhmmssZ, read from the DER).
    let pem = std::fs::read_to_string(server.data_dir().join("tls-cert.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
    let times: Vec<jiff::civil::Date> = der
        .windows(15)
        .filter(|w| w[0] == 0x17 && w[1] == 13 && w[14] == b'Z')
        .map(|w| {
            let n = |i: usize| ((w[i] - b'0') * 10 + (w[i + 1] - b'0')) as i8;
            jiff::civil::date(2000 + i16::from(n(2)), n(4), n(6))
        })
        .collect();
    assert_eq!(times.len(), 2, "not before and not after, both as UTCTime (before 2050)");
    let today = jiff::Zoned::now().date();
    let days = |a: jiff::civil::Date, b: jiff::civil::Date| (b - a).get_days();
    assert!((0..=2).contains(&days(times[0], today)), "valid from {:?}", times[0]);
    assert!((390..=400).contains(&days(today, times[1])), "valid until {:?}", times[1]);
}

/// Finding 4: silent connections and half-sent requests (slowloris) do not lock anyone out or
/// run the server out of file descriptors. 1,000 from one address: the oldest waiting ones are
/// dropped for newcomers, a real client still gets its answer while the rest are open, and a
/// connection that sends no whole request is closed when its time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_http_connections_do_not_lock_users_out() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let server = Server::start(Db::Sqlite);
    let admin = server.bootstrap().await;
    let addr = format!("127.0.0.1:{}", server.port);
    let open = |s: TcpStream, half: bool| async move {
        let mut s = s;
        if half {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: portcullis\r\nX-Slow: ").await.unwrap();
        }
        s
    };
    let mut attack = Vec::new();
    for i in 0..1_000 {
        let s = TcpStream::connect(&addr).await.expect("the server accepts connections");
        attack.push(open(s, i % 2 == 1).await);
    }
    let (s, me) = server.call("GET", "/api/v1/me", Some(&admin), None).await;
    assert_eq!((s, me["username"].as_str()), (200, Some("admin")), "a real client is answered during the attack");

    async fn closed(s: &mut TcpStream, wait: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(wait, s.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
    }
    let mut dropped = 0;
    for s in &mut attack {
        dropped += usize::from(closed(s, Duration::from_millis(50)).await);
    }
    assert!(dropped >= 1_000 - 448, "only {dropped} of 1,000 waiting connections from one address were dropped");

    // Those left, and a newcomer that never finishes its request, are closed when their time
    // is up (15 s for a request's headers).
    let mut late = vec![open(TcpStream::connect(&addr).await.unwrap(), true).await];
    late.push(TcpStream::connect(&addr).await.unwrap());
    tokio::time::sleep(Duration::from_secs(16)).await;
    for s in attack.iter_mut().chain(late.iter_mut()) {
        assert!(closed(s, Duration::from_secs(2)).await, "a connection without a whole request was kept open");
    }
    let (s, _) = server.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
}

/// Finding 8: someone with write access to the database removes the last events and rolls
/// the chain's head back to the event before them: the chain alone still verifies, but the
/// anchor the server keeps outside the database (every second) names the cut. One event, then
/// a hundred; SQLite and PostgreSQL.
async fn truncated_tail(db: Db) {
    let server = Server::start(db);
    let admin = server.bootstrap().await;
    let verify = || async {
        let (s, v) = server.call("GET", "/api/v1/audit/verify", Some(&admin), None).await;
        assert_eq!(s, 200, "{v}");
        v
    };
    for cut in [1i64, 100] {
        for i in 0..cut.max(3) {
            let body = json!({ "name": format!("g-{cut}-{i}") });
            assert_eq!(call(&server, "POST", "/api/v1/user-groups", &admin, Some(body)).await.0, 201);
        }
        // The anchor follows the head within a second or two.
        let (_, page) = server.call("GET", "/api/v1/audit/events?limit=1000", Some(&admin), None).await;
        let last = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).max().unwrap();
        let anchors = server.data_dir().join("audit-anchors");
        let anchored = portcullis_testkit::process::wait_until(std::time::Duration::from_secs(10), || {
            std::fs::read_to_string(&anchors)
                .unwrap_or_default()
                .lines()
                .any(|l| l.split(' ').next().and_then(|s| s.parse::<i64>().ok()).is_some_and(|s| s >= last))
        });
        assert!(anchored, "no anchor for event {last}");
        let v = verify().await;
        assert_eq!(v["ok"], true, "{v}");
        // The attack: delete the last `cut` events and roll the head back to the one before.
        let keep = last - cut;
        server.sql(&format!(
            "DELETE FROM audit_events WHERE seq > {keep}; \
             UPDATE audit_head SET seq = {keep}, link = (SELECT link FROM audit_events WHERE seq = {keep}) WHERE id = 1;"
        ));
        let v = verify().await;
        assert_eq!(v["ok"], false, "a cut of {cut} went unnoticed: {v}");
        assert_eq!(v["first_broken_seq"], keep + 1, "{v}");
        assert!(v["reason"].as_str().unwrap().contains("removed from the end"), "{v}");
        // The damage stays reported (the anchor is not moved back by the shorter log). For the
        // next round the anchors go, as an operator would reset them after an investigation.
        std::fs::remove_file(&anchors).unwrap();
    }
}

#[tokio::test]
async fn a_truncated_audit_log_is_detected_sqlite() {
    truncated_tail(Db::Sqlite).await;
}

#[tokio::test]
async fn a_truncated_audit_log_is_detected_postgres() {
    truncated_tail(Db::postgres()).await;
}
