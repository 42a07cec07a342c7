//! Three Portcullis nodes on one PostgreSQL database, with their recordings on one shared
//! directory and archived to one S3-compatible server (issue 21): a request approved on node A,
//! an SSH session through node C, revoked (and terminated) through node B; a session on C
//! watched and searched through B while it runs; node C killed mid-session and its session ended
//! by the survivors, its recording archived by one of them, verified and played from another
//! node; 1,000 requests expiring in the same second with three schedulers; PostgreSQL (reached
//! over TLS only) restarted under load.

use std::path::Path;

use portcullis_testkit::s3::S3;

use portcullis_core::policy::AccessType;
use portcullis_store::{Actor, AuditQuery, NewRequest};

use super::*;

const BUCKET: &str = "cluster-recordings";

fn cluster_env(shared: &Path, s3: &S3) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PORTCULLIS_STORAGE_RECORDINGS_DIR".into(), shared.display().to_string()),
        ("PORTCULLIS_NODE_HEARTBEAT_SECONDS".into(), "1".into()),
        ("PORTCULLIS_NODE_LOST_AFTER_SECONDS".into(), "4".into()),
    ];
    for (k, v) in [
        ("URL", s3.url().as_str()),
        ("BUCKET", BUCKET),
        ("ACCESS_KEY_ID", "cluster-archiver"),
        ("SECRET_ACCESS_KEY", "Cluster-S3-Secret-4471"),
        ("ALLOW_HTTP", "true"),
        ("REMOVE_LOCAL", "true"),
        ("TIMEOUT_SECONDS", "2"),
    ] {
        env.push((format!("PORTCULLIS_ARCHIVE_{k}"), v.to_owned()));
    }
    env
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// An interactive session of alice through `node`'s SSH proxy.
fn interactive_on(w: &World, node: &Server) -> Interactive {
    let mut c = w.base("ssh", ALICE_PW);
    c.args(["-tt", "-p", &node.ssh_port.to_string(), &w.dest()]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let input = child.stdin.take();
    Interactive { child, input }
}

/// The live session of `request`, as `node` lists it.
async fn live_of(w: &World, node: &Server, request: &str) -> Value {
    for _ in 0..100 {
        let path = format!("/api/v1/sessions?live=true&request_id={request}");
        let (_, v) = node.call("GET", &path, Some(&w.admin), None).await;
        if let Some(s) = v.as_array().and_then(|a| a.first()) {
            return s.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no live session for {request}");
}

async fn session(node: &Server, token: &str, id: &str) -> Value {
    node.call("GET", &format!("/api/v1/sessions/{id}"), Some(token), None).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_postgres() {
    let shared = tempfile::Builder::new().prefix("portcullis-shared-").tempdir().unwrap();
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let env = cluster_env(shared.path(), &s3);
    // Several requests of alice's are open at once (the load below makes many).
    // The nodes reach the database over TLS, verifying its certificate.
    let w = world_with(Db::postgres_tls(), json!({ "simultaneous_access": true }), &refs(&env)).await;
    let b = w.server.peer_with(&refs(&env));
    let mut c = w.server.peer_with(&refs(&env));
    let names = [w.server.node_name(), b.node_name(), c.node_name()];

    // Every node says who it is and that the database and the shared recordings are there.
    for (node, name) in [(&w.server, &names[0]), (&b, &names[1]), (&c, &names[2])] {
        let (s, h) = node.call("GET", "/healthz", None, None).await;
        assert_eq!(s, 200, "{h}");
        assert_eq!(h["node"], json!(name), "{h}");
        assert_eq!(
            (h["store"].as_str(), h["recordings"].as_str(), h["archive"].as_str()),
            (Some("ok"), Some("ok"), Some("ok"))
        );
    }

    // Each node's metrics say which node they are of.
    let metrics = b.client().get(format!("{}/metrics", b.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("portcullis_node_info{{node=\"{}\"}} 1", names[1])), "{metrics}");

    // A request approved on A, a session through C, revoked through B: it ends at once.
    let request = w.request().await;
    let mut s = interactive_on(&w, &c);
    let live = live_of(&w, &b, &request).await;
    assert_eq!(live["node"], json!(names[2]), "the session is on node C: {live}");
    s.send("echo ready\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let (code, v) = post(&b, &w.admin, &format!("/api/v1/requests/{request}/revoke"), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let (status, out) = s.wait(Duration::from_secs(5)).expect("the session on C ends when B revokes");
    let took = t0.elapsed();
    eprintln!("cross-node revocation ended the session in {took:?}");
    assert!(took < Duration::from_millis(1500), "cross-node revocation took {took:?}");
    assert_ne!(status, Some(0));
    assert!(out.contains("revoked"), "{out}");
    let id = live["id"].as_str().unwrap();
    let mut ended = Value::Null;
    for _ in 0..50 {
        ended = session(&w.server, &w.admin, id).await;
        if ended["live"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ended["end_reason"], "the request was revoked", "{ended}");

    // Terminated through B while it runs on C.
    let request = w.request().await;
    let s = interactive_on(&w, &c);
    let live = live_of(&w, &w.server, &request).await;
    let id = live["id"].as_str().unwrap().to_owned();
    // The session starts at sign-in, before the client opens its shell channel: a termination
    // in between reaches the client only as the SSH disconnect, which a client still sending its
    // channel requests may lose to the TCP reset. Terminated once the shell runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, v) =
        post(&b, &w.admin, &format!("/api/v1/sessions/{id}/terminate"), json!({ "reason": "maintenance" })).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["live"], false, "the answer shows the end: {v}");
    let (_, out) = s.wait(Duration::from_secs(5)).expect("the terminated session ends");
    assert!(out.contains("terminated by admin: maintenance"), "{out}");
    // The session list (CLI) names the node.
    let pw = [("PORTCULLIS_PASSWORD", crate::harness::ADMIN_PASSWORD)];
    let o = w.server.cli(&["login", "--server", &w.server.url, "--username", "admin"], &pw);
    assert!(o.status.success(), "{}", text_of(&o));
    let listed = w.server.cli(&["session", "list"], &[]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&names[2]), "{}", String::from_utf8_lossy(&listed.stdout));

    // Watched through B while it runs on C: followed from the shared recording.
    let request = w.request().await;
    let mut s = interactive_on(&w, &c);
    let live = live_of(&w, &b, &request).await;
    let id = live["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let url = format!("{}/api/v1/sessions/{id}/live", b.url);
    let mut resp = b.client().get(url).bearer_auth(&w.admin).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    s.send("echo WATCHED_$((6*7))_ON_C\n");
    let mut seen = String::new();
    let t0 = Instant::now();
    while !seen.contains("WATCHED_42_ON_C") && t0.elapsed() < Duration::from_secs(15) {
        match tokio::time::timeout(Duration::from_secs(1), resp.chunk()).await {
            Ok(Ok(Some(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(_) => break,
            Err(_) => {}
        }
    }
    eprintln!("watched through another node: the output arrived after {:?}", t0.elapsed());
    assert!(seen.contains("WATCHED_42_ON_C"), "watched through B: {seen}");
    // Searched through B while it runs on C: B indexes it from the shared recording as it grows.
    let t0 = Instant::now();
    let mut found = Value::Null;
    while t0.elapsed() < Duration::from_secs(20) {
        let (_, v) = b.call("GET", "/api/v1/recordings/search?q=WATCHED_42_ON_C", Some(&w.admin), None).await;
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            found = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("searched through another node: the live session's output was found after {:?}", t0.elapsed());
    assert_eq!(found[0]["session_id"], id.as_str(), "found through B while live on C: {found}");
    assert_eq!(found[0]["live"], true, "{found}");
    // The live sessions page through B names the node holding it.
    let (cookie, _) = crate::replies::web_login(&b, "admin", crate::harness::ADMIN_PASSWORD, "/").await;
    let (_, _, page) = crate::replies::web_get(&b, Some(&cookie), "/sessions").await;
    assert!(page.contains("<th scope=\"col\">Node</th>") && page.contains(&format!("<td>{}</td>", names[2])), "{page}");
    // The session ends on C: the watcher on B is told, and its stream ends.
    s.send("exit\n");
    let t0 = Instant::now();
    let mut ended = false;
    while t0.elapsed() < Duration::from_secs(15) {
        match tokio::time::timeout(Duration::from_secs(1), resp.chunk()).await {
            Ok(Ok(Some(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(_) => {
                ended = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(ended, "the watch through B ends with the session: {seen}");
    let _ = s.wait(Duration::from_secs(5));

    // C killed mid-session: the survivors end its session within the lost timeout; its
    // recording up to the last written chunk verifies and plays from another node.
    let request = w.request().await;
    let mut s = interactive_on(&w, &c);
    let live = live_of(&w, &w.server, &request).await;
    let id = live["id"].as_str().unwrap().to_owned();
    // The client's shell is ready a moment after the session opens.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.send("echo before-the-crash-$((6*7))\n");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    c.kill9();
    let _ = s.wait(Duration::from_secs(5));
    let mut ended = Value::Null;
    while t0.elapsed() < Duration::from_secs(20) {
        ended = session(&b, &w.admin, &id).await;
        if ended["live"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("the lost node's session was ended after {:?}", t0.elapsed());
    let reason = ended["end_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with(&format!("node lost: {} stopped answering", names[2])), "{ended}");
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    let (code, v) = b.call("GET", &format!("/api/v1/sessions/{id}/recording/verify"), Some(&w.admin), None).await;
    assert_eq!(code, 200, "{v}");
    // Cut where the node died; every chunk written before is authentic.
    assert_eq!(v["status"], "cut", "{v}");
    assert!(v["chunks"].as_u64().unwrap_or(0) >= 2, "{v}");
    let url = format!("{}/api/v1/sessions/{id}/recording?format=asciicast", w.server.url);
    let text = w.server.client().get(url).bearer_auth(&w.admin).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("before-the-crash-42"), "{text}");
    // Any node finds the session C ran: B indexes it from the shared recording.
    let mut found = Value::Null;
    for _ in 0..60 {
        let (_, v) = b.call("GET", "/api/v1/recordings/search?q=%22before-the-crash-42%22", Some(&w.admin), None).await;
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            found = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(found[0]["session_id"], id.as_str(), "found through B: {found}");
    // C is gone, so one of the survivors archives its recording from the shared directory (and,
    // as configured, removes it there); it still verifies, from the archive, through B.
    let (key, local) = (format!("recordings/{id}.pcrec"), shared.path().join(format!("{id}.pcrec")));
    let t0 = Instant::now();
    while (local.exists() || !s3.keys(BUCKET).contains(&key)) && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(s3.keys(BUCKET).contains(&key), "the lost node's recording was archived: {:?}", s3.keys(BUCKET));
    assert!(!local.exists(), "removed from the shared directory once archived");
    let (code, v) = b.call("GET", &format!("/api/v1/sessions/{id}/recording/verify"), Some(&w.admin), None).await;
    assert_eq!((code, v["status"].as_str()), (200, Some("cut")), "verified from the archive: {v}");
    let store = w.server.store().await;
    let lost = store
        .audit_events(&AuditQuery { action: Some("node.lost".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(lost.len(), 1, "declared lost once: {lost:?}");
    assert_eq!(lost[0].object_id, names[2]);

    // The registry as an auditor sees it.
    let nodes = w.server.cli(&["node", "list", "--output", "json"], &[]);
    let nodes: Value = serde_json::from_slice(&nodes.stdout).unwrap_or_default();
    let state_of =
        |n: &str| nodes.as_array().into_iter().flatten().find(|x| x["name"] == n).map(|x| x["state"].clone());
    assert_eq!(state_of(&names[2]), Some(json!("lost")), "{nodes}");
    assert_eq!(state_of(&names[1]), Some(json!("up")), "{nodes}");
    // And in the web UI.
    let (cookie, _) = crate::replies::web_login(&b, "admin", crate::harness::ADMIN_PASSWORD, "/").await;
    let (_, _, page) = crate::replies::web_get(&b, Some(&cookie), "/admin").await;
    assert!(page.contains("&#x2f;admin&#x2f;nodes\">Nodes</a>"), "{page}");
    let (code, _, page) = crate::replies::web_get(&b, Some(&cookie), "/admin/nodes").await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(&format!("{} (this node)", names[1])), "{page}");
    assert!(page.contains("lost (stopped answering; its sessions were ended by the others)"), "{page}");
    let (_, _, page) = crate::replies::web_get(
        &b,
        Some(&crate::replies::web_login(&b, "alice", ALICE_PW, "/").await.0),
        "/admin/nodes",
    )
    .await;
    assert!(page.contains("the node list is for the roles: auditor, appliance_admin"), "{page}");

    // C comes back: registered again, and serves sessions.
    c.restart();
    let o = w.ssh_on(&c, &[&w.dest(), "echo back-on-c"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("back-on-c"), "{}", text_of(&o));

    // 1,000 requests due to expire in the same second, three schedulers: each expired once.
    expire_together(&w, &store, 1000).await;

    // PostgreSQL restarted under load: every request a node acknowledged is kept, the nodes
    // reconnect, and live control crosses nodes again.
    restart_under_load(&w, &b, &c).await;

    // A connection waiting for four-eyes on C, decided through B (permit) and A (deny).
    four_eyes_across_nodes(&w, &b, &c).await;
}

async fn four_eyes_across_nodes(w: &World, b: &Server, c: &Server) {
    const BOB_PW: &str = "bob password 1234567";
    let body = json!({ "username": "bob", "display_name": "Bob", "password": BOB_PW });
    let (s, bob) = post(&w.server, &w.admin, "/api/v1/users", body).await;
    assert_eq!(s, 201, "{bob}");
    let (_, ops) = post(&w.server, &w.admin, "/api/v1/user-groups", json!({ "name": "ops" })).await;
    let member = format!("/api/v1/user-groups/{}/members/{}", ops["id"].as_str().unwrap(), bob["id"].as_str().unwrap());
    assert_eq!(w.server.call("PUT", &member, Some(&w.admin), None).await.0, 200);
    let (s, v) = w
        .edit_default_policy(|p| {
            p["four_eyes_groups"] = json!([ops["id"]]);
            p["wait_seconds"] = json!(60);
        })
        .await;
    assert_eq!(s, 200, "{v}");
    let bob = b.login("bob", BOB_PW).await;
    w.request().await;
    let ssh_on_c = |command: &str| {
        let mut cmd = w.base("ssh", ALICE_PW);
        cmd.args(["-p", &c.ssh_port.to_string(), &w.dest(), command]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let waiting_on = |node: &Server, token: &str| {
        let (node, token) = (node.url.clone(), token.to_owned());
        let client = b.client();
        async move {
            for _ in 0..200 {
                let list: Value = client
                    .get(format!("{node}/api/v1/session-waits"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap_or_default();
                if let Some(found) = list.as_array().and_then(|l| l.iter().find(|x| x["kind"] == "four_eyes")) {
                    return found.clone();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no four-eyes wait listed");
        }
    };

    // Permitted through B: the client on C goes on.
    let child = ssh_on_c("echo four-eyes-across-nodes");
    let wait = waiting_on(b, &bob).await;
    assert_eq!(wait["yours_to_decide"], true, "{wait}");
    let id = wait["id"].as_str().unwrap().to_owned();
    let (s, v) = post(b, &bob, &format!("/api/v1/session-waits/{id}/permit"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "four-eyes-across-nodes", "{}", text_of(&o));
    // Decided once: a second decision finds nothing to decide.
    let (s, v) = post(&w.server, &bob, &format!("/api/v1/session-waits/{id}/deny"), json!({})).await;
    assert!(s == 404 || s == 409, "{s} {v}");

    // Denied through A, with a reason the user on C reads.
    let child = ssh_on_c("echo should-not-run");
    let wait = waiting_on(&w.server, &w.admin).await;
    let bob_on_a = w.server.login("bob", BOB_PW).await;
    let path = format!("/api/v1/session-waits/{}/deny", wait["id"].as_str().unwrap());
    let (s, v) = post(&w.server, &bob_on_a, &path, json!({ "reason": "not during the freeze" })).await;
    assert_eq!(s, 200, "{v}");
    let o = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("should-not-run"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the authorizer denied the session (bob): not during the freeze"),
        "{}",
        text_of(&o)
    );
}

impl World {
    fn ssh_on(&self, node: &Server, args: &[&str]) -> Output {
        let mut c = self.base("ssh", ALICE_PW);
        c.args(["-p", &node.ssh_port.to_string()]);
        c.args(args);
        c.stdin(Stdio::null()).output().expect("ssh")
    }
}

fn text_of(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

async fn expire_together(w: &World, store: &portcullis_store::Store, n: usize) {
    let (_, users) = w.server.call("GET", "/api/v1/users", Some(&w.admin), None).await;
    let alice =
        users.as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap()["id"].as_str().unwrap().to_owned();
    let (_, policies) = w.server.call("GET", "/api/v1/policies", Some(&w.admin), None).await;
    let policy =
        policies.as_array().unwrap().iter().find(|p| p["name"] == "ssh").unwrap()["id"].as_str().unwrap().to_owned();
    let now = jiff::Timestamp::now().as_microsecond();
    // Due together, a few seconds from now (after they are all written).
    let due = (now / 1_000_000 + 8) * 1_000_000;
    let mut ids = Vec::new();
    for i in 0..n {
        let r = store
            .create_request(
                &Actor::system(),
                now,
                NewRequest {
                    batch_id: format!("bulk-{i}"),
                    requester_id: alice.clone(),
                    account_id: w.account_id.clone(),
                    asset_id: w.asset_id.clone(),
                    access_type: AccessType::Ssh,
                    policy_id: policy.clone(),
                    emergency: false,
                    start_at: now,
                    end_at: due + (i as i64 % 1000),
                    ticket: None,
                    reason_code: None,
                    comment: None,
                    review_required: false,
                    approved_at_once: true,
                    simultaneous_access: true,
                    notify: vec![],
                },
            )
            .await
            .unwrap();
        ids.push(r.id);
    }
    assert!(jiff::Timestamp::now().as_microsecond() < due, "the requests were written before they came due");
    let mut expired = 0;
    for _ in 0..120 {
        let q = AuditQuery { action: Some("request.expire".into()), limit: 10_000, ..Default::default() };
        expired = store.audit_events(&q).await.unwrap().iter().filter(|e| ids.contains(&e.object_id)).count();
        if expired >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Settle, then count again: no second expiry of any of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let q = AuditQuery { action: Some("request.expire".into()), limit: 10_000, ..Default::default() };
    let events = store.audit_events(&q).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for e in events.iter().filter(|e| ids.contains(&e.object_id)) {
        assert!(seen.insert(e.object_id.clone()), "request {} expired twice", e.object_id);
    }
    assert_eq!((expired, seen.len()), (n, n), "every request expired exactly once");
    for id in ids.iter().step_by(97) {
        assert_eq!(store.request(id).await.unwrap().state, portcullis_core::request::RequestState::Expired);
    }
}

async fn restart_under_load(w: &World, b: &Server, c: &Server) {
    let Db::Postgres(pg, _) = &w.server.db else { unreachable!() };
    // Clients keep creating requests (checkouts of nothing: requests for the SSH account) on
    // A and B while the database restarts; what was acknowledged must be there afterwards.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for node in [&w.server, b] {
        let (url, token, account) = (node.url.clone(), w.alice.clone(), w.account_id.clone());
        let client = node.client();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({ "accounts": [{ "account_id": account, "access_type": "ssh" }] });
                let r = client.post(format!("{url}/api/v1/requests")).bearer_auth(&token).json(&body).send().await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or_default();
                        match v["outcomes"][0]["request"]["id"].as_str() {
                            Some(id) => acked.push(id.to_owned()),
                            None => failed += 1,
                        }
                    }
                    _ => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started =
        |pg: &portcullis_testkit::pg::PgCluster| pg.psql("postgres", "SELECT pg_postmaster_start_time()").unwrap();
    let before = started(pg);
    let pg2 = pg.clone();
    tokio::task::spawn_blocking(move || pg2.restart(Duration::from_secs(2))).await.unwrap();
    assert_ne!(started(pg), before, "the database restarted");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acked, mut failed) = (Vec::new(), 0);
    for l in load {
        let (a, f) = l.await.unwrap();
        acked.extend(a);
        failed += f;
    }
    // Requests during the restart either waited for the database (the pool reconnects) or were
    // refused; none acknowledged may be missing.
    eprintln!("under load: {} acknowledged, {failed} refused while the database restarted", acked.len());
    assert!(!acked.is_empty());
    let store = w.server.store().await;
    for id in &acked {
        store.request(id).await.unwrap_or_else(|e| panic!("acknowledged request {id} lost: {e}"));
    }
    // The nodes answer again, and a revocation through B reaches a session on C.
    for node in [&w.server, b, c] {
        let mut ok = false;
        for _ in 0..50 {
            if node.call("GET", "/healthz", None, None).await.0 == 200 {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(ok, "node {} is healthy again", node.node_name());
    }
    let request = w.request().await;
    let s = interactive_on(w, c);
    live_of(w, b, &request).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, v) = post(b, &w.admin, &format!("/api/v1/requests/{request}/revoke"), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let (_, out) = s.wait(Duration::from_secs(5)).expect("revocation crosses nodes after the database restart");
    assert!(out.contains("revoked"), "{out}");
}

/// Before the first administrator exists, each node prints a bootstrap secret: any one works,
/// once. A node started with keys of its own on a database signed with others is refused with
/// what to copy (else it would break the audit chain and could open no credential).
#[tokio::test]
async fn bootstrap_and_keys_across_nodes() {
    let a = Server::start(Db::postgres());
    let b = a.peer_with(&[]);
    let (secret_a, secret_b) = (a.bootstrap_secret.clone().unwrap(), b.bootstrap_secret.clone().unwrap());
    assert_ne!(secret_a, secret_b);
    // B's banner says which node it is and who else is up.
    let banner = std::fs::read_to_string(b.stdout_path()).unwrap();
    let line = format!("Node: {} (PostgreSQL; other nodes up: {})", b.node_name(), a.node_name());
    assert!(banner.contains(&line), "{banner}");
    let body =
        |secret: &str| json!({ "secret": secret, "username": "admin", "password": crate::harness::ADMIN_PASSWORD });
    // A's secret, used through B (B started after A, yet A's secret still counts).
    let (s, v) = b.call("POST", "/api/v1/bootstrap", None, Some(body(&secret_a))).await;
    assert_eq!(s, 201, "{v}");
    // Used up, both: B's own secret no longer creates anyone, nor is it kept.
    let (s, v) = a.call("POST", "/api/v1/bootstrap", None, Some(body(&secret_b))).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("already_bootstrapped")), "{v}");
    let store = a.store().await;
    for node in [a.node_name(), b.node_name()] {
        assert_eq!(store.setting(&format!("bootstrap_hash:{node}")).await.unwrap(), None);
    }

    let (status, stderr) = a.peer_with_other_keys();
    assert!(!status.success());
    assert!(stderr.contains("is not the key this database's audit log is signed with"), "{stderr}");
    assert!(stderr.contains("Copy keys/ from a server of this database"), "{stderr}");
    // Nothing was written under the wrong key: the chain still verifies.
    let token = a.login("admin", crate::harness::ADMIN_PASSWORD).await;
    let (s, v) = a.call("GET", "/api/v1/audit/verify", Some(&token), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
}
