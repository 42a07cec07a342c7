//! The RDP proxy against direct RDP to the same xrdp, in the same run: the latency a key press
//! takes to show on the client's screen (through the proxy against direct), bandwidth through
//! the proxy against direct, recording size per minute of an active desktop, export speed,
//! memory per idle session. Real components as in the tests: xrdp (testkit), FreeRDP (`xfreerdp`)
//! under Xvfb, the `portcullis` binary as its own process. A byte-counting relay in front of
//! xrdp measures what crosses the target leg, for the direct and the proxied client alike.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_testkit::rdp::{desktop, xfreerdp, Xrdp, Xvfb};
use portcullis_testkit::sshd::UnixUser;
use serde_json::{json, Value};

use crate::Metric;

const TARGET_PW: &str = "Bench-Rdp-Target-Pw-1";
const ALICE_PW: &str = "alice bench password 1";

struct Server {
    child: Child,
    api: String,
    rdp_port: u16,
    http: reqwest::Client,
    admin: String,
    alice: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        portcullis_testkit::process::stop(&mut self.child, libc::SIGTERM, Duration::from_secs(10));
    }
}

impl Server {
    async fn call(&self, method: &str, path: &str, token: &str, body: Value) -> Value {
        let req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.api)).bearer_auth(token);
        let req = if body.is_null() { req } else { req.json(&body) };
        let resp = req.send().await.expect("api");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

async fn start_server(dir: &std::path::Path) -> Server {
    let port = portcullis_testkit::free_port();
    let rdp_port = portcullis_testkit::free_port();
    let out = dir.join("stdout");
    let child = Command::new(crate::proxy::binary())
        .arg("serve")
        .env("PORTCULLIS_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_SERVER_TLS", "false")
        .env("PORTCULLIS_SSH_LISTEN", "")
        .env("PORTCULLIS_TELNET_LISTEN", "")
        .env("PORTCULLIS_RDP_LISTEN", format!("127.0.0.1:{rdp_port}"))
        .env("PORTCULLIS_STORAGE_DATA_DIR", dir.join("data"))
        .env("PORTCULLIS_LOG_LEVEL", "warn")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("start portcullis");
    let ready = portcullis_testkit::process::wait_until(Duration::from_secs(120), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("Ready: "))
    });
    assert!(ready, "portcullis did not start");
    let text = std::fs::read_to_string(&out).unwrap();
    let secret = text.lines().map(str::trim).find(|l| l.starts_with("pcb_")).expect("bootstrap secret").to_owned();
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let admin_pw = "bench admin password 1";
    let _ = http
        .post(format!("{api}/api/v1/bootstrap"))
        .json(&json!({ "secret": secret, "username": "admin", "password": admin_pw }))
        .send()
        .await
        .unwrap();
    let login = |u: &'static str, p: &'static str| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let v: Value = http
                .post(format!("{api}/api/v1/auth/login"))
                .json(&json!({ "username": u, "password": p }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["token"].as_str().expect("token").to_owned()
        }
    };
    let admin = login("admin", admin_pw).await;
    let mut s = Server { child, api: api.clone(), rdp_port, http: http.clone(), admin, alice: String::new() };
    let body = json!({ "username": "alice", "display_name": "Alice", "password": ALICE_PW });
    s.call("POST", "/api/v1/users", &s.admin, body).await;
    s.alice = login("alice", ALICE_PW).await;
    s
}

/// A relay in front of xrdp that counts the bytes from the target to the client.
async fn counter(target: u16) -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let down = Arc::new(AtomicU64::new(0));
    let counted = down.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let downlink = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! { _ = up => {}, _ = downlink => {} }
            });
        }
    });
    (port, down)
}

/// An asset for xrdp (through the counter), and an account per user with a request each.
async fn accounts(s: &Server, port: u16, users: &[&UnixUser]) -> Vec<String> {
    let asset = s
        .call(
            "POST",
            "/api/v1/assets",
            &s.admin,
            json!({ "name": "ws1", "address": "127.0.0.1", "platform": "linux", "protocols": [{ "protocol": "rdp", "port": port }] }),
        )
        .await;
    let mut ids = Vec::new();
    for u in users {
        let a = s.call("POST", "/api/v1/accounts", &s.admin, json!({ "asset_id": asset["id"], "name": u.name })).await;
        let id = a["id"].as_str().unwrap().to_owned();
        s.call("PUT", &format!("/api/v1/accounts/{id}/password"), &s.admin, json!({ "password": TARGET_PW })).await;
        ids.push(id);
    }
    let users_v = s.call("GET", "/api/v1/users", &s.admin, Value::Null).await;
    let alice = users_v.as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap()["id"].clone();
    let ent = s
        .call("POST", "/api/v1/entitlements", &s.admin, json!({ "name": "e", "priority": 1, "user_ids": [alice] }))
        .await;
    let settings = json!({ "auto_approve": true, "change_password_after_checkin": false, "idle_timeout_minutes": 120, "max_duration_minutes": 480, "simultaneous_access": true });
    s.call(
        "POST",
        "/api/v1/policies",
        &s.admin,
        json!({ "entitlement_id": ent["id"], "name": "rdp", "priority": 1, "access_type": "rdp", "scope": { "accounts": ids }, "settings": settings }),
    )
    .await;
    let cp =
        json!({ "name": "rdp", "protocol": "rdp", "clients": ["127.0.0.0/8"], "channels": [{ "kind": "clipboard" }] });
    s.call("POST", "/api/v1/connection-policies", &s.admin, cp).await;
    for id in &ids {
        let body = json!({ "accounts": [{ "account_id": id, "access_type": "rdp" }] });
        s.call("POST", "/api/v1/requests", &s.alice, body).await;
    }
    ids
}

