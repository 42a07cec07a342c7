//! Interactive use: keystroke latency, session footprint, connection setup and sign-in capacity.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{call, Fixture, Route, ALICE_PW};
use crate::{percentile, summarize, Metric};

/// Starts `command` (which prints READY) on a pty through `route`; returns the client, its
/// stdin still in place, and its output read up to READY.
pub(super) fn until_ready(f: &Fixture, route: Route, command: &str) -> (Child, std::process::ChildStdout) {
    let mut child = f
        .ssh(route, &["-tt"], command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut output = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 1];
    while !seen.ends_with(b"READY") {
        if output.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        seen.push(b[0]);
    }
    (child, output)
}

/// Keystroke echo round trips through a pty running `stty raw -echo; cat`.
pub(super) fn echo_latency(f: &Fixture, route: Route, n: usize) -> Vec<Duration> {
    let (mut child, mut output) = until_ready(f, route, "stty raw -echo; echo READY; cat");
    let mut input = child.stdin.take().unwrap();
    let mut b = [0u8; 1];
    // Whatever follows READY (its line end) is skipped by the echo loop below.
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let byte = b'a' + (i % 26) as u8;
        let t = Instant::now();
        input.write_all(&[byte]).unwrap();
        input.flush().unwrap();
        loop {
            if output.read(&mut b).unwrap_or(0) == 0 {
                break;
            }
            if b[0] == byte {
                break;
            }
        }
        samples.push(t.elapsed());
    }
    let _ = child.kill();
    let _ = child.wait();
    samples.sort();
    samples
}

/// Opens `n` proxied interactive sessions with in-process russh clients, each running `cat`
/// on a pty; `active`: each sends a byte every 100 ms. Returns the handles (dropping them
/// closes the sessions).
pub(super) async fn open_sessions(f: &Fixture, n: usize, active: bool) -> Vec<tokio::task::JoinHandle<()>> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(n.max(1));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let port = f.ssh_port;
        let user = format!("alice#{}@db1", f.user.name);
        let sem = sem.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.unwrap();
            let target = portcullis_connect::Target {
                host: "127.0.0.1".into(),
                port,
                host_key: None,
                timeout: Duration::from_secs(60),
            };
            let Ok(client) = portcullis_connect::session_with_password(&target, &user, ALICE_PW).await else { return };
            let handle = client.into_handle();
            let Ok(channel) = handle.channel_open_session().await else { return };
            let _ = channel.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await;
            let _ = channel.exec(true, "cat").await;
            drop(permit);
            let _ = ready.send(()).await;
            let (mut read, write) = channel.split();
            let reader = tokio::spawn(async move { while read.wait().await.is_some() {} });
            loop {
                if active && write.data_bytes(vec![b'.']).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            reader.abort();
            drop(handle);
        }));
    }
    drop(ready_tx);
    for _ in 0..n {
        if tokio::time::timeout(Duration::from_secs(300), ready_rx.recv()).await.ok().flatten().is_none() {
            break;
        }
    }
    tasks
}

