//! Nothing unauthenticated locks people out of the SSH proxy (issue 13, finding 2): 4,100
//! (more than the proxy's connection limit) connections that never send the SSH identification line, and 100 that send it and then
//! stall, are held open from the same address as the real user — whose `ssh` still gets in,
//! while the silent ones are closed by the server within seconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{text, world_on, world_with};
use crate::harness::Db;

/// The attack holds thousands of sockets: this process (and the server it starts) may open as
/// many files as the hard limit allows, up to `want`.
/// many files as the hard limit allows, up to `want`; returns the limit now.
fn raise_open_files_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        lim.rlim_cur
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_stalling_connections_do_not_lock_people_out() {
    // The attack exceeds the proxy's connection limit (4,096 by default, lower if this
    // machine allows fewer open files).
    let files = raise_open_files_limit(20_000);
    let max = 4096.min(files.saturating_sub(400)).max(300);
    let max_s = max.to_string();
    // Ten seconds to sign in (the default is a minute), so the test need not wait long.
    let env = [("PORTCULLIS_SSH_AUTH_TIMEOUT_SECONDS", "10"), ("PORTCULLIS_SSH_MAX_CONNECTIONS", max_s.as_str())];
    let w = world_with(Db::Sqlite, json!({}), &env).await;
    w.request().await;
    let port = w.server.ssh_port;
    let mut silent = Vec::new();
    for _ in 0..max + 4 {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        silent.push(s);
    }
    let mut stalling = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"SSH-2.0-Stall_1.0\r\n").unwrap();
        stalling.push(s);
    }
    // A real client, while all of them are held open.
    let dest = w.dest();
    let o = w.ssh(&[&dest, "echo still here"], b"");
    assert_eq!(o.status.code(), Some(0), "locked out by unauthenticated connections: {}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "still here");

    // The server closes what never signs in: every silent connection within the
    // identification deadline (10 s) and a little.
    let started = Instant::now();
    let closed = |conns: &[TcpStream]| {
        conns
            .iter()
            .filter(|s| {
                let mut s: &TcpStream = s;
                s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => return true,
                        Ok(_) => continue, // the server's identification line
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                        Err(_) => return false,
                    }
                }
            })
            .count()
    };
    let all_closed = |conns: &[TcpStream], within: Duration| {
        while started.elapsed() < within {
            if closed(conns) == conns.len() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        closed(conns) == conns.len()
    };
    assert!(
        all_closed(&silent, Duration::from_secs(25)),
        "silent connections still open after {:?}",
        started.elapsed()
    );
    // The stalling ones: dropped to make room, or at the sign-in deadline.
    assert!(
        all_closed(&stalling, Duration::from_secs(30)),
        "stalling connections still open after {:?}",
        started.elapsed()
    );
}

/// An unauthenticated client touches no target (issue 13, finding 7): a sign-in naming an
/// inventory account whose asset is a listener that counts connections reaches it; 50 with a
/// wrong password reach nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_target_is_touched_before_sign_in() {
    let w = world_on(Db::Sqlite, json!({})).await;
    let counter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = counter.local_addr().unwrap().port();
    counter.set_nonblocking(true).unwrap();
    let (s, asset) = w
        .server
        .call(
            "POST",
            "/api/v1/assets",
            Some(&w.admin),
            Some(json!({ "name": "decoy", "address": "127.0.0.1", "platform": "linux",
                "protocols": [{ "protocol": "ssh", "port": port }] })),
        )
        .await;
    assert_eq!(s, 201, "{asset}");
    let (s, _) = w
        .server
        .call("POST", "/api/v1/accounts", Some(&w.admin), Some(json!({ "asset_id": asset["id"], "name": "root" })))
        .await;
    assert_eq!(s, 201);
    let accepted = |l: &std::net::TcpListener| {
        let mut n = 0;
        while l.accept().is_ok() {
            n += 1;
        }
        n
    };
    // Signed in (no request for it: refused after sign-in), the proxy does reach the target:
    // the counter works.
    let o = w.ssh(&["alice#root@decoy@127.0.0.1", "true"], b"");
    assert!(!o.status.success(), "{}", text(&o));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(accepted(&counter) >= 1, "the counting listener saw nothing: the test proves nothing\n{}", text(&o));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let mut c = std::process::Command::new("sshpass");
            c.args(["-p", "not the password", "ssh", "-o", "StrictHostKeyChecking=no", "-o"]);
            c.args([
                "UserKnownHostsFile=/dev/null",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ]);
            c.args(["-p", &w.server.ssh_port.to_string(), "alice#root@decoy@127.0.0.1", "true"]);
            c.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            c.spawn().unwrap()
        })
        .collect();
    for mut h in handles {
        let status = h.wait().unwrap();
        assert!(!status.success());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(accepted(&counter), 0, "an unauthenticated client made the proxy connect to a target");
}
