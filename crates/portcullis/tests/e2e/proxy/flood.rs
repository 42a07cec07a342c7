//! Nothing unauthenticated locks people out of the SSH proxy (issue 13, finding 2): 4,100
//! connections that never send the SSH identification line, and 100 that send it and then
//! stall, are held open from the same address as the real user — whose `ssh` still gets in,
//! while the silent ones are closed by the server within seconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{text, world_with};
use crate::harness::Db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_stalling_connections_do_not_lock_people_out() {
    // Ten seconds to sign in (the default is a minute), so the test need not wait long.
    let w = world_with(Db::Sqlite, json!({}), &[("PORTCULLIS_SSH_AUTH_TIMEOUT_SECONDS", "10")]).await;
    w.request().await;
    let port = w.server.ssh_port;
    let mut silent = Vec::new();
    for _ in 0..4100 {
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
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(25) {
        n = closed(&silent);
        if n == silent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(n, silent.len(), "silent connections still open after {:?}", started.elapsed());
    // The stalling ones: dropped to make room, or at the sign-in deadline.
    let mut m = 0;
    while started.elapsed() < Duration::from_secs(30) {
        m = closed(&stalling);
        if m == stalling.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(m, stalling.len(), "stalling connections still open after {:?}", started.elapsed());
}
