//! The Telnet proxy's added keystroke latency: one byte typed and its echo read back, through
//! the proxy and directly to the same target, alternating. The target is a minimal Telnet
//! service in process (a login prompt, a password prompt, a shell prompt, then it echoes), so
//! the measure is the proxy's relay and nothing of a real shell's scheduling.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{call, Fixture, ALICE_PW, TARGET_PW};
use crate::{percentile, Metric};

/// Starts the echo target on 127.0.0.1; its port.
async fn echo_target() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                for prompt in [&b"login: "[..], b"Password: "] {
                    if s.write_all(prompt).await.is_err() {
                        return;
                    }
                    let mut line = Vec::new();
                    while !line.contains(&b'\n') {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => line.extend_from_slice(&buf[..n]),
                        }
                    }
                }
                if s.write_all(b"\r\nwelcome\r\n$ ").await.is_err() {
                    return;
                }
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

/// Reads until `needle` has arrived (IAC negotiation bytes ignored).
async fn until(s: &mut TcpStream, needle: &[u8]) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("the telnet peer answers")
            .expect("read");
        assert!(n > 0, "closed before {:?}: {}", String::from_utf8_lossy(needle), String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Signs in (through the proxy, or directly) and measures `n` keystroke echoes.
async fn echoes(port: u16, login: &str, password: &str, n: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    until(&mut s, b"login: ").await;
    s.write_all(format!("{login}\r\n").as_bytes()).await.expect("write");
    until(&mut s, b"Password: ").await;
    s.write_all(format!("{password}\r\n").as_bytes()).await.expect("write");
    until(&mut s, b"$ ").await;
    let mut out = Vec::with_capacity(n);
    let mut buf = [0u8; 64];
    for i in 0..n {
        let key = b'a' + (i % 26) as u8;
        let t = Instant::now();
        s.write_all(&[key]).await.expect("write");
        loop {
            let got = s.read(&mut buf).await.expect("read");
            assert!(got > 0, "closed");
            if buf[..got].contains(&key) {
                break;
            }
        }
        out.push(t.elapsed());
    }
    out
}

pub(super) async fn latency(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let target = echo_target().await;
    let asset = call(
        f,
        "POST",
        "/api/v1/assets",
        &f.admin,
        json!({ "name": "tel1", "address": "127.0.0.1", "platform": "network_device", "protocols": [{ "protocol": "telnet", "port": target }] }),
    )
    .await;
    let account =
        call(f, "POST", "/api/v1/accounts", &f.admin, json!({ "asset_id": asset["id"], "name": "bench" })).await;
    let account_id = account["id"].as_str().expect("id").to_owned();
    call(f, "PUT", &format!("/api/v1/accounts/{account_id}/password"), &f.admin, json!({ "password": TARGET_PW }))
        .await;
    let users = call(f, "GET", "/api/v1/users", &f.admin, serde_json::Value::Null).await;
    let alice =
        users.as_array().and_then(|u| u.iter().find(|u| u["username"] == "alice")).expect("alice")["id"].clone();
    let ent =
        call(f, "POST", "/api/v1/entitlements", &f.admin, json!({ "name": "tel", "priority": 2, "user_ids": [alice] }))
            .await;
    call(
        f,
        "POST",
        "/api/v1/policies",
        &f.admin,
        json!({ "entitlement_id": ent["id"], "name": "telnet", "priority": 1, "access_type": "telnet", "scope": { "accounts": [account_id] },
                "settings": { "auto_approve": true, "change_password_after_checkin": false, "idle_timeout_minutes": 120, "simultaneous_access": true } }),
    )
    .await;
    call(
        f,
        "POST",
        "/api/v1/connection-policies",
        &f.admin,
        json!({ "name": "telnet-bench", "protocol": "telnet", "channels": [{ "kind": "shell" }] }),
    )
    .await;
    call(
        f,
        "POST",
        "/api/v1/requests",
        &f.alice,
        json!({ "accounts": [{ "account_id": account_id, "access_type": "telnet" }] }),
    )
    .await;
    let (n, rounds) = if quick { (20, 1) } else { (500, 5) };
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        d.extend(echoes(target, "bench", TARGET_PW, n).await);
        p.extend(echoes(f.telnet_port, "alice#bench@tel1", ALICE_PW, n).await);
    }
    d.sort();
    p.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (d50, d99, p50, p99) =
        (us(percentile(&d, 50.0)), us(percentile(&d, 99.0)), us(percentile(&p, 50.0)), us(percentile(&p, 99.0)));
    out.push(Metric {
        name: "telnet keystroke echo p50: direct".into(),
        value: d50,
        unit: "µs",
        spread: (us(d[0]), d99),
        goal: String::new(),
        note: String::new(),
    });
    out.push(Metric {
        name: "telnet keystroke echo p50: proxy".into(),
        value: p50,
        unit: "µs",
        spread: (us(p[0]), p99),
        goal: "added ≤ 100 µs".into(),
        note: format!("added p50 {:.0} µs, added p99 {:.0} µs; {} keystrokes per route", p50 - d50, p99 - d99, d.len()),
    });
}
