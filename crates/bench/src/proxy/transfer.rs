//! Bulk transfer: ssh and scp throughput both ways, direct and through the proxy.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Instant;

use super::{Fixture, Route};
use crate::{summarize, Metric};

/// Downloads `bytes` through `route`; returns (seconds, bytes received).
pub(super) fn download(f: &Fixture, route: Route, bytes: u64) -> (f64, u64) {
    let t = Instant::now();
    let mut child = f
        .ssh(route, &[], &format!("head -c {bytes} /dev/zero"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    let _ = child.wait();
    (t.elapsed().as_secs_f64(), got)
}

/// Uploads `bytes` through `route` into `cat > /dev/null`; returns seconds.
pub(super) fn upload(f: &Fixture, route: Route, bytes: u64) -> f64 {
    let t = Instant::now();
    let mut child = f
        .ssh(route, &[], "cat > /dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if input.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    drop(input);
    let _ = child.wait();
    t.elapsed().as_secs_f64()
}

pub(super) fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9)
}

pub(super) async fn throughput(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let bytes: u64 = if quick { 8 << 20 } else { 1 << 30 };
    let runs = if quick { 1 } else { 3 };
    let label = if quick { "8 MiB" } else { "1 GiB" };
    let mut ratios = Vec::new();
    for (kind, op) in [("download", true), ("upload", false)] {
        let mut rates = [Vec::new(), Vec::new()];
        let mut cpu_per_gib = Vec::new();
        for _ in 0..runs {
            for (i, route) in [Route::Direct, Route::Proxy].into_iter().enumerate() {
                let cpu0 = f.cpu_seconds();
                let secs = if op {
                    let (s, got) = download(f, route, bytes);
                    assert_eq!(got, bytes, "{} download lost bytes", route.name());
                    s
                } else {
                    upload(f, route, bytes)
                };
                rates[i].push(mib_s(bytes, secs));
                if route == Route::Proxy {
                    cpu_per_gib.push((f.cpu_seconds() - cpu0) / (bytes as f64 / (1u64 << 30) as f64));
                }
            }
        }
        ratios.push(throughput_metrics(out, &format!("ssh {kind} {label}"), &rates));
        let (cpu, cs) = summarize(cpu_per_gib);
        out.push(Metric {
            name: format!("proxy CPU per GiB relayed ({kind})"),
            value: cpu,
            unit: "s/GiB",
            spread: cs,
            goal: String::new(),
            note: String::new(),
        });
    }
}

/// `scp` of one file both ways, direct and through the proxy.
pub(super) async fn scp(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    use std::os::unix::fs::PermissionsExt;
    let bytes: u64 = if quick { 8 << 20 } else { 1 << 30 };
    let runs = if quick { 1 } else { 3 };
    // Readable by the target's user: the target and the client share this machine.
    let shared = tempfile::Builder::new().prefix("portcullis-bench-scp").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = shared.path().join("src");
    {
        let mut file = std::fs::File::create(&src).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..bytes >> 20 {
            file.write_all(&chunk).unwrap();
        }
    }
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    let src = src.display().to_string();
    let dst = f.dir.path().join("scp-download").display().to_string();
    for (kind, upload) in [("upload", true), ("download", false)] {
        let mut rates = [Vec::new(), Vec::new()];
        for _ in 0..runs {
            for (i, route) in [Route::Direct, Route::Proxy].into_iter().enumerate() {
                let _ = std::fs::remove_file(&dst);
                let mut cmd = if upload {
                    f.scp(route, &src, "{remote}/dev/null")
                } else {
                    f.scp(route, &format!("{{remote}}{src}"), &dst)
                };
                let t = Instant::now();
                let o = cmd.stdin(Stdio::null()).output().unwrap();
                let secs = t.elapsed().as_secs_f64();
                assert!(o.status.success(), "scp {kind} {}: {}", route.name(), String::from_utf8_lossy(&o.stderr));
                if !upload {
                    let got = std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
                    assert_eq!(got, bytes, "scp {} download lost bytes", route.name());
                }
                rates[i].push(mib_s(bytes, secs));
            }
        }
        let _ = std::fs::remove_file(&dst);
        throughput_metrics(out, &format!("scp {kind} {} MiB", bytes >> 20), &rates);
    }
}

/// The direct and proxied rates (MiB/s samples, direct first) as two metrics; returns the
/// ratio of the medians.
pub(super) fn throughput_metrics(out: &mut Vec<Metric>, what: &str, rates: &[Vec<f64>; 2]) -> f64 {
    let (direct, ds) = summarize(rates[0].clone());
    let (proxy, ps) = summarize(rates[1].clone());
    out.push(Metric {
        name: format!("{what}, direct"),
        value: direct,
        unit: "MiB/s",
        spread: ds,
        goal: String::new(),
        note: String::new(),
    });
    out.push(Metric {
        name: format!("{what}, through the proxy (recording on)"),
        value: proxy,
        unit: "MiB/s",
        spread: ps,
        goal: "≥ 0.5 × direct".into(),
        note: format!("ratio {:.2}", proxy / direct),
    });
    proxy / direct
}

/// Content-policy overhead: a text download (`yes` lines, the worst case: every line is
/// examined) through the proxy with 20 content rules (10 on output, 10 on commands) against
/// none, alternating, same run (goal: < 10 % slower).
pub(super) async fn content(f: &Fixture, quick: bool, out: &mut Vec<Metric>) {
    let bytes: u64 = if quick { 4 << 20 } else { 256 << 20 };
    let runs = if quick { 1 } else { 5 };
    let list = super::call(f, "GET", "/api/v1/connection-policies", &f.admin, serde_json::Value::Null).await;
    let id = list[0]["id"].as_str().expect("the default connection policy").to_owned();
    let mut spec = list[0].clone();
    for k in ["id", "position", "group_names", "created_at", "updated_at"] {
        spec.as_object_mut().map(|o| o.remove(k));
    }
    let output = [
        "BEGIN (RSA|OPENSSH|EC) PRIVATE KEY",
        "(?i)password\\s*[:=]",
        "AKIA[0-9A-Z]{16}",
        "\\b4[0-9]{12}(?:[0-9]{3})?\\b",
        "(?i)segmentation fault",
        "Permission denied",
        "^root:[^:]*:0:0:",
        "(?i)secret[_-]?key",
        "xox[baprs]-[0-9a-zA-Z-]+",
        "ghp_[0-9A-Za-z]{36}",
    ];
    let commands = [
        "^rm -rf /",
        "^shutdown",
        "^reboot",
        "^mkfs",
        "^dd if=",
        "^iptables -F",
        "^chmod -R 777 /",
        "^userdel",
        "^passwd",
        "^history -c",
    ];
    let rules: Vec<serde_json::Value> = output
        .iter()
        .map(|p| serde_json::json!({ "on": "output", "pattern": p, "action": "alert" }))
        .chain(commands.iter().map(|p| serde_json::json!({ "on": "command", "pattern": p, "action": "terminate" })))
        .collect();
    let path = format!("/api/v1/connection-policies/{id}");
    let command = format!("yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c {bytes}");
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (i, with) in [false, true].into_iter().enumerate() {
            spec["content"] = if with { serde_json::json!(rules) } else { serde_json::json!([]) };
            super::call(f, "PUT", &path, &f.admin, spec.clone()).await;
            rates[i].push(text_download(f, &command, bytes));
        }
    }
    spec["content"] = serde_json::json!([]);
    super::call(f, "PUT", &path, &f.admin, spec).await;
    let (plain, ps) = summarize(rates[0].clone());
    let (watched, ws) = summarize(rates[1].clone());
    let label = if quick { "4 MiB" } else { "256 MiB" };
    out.push(Metric {
        name: format!("text download {label} through the proxy, no content rules"),
        value: plain,
        unit: "MiB/s",
        spread: ps,
        goal: String::new(),
        note: String::new(),
    });
    out.push(Metric {
        name: format!("text download {label} through the proxy, 20 content rules"),
        value: watched,
        unit: "MiB/s",
        spread: ws,
        goal: "≥ 0.9 × without".into(),
        note: format!("overhead {:.1} %", (1.0 - watched / plain) * 100.0),
    });
}

