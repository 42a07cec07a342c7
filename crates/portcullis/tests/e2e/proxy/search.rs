//! Searching sessions (R-SES-12): a live session is found within seconds by what was typed and
//! shown; transfers and exec commands are found; filters, bad queries, who may search; the
//! CLI's search and `play --at`; the index on disk holds no plaintext; an index lost while the
//! server was down is rebuilt from the recordings at the next start.

use super::*;

async fn search(w: &World, token: &str, query: &str) -> (u16, Value) {
    w.server.call("GET", &format!("/api/v1/recordings/search?{query}"), Some(token), None).await
}

/// Polls a search until it has a hit (the index commits every second).
async fn found(w: &World, query: &str) -> Value {
    for _ in 0..100 {
        let (s, v) = search(w, &w.admin, query).await;
        assert_eq!(s, 200, "{v}");
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing found for {query}");
}

#[tokio::test]
async fn search_sqlite() {
    search_on(Db::Sqlite).await;
}

#[tokio::test]
async fn search_postgres() {
    search_on(Db::postgres()).await;
}

async fn search_on(db: Db) {
    let sqlite = matches!(db, Db::Sqlite);
    let mut w = world_on(db, json!({})).await;
    let request = w.request().await;
    let mut s = Interactive::start(&w);
    live_sessions(&w, 1).await;
    std::thread::sleep(Duration::from_millis(1500));
    s.send("echo ZEBRA_$((6*7)) && : systemctl stop nginx\n");

    // Live: found by the output and by the typed command, while the session runs.
    let hits = found(&w, "q=ZEBRA_42").await;
    let hit = &hits[0];
    assert_eq!((hit["kind"].as_str(), hit["live"].as_bool()), (Some("output"), Some(true)), "{hits}");
    assert_eq!((hit["username"].as_str(), hit["asset_name"].as_str()), (Some("alice"), Some("db1")), "{hit}");
    assert_eq!(hit["request_id"], request.as_str());
    let hits = found(&w, "q=%22systemctl%20stop%22&kind=command").await;
    let typed = &hits[0];
    assert_eq!(typed["kind"], "command", "{hits}");
    assert!(typed["snippet"].as_str().unwrap().contains("systemctl stop nginx"), "{typed}");
    let at = typed["at_seconds"].as_f64().unwrap();
    assert!(at >= 1.0, "the hit is at its second in the recording: {typed}");
    let [a, b] =
        [typed["highlights"][0][0].as_u64().unwrap() as usize, typed["highlights"][0][1].as_u64().unwrap() as usize];
    assert_eq!(&typed["snippet"].as_str().unwrap()[a..b], "systemctl");
    let session = typed["session_id"].as_str().unwrap().to_owned();

    s.send("exit 0\n");
    let (code, out) = s.wait(Duration::from_secs(20)).expect("the session ends after exit");
    assert_eq!(code, Some(0), "{out}");
    live_or_ended(&w).await;

    // An exec command, and a file uploaded with scp (its name, not its data).
    let o = w.ssh(&[&w.dest(), "cat /etc/hostname"], b"");
    assert!(o.status.success(), "{}", text(&o));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payroll-2026.csv");
    std::fs::write(&file, "QUOKKA-CONTENT\n").unwrap();
    let o = w.scp(&[file.to_str().unwrap(), &format!("{}:", w.scp_dest())]);
    assert!(o.status.success(), "{}", text(&o));
    let hits = found(&w, "q=%2Fetc%2Fhostname&kind=command").await;
    assert_eq!(hits[0]["kind"], "command");
    let hits = found(&w, "q=payroll-2026.csv").await;
    assert_eq!(hits[0]["kind"], "file", "{hits}");
    assert!(hits[0]["snippet"].as_str().unwrap().contains("upload"), "{hits}");
    let (_, v) = search(&w, &w.admin, "q=QUOKKA").await;
    assert_eq!(v, json!([]), "the data of a transfer is not indexed");

    // Filters: user, asset, time; the sessions of a filter without words.
    let (_, v) = search(&w, &w.admin, "q=ZEBRA_42&user=alice&asset=DB1&protocol=ssh&from=1h").await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (_, v) = search(&w, &w.admin, "q=ZEBRA_42&asset=web9").await;
    assert_eq!(v, json!([]));
    let (_, v) = search(&w, &w.admin, "q=ZEBRA_42&to=1h").await;
    assert_eq!(v, json!([]), "nothing before an hour ago");
    let (_, v) = search(&w, &w.admin, "asset=db1").await;
    let sessions = v.as_array().unwrap();
    assert!(sessions.len() >= 3 && sessions.iter().all(|h| h["kind"] == "session"), "{v}");

    // Bad input: a clear error naming the field.
    let (s, v) = search(&w, &w.admin, "q=%22open").await;
    assert_eq!((s, v["code"].as_str()), (422, Some("validation_failed")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("unclosed quote"), "{v}");
    let (s, v) = search(&w, &w.admin, "q=x&from=last%20week").await;
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("7d"), "{v}");
    let (s, v) = search(&w, &w.admin, "q=x&kind=keystrokes").await;
    assert!(s == 422 && v["message"].as_str().unwrap().contains("unknown kind"), "{v}");
    let (s, _) = search(&w, &w.admin, "q=x&limit=0").await;
    assert_eq!(s, 422);

    // Alice ran the session but may not replay it: her search finds nothing; no token, 401.
    let (s, v) = search(&w, &w.alice, "q=ZEBRA_42").await;
    assert_eq!((s, v), (200, json!([])));
    let (s, _) = w.server.call("GET", "/api/v1/recordings/search?q=ZEBRA_42", None, None).await;
    assert_eq!(s, 401);
    // An auditor finds it.
    let (_, auditor) = w.server.user_with_roles(&w.admin, "audrey", &["auditor"]).await;
    let (_, v) = search(&w, &auditor, "q=ZEBRA_42").await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");

    // Every search is audited with its query.
    let (_, page) =
        w.server.call("GET", "/api/v1/audit/events?action=session.search&limit=100", Some(&w.admin), None).await;
    let events = page["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["details"]["q"] == "ZEBRA_42" && e["actor_name"] == "audrey"), "{page}");

    // The CLI: the table names the session and how to replay from the hit; play --at draws
    // what came before at once.
    let pw = [("PORTCULLIS_PASSWORD", crate::harness::ADMIN_PASSWORD)];
    let o = w.server.cli(&["login", "--server", &w.server.url, "--username", "admin"], &pw);
    assert!(o.status.success(), "{}", text(&o));
    let o = w.server.cli(&["recording", "search", "\"systemctl stop\"", "--asset", "db1", "--since", "1h"], &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(&session) && out.contains("alice") && out.contains("command"), "{out}");
    assert!(out.contains(&format!("portcullis recording play {session} --at {}", at.floor())), "{out}");
    let o = w.server.cli(&["recording", "play", &session, "--at", &at.to_string(), "--speed", "1000"], &[]);
    assert!(o.status.success() && text(&o).contains("ZEBRA_42"), "{}", text(&o));
    let o = w.server.cli(&["recording", "search", "zzznothing"], &[]);
    assert!(text(&o).contains("No session matches"), "{}", text(&o));
    let o = w.server.cli(&["recording", "search", "x", "--since", "yesterday"], &[]);
    assert!(!o.status.success() && text(&o).contains("--since: 'yesterday' is not a time"), "{}", text(&o));

    // The web page: hits link to the request's player at their second.
    let (cookie, _) = crate::replies::web_login(&w.server, "admin", crate::harness::ADMIN_PASSWORD, "/").await;
    let (_, _, page) =
        crate::replies::web_get(&w.server, Some(&cookie), "/search?q=%22systemctl+stop%22&since=1h").await;
    assert!(page.contains("<mark>systemctl</mark>"), "{page}");
    assert!(page.contains(&format!("{request}?session={session}&amp;at={at}")), "{page}");
    let (_, _, player) =
        crate::replies::web_get(&w.server, Some(&cookie), &format!("/requests/{request}?session={session}&at={at}"))
            .await;
    assert!(player.contains(&format!("data-start-at=\"{at}\"")), "{player}");

    // In the browser (SQLite run): the page, the hit, the player at the hit.
    if sqlite {
        crate::web::run_browser(
            "search.py",
            "search",
            &[
                ("BASE_URL", &w.server.url),
                ("USER", "admin"),
                ("PASSWORD", crate::harness::ADMIN_PASSWORD),
                ("QUERY", "\"systemctl stop\""),
                ("EXPECT", "ZEBRA_42"),
            ],
        );
    }

    // Nothing of the index is on disk in the clear.
    for (path, bytes) in crate::harness::read_all_files(&w.server.data_dir().join("search")) {
        for needle in [&b"ZEBRA"[..], b"systemctl", b"payroll"] {
            assert!(!bytes.windows(needle.len()).any(|x| x == needle), "plaintext in {}", path.display());
        }
    }

    // The index lost while the server was down: rebuilt from the recordings at the start.
    w.server.stop();
    std::fs::remove_dir_all(w.server.data_dir().join("search")).unwrap();
    w.server.restart();
    let admin = w.server.login("admin", crate::harness::ADMIN_PASSWORD).await;
    let mut again = json!([]);
    for _ in 0..100 {
        let (_, v) = search(&w, &admin, "q=%22systemctl%20stop%22&kind=command").await;
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            again = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again[0]["session_id"], session.as_str(), "{again}");
    assert_eq!(again[0]["at_seconds"].as_f64(), Some(at), "the same second from the recording");
}

/// A policy asking for approval to view recordings (R-REQ-12): replay, export and search text
/// are refused until another approver approves a justified request; nobody approves their own;
/// every step audited.
#[tokio::test]
async fn viewing_recordings_needs_approval() {
    let w = world(json!({ "recording_view_approval": true })).await;
    w.request().await;
    let o = w.ssh(&[&w.dest(), "echo OKAPI_$((5*5))"], b"");
    assert!(String::from_utf8_lossy(&o.stdout).contains("OKAPI_25"), "{}", text(&o));
    let session = live_or_ended(&w).await;
    let (_, auditor) = w.server.user_with_roles(&w.admin, "audrey", &["auditor"]).await;

    // Refused with what to do; verification (no content) is allowed.
    let url = format!("{}/api/v1/sessions/{session}/recording?format=asciicast", w.server.url);
    let resp = w.server.client().get(&url).bearer_auth(&auditor).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "view_approval_required", "{v}");
    assert!(v["message"].as_str().unwrap().contains(&format!("recording request-view {session}")), "{v}");
    let (s, v) =
        w.server.call("GET", &format!("/api/v1/sessions/{session}/recording/verify"), Some(&auditor), None).await;
    assert_eq!((s, v["intact"].as_bool()), (200, Some(true)), "{v}");
    // Search finds the session but withholds the text.
    let hits = found(&w, "q=OKAPI_25").await;
    assert_eq!(
        (hits[0]["view_approval_required"].as_bool(), hits[0]["snippet"].as_str()),
        (Some(true), Some("")),
        "{hits}"
    );

    // Bad asks change nothing; the requester of the session may not ask (she may not replay).
    let path = format!("/api/v1/sessions/{session}/view-requests");
    let (s, v) = post(&w.server, &auditor, &path, json!({ "justification": "why" })).await;
    assert!(s == 422 && v["message"].as_str().unwrap().contains("10 to 1000"), "{v}");
    let (s, _) = post(&w.server, &w.alice, &path, json!({ "justification": "I want to see my own session" })).await;
    assert_eq!(s, 403);

    // The auditor asks (CLI); a second ask while pending is refused.
    let (s, asked) =
        post(&w.server, &auditor, &path, json!({ "justification": "Incident 4711: who stopped nginx" })).await;
    assert_eq!(s, 201, "{asked}");
    assert_eq!((asked["state"].as_str(), asked["requester"].as_str()), (Some("pending"), Some("audrey")), "{asked}");
    let (s, v) = post(&w.server, &auditor, &path, json!({ "justification": "Incident 4711 again, please" })).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("view_pending")), "{v}");
    let id = asked["id"].as_str().unwrap();

    // The web UI: the admin's Recording views page lists it with the session; the request
    // page offers him (who holds no approval) the form to ask instead of the player.
    let (cookie, _) = crate::replies::web_login(&w.server, "admin", crate::harness::ADMIN_PASSWORD, "/").await;
    let (_, _, page) = crate::replies::web_get(&w.server, Some(&cookie), "/recording-views").await;
    assert!(page.contains("Incident 4711: who stopped nginx") && page.contains("alice on "), "{page}");
    let (_, s) = w.server.call("GET", &format!("/api/v1/sessions/{session}"), Some(&w.admin), None).await;
    let request = s["request_id"].as_str().unwrap();
    let (_, _, page) = crate::replies::web_get(&w.server, Some(&cookie), &format!("/requests/{request}")).await;
    assert!(page.contains("Ask to view") && !page.contains("data-cast"), "{page}");

    // She cannot approve her own; the admin sees it in his queue, with the session's facts.
    let (s, v) = post(&w.server, &auditor, &format!("/api/v1/recording-view-requests/{id}/approve"), json!({})).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("own_request")), "{v}");
    let (_, mine) = w.server.call("GET", "/api/v1/recording-view-requests", Some(&auditor), None).await;
    assert_eq!(mine, json!([]), "her own request is not hers to decide");
    let (_, queue) = w.server.call("GET", "/api/v1/recording-view-requests", Some(&w.admin), None).await;
    assert_eq!(queue[0]["id"], id, "{queue}");
    assert_eq!((queue[0]["session_user"].as_str(), queue[0]["asset_name"].as_str()), (Some("alice"), Some("db1")));

    // Approved through the CLI: she may replay and export; search shows the text.
    let admin_pw = [("PORTCULLIS_PASSWORD", crate::harness::ADMIN_PASSWORD)];
    let o = w.server.cli(&["login", "--server", &w.server.url, "--username", "admin"], &admin_pw);
    assert!(o.status.success(), "{}", text(&o));
    let o = w.server.cli(&["recording", "approve-view", id, "--comment", "ok for the incident"], &[]);
    assert!(o.status.success() && text(&o).contains("Approved: audrey may view session"), "{}", text(&o));
    let resp = w.server.client().get(&url).bearer_auth(&auditor).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("OKAPI_25"));
    let (_, hits) = search(&w, &auditor, "q=OKAPI_25").await;
    assert!(hits[0]["snippet"].as_str().unwrap().contains("OKAPI_25"), "{hits}");
    let o = w.server.cli(&["recording", "deny-view", id], &[]);
    assert!(!o.status.success() && text(&o).contains("already approved"), "{}", text(&o));

    // The admin himself has no approval: refused, and a denial is recorded as such.
    let (s, _) = w.server.call("GET", &format!("/api/v1/sessions/{session}/recording"), Some(&w.admin), None).await;
    assert_eq!(s, 403);
    let (_, asked) =
        post(&w.server, &w.admin, &path, json!({ "justification": "Checking the auditor's finding" })).await;
    let (s, denied) = post(
        &w.server,
        &auditor,
        &format!("/api/v1/recording-view-requests/{}/deny", asked["id"].as_str().unwrap()),
        json!({ "comment": "not needed" }),
    )
    .await;
    assert_eq!((s, denied["state"].as_str()), (200, Some("denied")), "{denied}");
    let (_, mine) = w.server.call("GET", "/api/v1/recording-view-requests?mine=true", Some(&w.admin), None).await;
    assert_eq!(mine[0]["state"], "denied", "{mine}");

    // Audited: the asks, the approval, the denial, the export.
    let (_, page) = w.server.call("GET", "/api/v1/audit/events?limit=1000", Some(&w.admin), None).await;
    let actions: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["recording_view.request", "recording_view.approve", "recording_view.deny", "session.recording_export"] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}
