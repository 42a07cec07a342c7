//! An S3-compatible object store for tests: moto's server (from PyPI, installed into `.venv` by
//! `scripts/test`) on 127.0.0.1, stopped by PID. It keeps objects in memory; `pause` freezes it
//! (SIGSTOP: connections hang, as with an unreachable store) and `resume` thaws it with its
//! objects intact. Requests are plain HTTP (listing works unsigned; objects are read with the writer's credentials).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{signal, stop, wait_until};

pub struct S3 {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn moto() -> PathBuf {
    if let Ok(p) = std::env::var("PORTCULLIS_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
}

impl S3 {
    pub fn start() -> S3 {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
        let mut child = Command::new(moto())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("moto_server (scripts/test installs it into .venv)");
        let up = wait_until(Duration::from_secs(30), || {
            matches!(child.try_wait(), Ok(None)) && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up {
            stop(&mut child, libc::SIGTERM, Duration::from_secs(5));
            panic!("moto_server did not start");
        }
        S3 { child: Some(child), port, dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    fn request(&self, method: &str, path: &str) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("moto");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("response");
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |i| i + 4);
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut body = raw[head_end..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        (status, body)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status, 200, "create bucket: {}", String::from_utf8_lossy(&body));
    }

    /// The keys in `bucket` (at most 1,000).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{bucket}?list-type=2"));
        assert_eq!(status, 200, "list: {}", String::from_utf8_lossy(&body));
        let text = String::from_utf8_lossy(&body);
        text.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_owned).collect()
    }

    /// Freezes the server: connections are accepted by the kernel and never answered.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), libc::SIGSTOP);
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), libc::SIGCONT);
        }
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || body.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
    out
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGCONT);
            stop(&mut c, libc::SIGTERM, Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_objects_and_a_pause() {
        let s3 = S3::start();
        s3.create_bucket("bucket-one");
        assert!(s3.keys("bucket-one").is_empty());
        let (status, _) = s3.request("GET", "/bucket-one/missing");
        assert_eq!(status, 404);
        s3.pause();
        let mut c = TcpStream::connect(("127.0.0.1", s3.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        write!(c, "GET /bucket-one?list-type=2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(c.read(&mut [0u8; 16]).is_err(), "a paused store does not answer");
        s3.resume();
        assert!(s3.keys("bucket-one").is_empty(), "answers again");
    }
}