/// An X session that changes all the time: a window appears somewhere every quarter second
/// and goes a second later.
fn active_desktop(user: &UnixUser) {
    let script = user.home.join(".xsession");
    let text = "#!/bin/sh\ni=0\nwhile :; do\n  i=$((i+1))\n  xmessage -timeout 1 -bg '#3366cc' -fg yellow -geometry +$((i*37%600))+$((i*53%420)) \"frame $i\" &\n  sleep 0.25\ndone\n";
    std::fs::write(&script, text).unwrap();
    let _ = Command::new("chown").arg(format!("{}:", user.name)).arg(&script).status();
    let _ = Command::new("chmod").arg("755").arg(&script).status();
}

/// An X session with a terminal filling the screen: each key press draws a character.
fn typing_desktop(user: &UnixUser) {
    let script = user.home.join(".xsession");
    std::fs::write(&script, "#!/bin/sh\nexec xterm -geometry 80x30+0+0 -bg black -fg white +cm\n").unwrap();
    let _ = Command::new("chown").arg(format!("{}:", user.name)).arg(&script).status();
    let _ = Command::new("chmod").arg("755").arg(&script).status();
}

/// Key presses into the client window (xdotool on its display) and the time until the
/// client's screen changes, in milliseconds; presses whose echo does not come within 2 s are
/// left out.
fn key_latencies(x: &Xvfb, presses: usize) -> Vec<f64> {
    let xdotool = |args: &[&str]| {
        let _ = Command::new("/usr/bin/xdotool").args(args).env("DISPLAY", &x.display).status();
    };
    xdotool(&["mousemove", "400", "300"]);
    let mut out = Vec::new();
    for i in 0..presses {
        std::thread::sleep(Duration::from_millis(250));
        let before = x.screenshot();
        let key = ((b'a' + (i % 26) as u8) as char).to_string();
        let t0 = Instant::now();
        xdotool(&["key", &key]);
        while t0.elapsed() < Duration::from_secs(2) {
            if x.screenshot().same_share(&before, 800, 600) < 1.0 {
                out.push(t0.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    out
}

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

pub async fn run(quick: bool) -> Vec<Metric> {
    eprintln!("rdp: starting xrdp, Xvfb and portcullis");
    let xrdp = Xrdp::start();
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path()).await;
    let (port, down) = counter(xrdp.port()).await;
    let idle_n = if quick { 2 } else { 4 };
    let active = UnixUser::create(TARGET_PW);
    active_desktop(&active);
    let typist = UnixUser::create(TARGET_PW);
    typing_desktop(&typist);
    let idle: Vec<UnixUser> = (0..idle_n).map(|_| UnixUser::create(TARGET_PW)).collect();
    for u in &idle {
        desktop(u, "idle desktop");
    }
    let mut all: Vec<&UnixUser> = vec![&active, &typist];
    all.extend(idle.iter());
    accounts(&s, port, &all).await;
    let log = |n: &str| dir.path().join(n);
    let secs = if quick { 8 } else { 30 };
    let mut out = Vec::new();

    // Key press to screen update, directly and through the proxy (each through the counting
    // relay), on a terminal.
    let presses = if quick { 5 } else { 40 };
    let mut medians = Vec::new();
    for (via, port, user, pw) in [
        ("direct", port, typist.name.clone(), TARGET_PW),
        ("proxied", s.rdp_port, format!("alice#{}@ws1", typist.name), ALICE_PW),
    ] {
        eprintln!("rdp: key press latency, {via}");
        let client = xfreerdp(&x.display, port, &user, pw, &[], &log(&format!("typing-{via}")));
        tokio::time::sleep(Duration::from_secs(6)).await;
        let samples = tokio::task::block_in_place(|| key_latencies(&x, presses));
        kill(client);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let n = samples.len();
        let (median, spread) = if n == 0 { (f64::NAN, (f64::NAN, f64::NAN)) } else { crate::summarize(samples) };
        medians.push(median);
        out.push(Metric {
            name: format!("RDP key press to screen update, {via}"),
            value: median,
            unit: "ms",
            spread,
            goal: "report".into(),
            note: format!("{n} of {presses} presses echoed (xdotool into xfreerdp, an xterm on the target)"),
        });
    }
    if let [direct, proxied] = medians[..] {
        out.push(Metric {
            name: "RDP key press latency added by the proxy".into(),
            value: proxied - direct,
            unit: "ms",
            spread: (0.0, 0.0),
            goal: "≤ 10 ms".into(),
            note: "median proxied minus median direct".into(),
        });
    }

    // The same active desktop for the same time, directly and through the proxy.
    eprintln!("rdp: bandwidth, direct");
    let direct = xfreerdp(&x.display, port, &active.name, TARGET_PW, &[], &log("direct"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = down.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let direct_bytes = down.load(Ordering::Relaxed) - before;
    kill(direct);
    tokio::time::sleep(Duration::from_secs(2)).await;

    eprintln!("rdp: bandwidth and recording, through the proxy");
    let inband = format!("alice#{}@ws1", active.name);
    let proxied = xfreerdp(&x.display, s.rdp_port, &inband, ALICE_PW, &[], &log("proxied"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let recordings = dir.path().join("data/recordings");
    let size = || -> u64 {
        std::fs::read_dir(&recordings)
            .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    };
    let (before, rec_before) = (down.load(Ordering::Relaxed), size());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let proxied_bytes = down.load(Ordering::Relaxed) - before;
    let recorded = size() - rec_before;
    kill(proxied);
    tokio::time::sleep(Duration::from_secs(2)).await;
    out.push(Metric {
        name: "RDP target-leg bytes, proxy / direct (active desktop)".into(),
        value: proxied_bytes as f64 / direct_bytes.max(1) as f64,
        unit: "ratio",
        spread: (0.0, 0.0),
        goal: "report (the proxy asks for bitmaps only, without bulk compression, so recordings replay)".into(),
        note: format!(
            "{:.0} KiB direct, {:.0} KiB proxied in {secs} s",
            direct_bytes as f64 / 1024.0,
            proxied_bytes as f64 / 1024.0
        ),
    });
    out.push(Metric {
        name: "RDP recording of an active desktop".into(),
        value: recorded as f64 * 60.0 / secs as f64 / 1024.0,
        unit: "KiB/min",
        spread: (0.0, 0.0),
        goal: "report".into(),
        note: "a window appearing every 0.25 s, 800×600".into(),
    });

    // Export: the whole recording of that session decoded into frames.
    let sessions = s.call("GET", "/api/v1/sessions?limit=10", &s.admin, Value::Null).await;
    let session = sessions.as_array().unwrap().first().expect("a session").clone();
    let id = session["id"].as_str().unwrap();
    let length = {
        let start = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.fZ", session["started_at"].as_str().unwrap_or(""));
        let end = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.fZ", session["ended_at"].as_str().unwrap_or(""));
        match (start, end) {
            (Ok(a), Ok(b)) => (b - a).total(jiff::Unit::Second).unwrap_or(secs as f64),
            _ => secs as f64 + 3.0,
        }
    };
    let t0 = Instant::now();
    let tar = s
        .http
        .get(format!("{}/api/v1/sessions/{id}/recording?format=frames", s.api))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let took = t0.elapsed().as_secs_f64();
    out.push(Metric {
        name: "RDP export to PNG frames (session seconds per second)".into(),
        value: length / took,
        unit: "x realtime",
        spread: (0.0, 0.0),
        goal: "report".into(),
        note: format!("{length:.0} s of session in {took:.2} s, {:.0} KiB of frames", tar.len() as f64 / 1024.0),
    });

    // Memory per idle session: the server's resident memory with idle sessions open.
    eprintln!("rdp: memory per idle session");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = s.rss_kib();
    let mut clients = Vec::new();
    for (i, u) in idle.iter().enumerate() {
        let inband = format!("alice#{}@ws1", u.name);
        clients.push(xfreerdp(&x.display, s.rdp_port, &inband, ALICE_PW, &[], &log(&format!("idle{i}"))));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let live = s.call("GET", "/api/v1/sessions?live=true", &s.admin, Value::Null).await;
    let n = live.as_array().map_or(0, Vec::len).max(1);
    let rss_after = s.rss_kib();
    out.push(Metric {
        name: "RDP memory per idle session".into(),
        value: rss_after.saturating_sub(rss_before) as f64 / n as f64 / 1024.0,
        unit: "MiB",
        spread: (0.0, 0.0),
        goal: "≤ 2 MiB".into(),
        note: format!("{n} idle sessions (of {idle_n} started); server RSS {rss_before} → {rss_after} KiB"),
    });
    for c in clients {
        kill(c);
    }
    out
}
