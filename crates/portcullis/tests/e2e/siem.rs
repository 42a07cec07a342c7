//! Every audit event reaches the SIEM: a real rsyslog receiving RFC 5424 over TCP (octet
//! counting), TLS and UDP, and CEF. Nothing is lost when rsyslog restarts mid-stream or is
//! down while events happen and Portcullis itself restarts (the cursor is in the store).

use std::collections::BTreeSet;
use std::time::Duration;

use portcullis_testkit::process::wait_until;
use portcullis_testkit::rsyslog::Rsyslog;
use serde_json::json;

use crate::harness::{Db, Server};

/// The sequence numbers in the received messages (RFC 5424 structured data or CEF).
fn seqs(lines: &[String]) -> BTreeSet<i64> {
    lines
        .iter()
        .filter_map(|l| {
            let at = l.find("seq=\"").map(|i| i + 5)?;
            l[at..].split('"').next()?.parse().ok()
        })
        .collect()
}

async fn head(server: &Server, admin: &str) -> i64 {
    let (_, v) = server.call("GET", "/api/v1/audit/verify", Some(admin), None).await;
    v["head_seq"].as_i64().or_else(|| v["events"].as_i64()).unwrap_or_else(|| panic!("{v}"))
}

/// Waits until the receiver holds every event from 1 to the chain's head.
async fn all_received(server: &Server, admin: &str, r: &Rsyslog, transport: &str) -> (i64, Vec<String>) {
    let want = head(server, admin).await;
    let ok = wait_until(Duration::from_secs(60), || {
        let got = seqs(&r.received(transport));
        (1..=want).all(|s| got.contains(&s))
    });
    let lines = r.received(transport);
    let got = seqs(&lines);
    let missing: Vec<i64> = (1..=want).filter(|s| !got.contains(s)).collect();
    assert!(ok, "events missing at the receiver ({transport}): {missing:?}");
    (want, lines)
}

async fn users(server: &Server, admin: &str, from: usize, n: usize) {
    for i in from..from + n {
        let (s, v) = server
            .call(
                "POST",
                "/api/v1/users",
                Some(admin),
                Some(json!({ "username": format!("user{i}"), "password": "a long enough password" })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
}

async fn over_tcp(db: Db) {
    let mut r = Rsyslog::start();
    let target = format!("tcp://127.0.0.1:{}", r.tcp);
    let mut server = Server::start_with(db, false, &[("PORTCULLIS_SIEM_SYSLOG", &target)]);
    let admin = server.bootstrap().await;
    users(&server, &admin, 0, 5).await;
    let (_, lines) = all_received(&server, &admin, &r, "tcp").await;
    let create = lines.iter().find(|l| l.contains(" user.create ")).expect("a user.create message");
    assert!(create.starts_with("<110>1 ") && create.contains(" portcullis "), "{create}");
    assert!(create.contains("actor=\"admin\"") && create.contains("\"action\":\"user.create\""), "{create}");

    // rsyslog restarts in the middle of a stream of events: nothing is lost.
    let writer = {
        let url = server.url.clone();
        let admin = admin.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
            for i in 100..160 {
                let body = json!({ "username": format!("user{i}"), "password": "a long enough password" });
                let resp = client.post(format!("{url}/api/v1/users")).bearer_auth(&admin).json(&body).send().await;
                assert_eq!(resp.unwrap().status(), 201);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    r.restart();
    writer.await.unwrap();
    all_received(&server, &admin, &r, "tcp").await;

    // Down while events happen, and Portcullis restarts meanwhile: the cursor in the store
    // resumes where delivery stopped.
    r.stop();
    users(&server, &admin, 200, 5).await;
    server.restart();
    let admin = server.login("admin", crate::harness::ADMIN_PASSWORD).await;
    r.restart();
    let (want, lines) = all_received(&server, &admin, &r, "tcp").await;
    assert!(want > 70, "{want}");
    // No secret in any message.
    assert!(!lines.iter().any(|l| l.contains("a long enough password")), "a password reached the SIEM");
}

#[tokio::test]
async fn every_audit_event_reaches_rsyslog_over_tcp_sqlite() {
    over_tcp(Db::Sqlite).await;
}

#[tokio::test]
async fn every_audit_event_reaches_rsyslog_over_tcp_postgres() {
    over_tcp(Db::postgres()).await;
}

/// How many times each sequence number was received.
fn counts(lines: &[String]) -> std::collections::BTreeMap<i64, usize> {
    let mut out = std::collections::BTreeMap::new();
    for l in lines {
        if let Some(seq) = l.find("seq=\"").and_then(|i| l[i + 5..].split('"').next()?.parse::<i64>().ok()) {
            *out.entry(seq).or_insert(0) += 1;
        }
    }
    out
}

/// Two nodes on one database: one forwards (each event once), the other stands by and takes
/// over from the cursor when the first dies.
#[tokio::test]
async fn two_nodes_forward_each_event_once_and_the_survivor_takes_over() {
    let r = Rsyslog::start();
    let target = format!("tcp://127.0.0.1:{}", r.tcp);
    let env = [("PORTCULLIS_SIEM_SYSLOG", target.as_str())];
    let mut first = Server::start_with(Db::postgres(), false, &env);
    let admin = first.bootstrap().await;
    let second = first.peer_with(&env);
    let admin2 = second.login("admin", crate::harness::ADMIN_PASSWORD).await;
    users(&first, &admin, 0, 5).await;
    users(&second, &admin2, 5, 5).await;
    all_received(&first, &admin, &r, "tcp").await;
    // Settled: nothing arrives twice while both run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let twice: Vec<(i64, usize)> = counts(&r.received("tcp")).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "events sent by both nodes: {twice:?}");
    // The first node started alone and holds the lease; the second stands by.
    assert!(second.all_output().contains("stands by"), "{}", second.all_output());

    // The forwarding node dies (no chance to give its lease up): the other takes over.
    first.kill9();
    users(&second, &admin2, 10, 5).await;
    all_received(&second, &admin2, &r, "tcp").await;
    assert!(second.all_output().contains("this node now forwards"), "{}", second.all_output());
}

#[tokio::test]
async fn events_reach_rsyslog_over_tls_and_as_cef_over_udp() {
    let r = Rsyslog::start();
    let tls = format!("tls://127.0.0.1:{}", r.tls);
    let ca = r.ca();
    let server = Server::start_with(
        Db::Sqlite,
        false,
        &[("PORTCULLIS_SIEM_SYSLOG", &tls), ("PORTCULLIS_SIEM_TLS_CA", ca.to_str().unwrap())],
    );
    let admin = server.bootstrap().await;
    users(&server, &admin, 0, 3).await;
    all_received(&server, &admin, &r, "tls").await;

    let udp = format!("udp://127.0.0.1:{}", r.udp);
    let cef =
        Server::start_with(Db::Sqlite, false, &[("PORTCULLIS_SIEM_SYSLOG", &udp), ("PORTCULLIS_SIEM_FORMAT", "cef")]);
    let admin = cef.bootstrap().await;
    // UDP may drop a datagram on a loaded machine: events keep coming until one arrives.
    let mut ok = false;
    for i in 0..30 {
        users(&cef, &admin, i, 1).await;
        ok = wait_until(Duration::from_secs(2), || r.received("udp").iter().any(|l| l.contains("|user.create|")));
        if ok {
            break;
        }
    }
    let lines = r.received("udp");
    assert!(ok, "no CEF message over UDP: {lines:?}");
    let create = lines.iter().find(|l| l.contains("|user.create|")).expect("user.create in CEF");
    assert!(create.contains("suser=admin") && create.contains("externalId="), "{create}");
}