pub(super) async fn latency(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let (n, rounds) = if quick { (20, 1) } else { (300, 5) };
    let background = if quick { 2 } else { 200 };
    for (label, load) in [("1 session", 0usize), ("with background load", background)] {
        let tasks = if load > 0 { open_sessions(f, load, true).await } else { Vec::new() };
        // Rounds alternate the routes, so a noisy moment of the shared machine falls on both.
        let (mut d, mut p) = (Vec::new(), Vec::new());
        let mut switches = Vec::new();
        for _ in 0..rounds {
            d.extend(echo_latency(f, Route::Direct, n));
            let (cs0, cpu0) = (f.context_switches(), f.cpu_seconds());
            p.extend(echo_latency(f, Route::Proxy, n));
            // Includes the session's sign-in and end: an upper bound per keystroke.
            switches.push(((f.context_switches() - cs0) as f64 / n as f64, (f.cpu_seconds() - cpu0) / n as f64));
        }
        d.sort();
        p.sort();
        for t in &tasks {
            t.abort();
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let (d50, d99, p50, p99) =
            (us(percentile(&d, 50.0)), us(percentile(&d, 99.0)), us(percentile(&p, 50.0)), us(percentile(&p, 99.0)));
        let label = if load > 0 { format!("{label} ({load} active sessions)") } else { label.to_owned() };
        out.push(Metric {
            name: format!("keystroke echo p50, {label}: direct"),
            value: d50,
            unit: "µs",
            spread: (us(d[0]), d99),
            goal: String::new(),
            note: String::new(),
        });
        out.push(Metric {
            name: format!("keystroke echo p50, {label}: proxy"),
            value: p50,
            unit: "µs",
            spread: (us(p[0]), p99),
            goal: "added ≤ 100 µs".into(),
            note: if load == 0 {
                format!(
                    "added p50 {:.0} µs, added p99 {:.0} µs (goal ≤ 300 µs); proxy per keystroke, its share of the sign-in included: {:.1} context switches, {:.0} µs CPU",
                    p50 - d50,
                    p99 - d99,
                    summarize(switches.iter().map(|s| s.0).collect()).0,
                    summarize(switches.iter().map(|s| s.1 * 1e6).collect()).0
                )
            } else {
                format!("added p50 {:.0} µs, added p99 {:.0} µs (goal ≤ 300 µs)", p50 - d50, p99 - d99)
            },
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(super) async fn footprint(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let n = if quick { 5 } else { 1000 };
    let before = f.rss_settled().await;
    let tasks = open_sessions(f, n, false).await;
    let live = call(f, "GET", "/api/v1/sessions?live=true&limit=1000", &f.admin, Value::Null).await;
    let opened = live.as_array().map_or(0, Vec::len);
    let during = f.rss_settled().await;
    for t in &tasks {
        t.abort();
    }
    let per = (during.saturating_sub(before)) as f64 / opened.max(1) as f64;
    out.push(Metric {
        name: format!("proxy memory per idle interactive session ({opened} open)"),
        value: per,
        unit: "KiB",
        spread: (before as f64, during as f64),
        goal: "≤ 256 KiB".into(),
        note: format!("RSS {before} KiB before, {during} KiB with {opened} sessions"),
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
}

pub(super) async fn setup(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let n = if quick { 3 } else { 40 };
    let mut rates = Vec::new();
    for route in [Route::Direct, Route::Proxy] {
        let mut times = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let o = f.ssh(route, &[], "echo x").stdin(Stdio::null()).output().unwrap();
            assert!(o.status.success(), "{} connect failed: {}", route.name(), String::from_utf8_lossy(&o.stderr));
            times.push(t.elapsed());
        }
        times.sort();
        let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
        rates.push((n as f64 / total, percentile(&times, 50.0)));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    out.push(Metric {
        name: "OpenSSH sessions per second (sequential), direct".into(),
        value: rates[0].0,
        unit: "/s",
        spread: (0.0, 0.0),
        goal: String::new(),
        note: format!("time to first byte p50 {:.1} ms", ms(rates[0].1)),
    });
    out.push(Metric {
        name: "OpenSSH sessions per second (sequential), proxy".into(),
        value: rates[1].0,
        unit: "/s",
        spread: (0.0, 0.0),
        goal: "≥ 0.8 × direct; added TTFB ≤ 15 ms".into(),
        note: format!(
            "ratio {:.2}; time to first byte p50 {:.1} ms (added {:.1} ms)",
            rates[1].0 / rates[0].0,
            ms(rates[1].1),
            ms(rates[1].1) - ms(rates[0].1)
        ),
    });
}

/// How a load client signs in to the proxy.
#[derive(Clone, Copy)]
enum SignIn {
    Password,
    Key,
}

/// The proxy's sign-in capacity: `total` complete sign-ins (client handshake, user
/// authentication, request lookup, session start, the proxy's login to the target, session
/// end) from 16 concurrent in-process clients.
async fn sign_ins(f: &Fixture, how: SignIn, asset: &str, account: &str, total: usize) -> (usize, f64) {
    let t = Instant::now();
    let mut handles = Vec::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let key = std::sync::Arc::new(portcullis_vault::Plaintext::new(f.alice_key.expose().to_vec()));
    for _ in 0..total {
        let port = f.ssh_port;
        let user = format!("alice#{account}@{asset}");
        let sem = sem.clone();
        let key = key.clone();
        handles.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            let target = portcullis_connect::Target {
                host: "127.0.0.1".into(),
                port,
                host_key: None,
                timeout: Duration::from_secs(60),
            };
            let client = match how {
                SignIn::Password => portcullis_connect::session_with_password(&target, &user, ALICE_PW).await,
                SignIn::Key => match portcullis_connect::connect_session(&target).await {
                    Ok(mut c) => {
                        let login = portcullis_connect::Login {
                            username: &user,
                            credential: portcullis_connect::Credential::PrivateKey(&key),
                        };
                        c.authenticate(login).await.map(|()| c)
                    }
                    Err(e) => Err(e),
                },
            };
            match client {
                // Signed in means the proxy accepted the target login too; opening a channel
                // proves the session is usable.
                Ok(client) => {
                    let ok = client.handle().channel_open_session().await.is_ok();
                    client.close().await;
                    ok
                }
                Err(_) => false,
            }
        }));
    }
    let mut ok = 0;
    for h in handles {
        if h.await.unwrap_or(false) {
            ok += 1;
        }
    }
    (ok, ok as f64 / t.elapsed().as_secs_f64())
}

pub(super) async fn signins(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let cases = [
        ("password, real sshd target", SignIn::Password, "db1", f.user.name.clone()),
        ("public key, real sshd target", SignIn::Key, "db1", f.user.name.clone()),
        ("password, null target", SignIn::Password, "null1", "bench".to_owned()),
        ("public key, null target (the proxy's own capacity)", SignIn::Key, "null1", "bench".to_owned()),
    ];
    for (label, how, asset, account) in cases {
        // The null target is fast: more sign-ins for a stable rate.
        let total = match (quick, asset) {
            (true, _) => 6,
            (false, "null1") => 1000,
            (false, _) => 300,
        };
        let cpu0 = f.cpu_seconds();
        let (ok, rate) = sign_ins(f, how, asset, &account, total).await;
        let cpu_ms = (f.cpu_seconds() - cpu0) * 1000.0 / ok.max(1) as f64;
        out.push(Metric {
            name: format!("proxy sign-ins per second, {label}, {ok}/{total} ok"),
            value: rate,
            unit: "/s",
            spread: (0.0, 0.0),
            goal: "≥ 300/s".into(),
            note: format!("16 concurrent in-process russh clients; proxy CPU {cpu_ms:.1} ms per sign-in"),
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