/// Search indexing's cost on the proxy (goal: < 5 % slower): a text download (`yes` lines:
/// every byte is text the index takes) through a server that indexes sessions against one that
/// does not (`storage.search_index = false`), alternating, same run.
pub(super) async fn indexing(f: &Fixture, plain: Fixture, quick: bool, out: &mut Vec<Metric>) {
    let bytes: u64 = if quick { 4 << 20 } else { 256 << 20 };
    let runs = if quick { 1 } else { 5 };
    let command = format!(
        "yes 'Nov 30 10:27:11 db1 postgres[2211]: LOG: checkpoint complete: wrote 1311 buffers' | head -c {bytes}"
    );
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (i, fx) in [&plain, f].into_iter().enumerate() {
            rates[i].push(text_download(fx, &command, bytes));
        }
    }
    let (off, os) = summarize(rates[0].clone());
    let (on, ns) = summarize(rates[1].clone());
    let label = if quick { "4 MiB" } else { "256 MiB" };
    out.push(Metric {
        name: format!("text download {label} through the proxy, search index off"),
        value: off,
        unit: "MiB/s",
        spread: os,
        goal: String::new(),
        note: String::new(),
    });
    out.push(Metric {
        name: format!("text download {label} through the proxy, indexed"),
        value: on,
        unit: "MiB/s",
        spread: ns,
        goal: String::new(),
        note: String::new(),
    });
    out.push(Metric {
        name: "search indexing overhead on text throughput".into(),
        value: (1.0 - on / off) * 100.0,
        unit: "%",
        spread: (0.0, 0.0),
        goal: "< 5".into(),
        note: format!("medians of {runs} alternating runs each"),
    });
}

/// Runs `command` through the proxy, reading its `bytes` of output; returns MiB/s.
fn text_download(f: &Fixture, command: &str, bytes: u64) -> f64 {
    let t = Instant::now();
    let mut child = f
        .ssh(super::Route::Proxy, &[], command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let got = std::io::copy(&mut stdout, &mut std::io::sink()).unwrap_or(0);
    let _ = child.wait();
    assert_eq!(got, bytes, "the text download lost bytes");
    mib_s(bytes, t.elapsed().as_secs_f64())
}
