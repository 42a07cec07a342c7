//! Recording size and speed, and how fast a revocation ends live sessions.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::interactive::until_ready;
use super::{call, request, Fixture, Route};
use crate::{percentile, Metric};

pub(super) async fn recording(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    // A busy shell: top refreshing twice a second.
    let secs = if quick { 3 } else { 30 };
    let before = f.recordings_bytes();
    let _ = f
        .ssh(Route::Proxy, &["-tt"], &format!("timeout --foreground {secs} top -b -d 0.5"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_min = (f.recordings_bytes() - before) as f64 * 60.0 / secs as f64 / 1024.0;
    out.push(Metric {
        name: "recording of a busy shell (top -b -d 0.5)".into(),
        value: per_min,
        unit: "KiB/min",
        spread: (0.0, 0.0),
        goal: "well under 50–250 KB/min".into(),
        note: String::new(),
    });

    // Bulk: incompressible data.
    let bytes: u64 = if quick { 8 << 20 } else { 1 << 30 };
    let before = f.recordings_bytes();
    let o = f
        .ssh(Route::Proxy, &[], &format!("head -c {bytes} /dev/urandom"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(o.is_ok());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = f.recordings_bytes() - before;
    out.push(Metric {
        name: format!("recording size per byte of bulk random data ({} MiB)", bytes >> 20),
        value: stored as f64 / bytes as f64,
        unit: "×",
        spread: (0.0, 0.0),
        goal: "≤ 1.05 ×".into(),
        note: format!("{stored} bytes stored"),
    });
    let sessions = call(f, "GET", "/api/v1/sessions?limit=1", &f.admin, Value::Null).await;
    let id = sessions[0]["id"].as_str().unwrap().to_owned();
    let t = Instant::now();
    let v = call(f, "GET", &format!("/api/v1/sessions/{id}/recording/verify"), &f.admin, Value::Null).await;
    let verify_s = t.elapsed().as_secs_f64();
    assert_eq!(v["intact"], true, "{v}");
    let t = Instant::now();
    let mut resp = f
        .http
        .get(format!("{}/api/v1/sessions/{id}/recording?format=events", f.api))
        .bearer_auth(&f.admin)
        .send()
        .await
        .unwrap();
    let mut exported = 0u64;
    while let Ok(Some(c)) = resp.chunk().await {
        exported += c.len() as u64;
    }
    let export_s = t.elapsed().as_secs_f64();
    out.push(Metric {
        name: format!("recording verify, {} MiB session", bytes >> 20),
        value: verify_s,
        unit: "s",
        spread: (0.0, 0.0),
        goal: String::new(),
        note: String::new(),
    });
    out.push(Metric {
        name: format!("recording export (events), {} MiB session", bytes >> 20),
        value: export_s,
        unit: "s",
        spread: (0.0, 0.0),
        goal: String::new(),
        note: format!("{exported} bytes exported"),
    });
}

pub(super) async fn revocation(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let runs = if quick { 2 } else { 100 };
    let mut times = Vec::new();
    for _ in 0..runs {
        let id = request(f).await;
        let (mut child, mut output) = until_ready(f, Route::Proxy, "echo READY; cat");
        let t = Instant::now();
        call(f, "POST", &format!("/api/v1/requests/{id}/revoke"), &f.admin, json!({})).await;
        let mut sink = Vec::new();
        let _ = output.read_to_end(&mut sink);
        let _ = child.wait();
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    out.push(Metric {
        name: format!("revocation to the client's end of session ({runs} runs)"),
        value: ms(percentile(&times, 50.0)),
        unit: "ms",
        spread: (ms(times[0]), ms(percentile(&times, 99.0))),
        goal: "< 1 s".into(),
        note: format!("p99 {:.1} ms", ms(percentile(&times, 99.0))),
    });
    request(f).await;
}
