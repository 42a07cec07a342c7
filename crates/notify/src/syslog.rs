//! The SIEM forwarder: reads the audit chain after its cursor and writes each event to a
//! syslog receiver over UDP, TCP or TLS.
//!
//! Guarantees. Over TCP and TLS, at least once: the cursor (kept in the store) moves past an
//! event only after the event was written and the connection then stayed up for a settling
//! second; when the connection drops, the forwarder reconnects (with back-off) and sends again
//! from the cursor, so the receiver may see an event twice, never zero times. Each message
//! carries the event's sequence number for de-duplication. Over UDP nothing can be known of
//! delivery: the cursor follows what was sent. A restart of Portcullis resumes at the cursor.
//! The forwarder only reads committed events: it never slows or blocks the workflow.
//!
//! Several nodes: each runs a forwarder, but only the one holding the cursor's lease in the
//! store sends; it renews the lease as it goes, and gives it up when it stops. The others stand
//! by and take over when the lease runs out (a node that died), from the cursor. A node that
//! lost its lease (paused longer than the lease) can no longer move the cursor and stands by.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_app::App;
use portcullis_store::AuditQuery;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpStream, UdpSocket};

use crate::format::{message, octet_counted, Format, Origin};

/// The cursor's name in the store.
pub const CURSOR: &str = "syslog";
/// Events read and sent at a time.
const BATCH: i64 = 1000;
/// How long a written event must be followed by a live connection before the cursor passes it.
const SETTLE: Duration = Duration::from_secs(1);
/// How often the chain is read when the forwarder has caught up.
const POLL: Duration = Duration::from_millis(200);
/// How long the cursor's lease holds without renewal.
const LEASE: Duration = Duration::from_secs(15);
/// How often the holder renews it.
const RENEW: Duration = Duration::from_secs(5);
/// The largest UDP datagram sent (longer messages are cut).
const UDP_MAX: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Where events go: `udp://HOST:PORT`, `tcp://HOST:PORT` or `tls://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        let bad = || format!("'{s}' is not a syslog target; write udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT");
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        let transport = match scheme {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(bad()),
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Target { transport, host: host.to_owned(), port })
    }
}

#[derive(Debug, Clone)]
pub struct SyslogConfig {
    pub target: Target,
    pub format: Format,
    /// PEM file of the certificate authority that signed the receiver's certificate (TLS);
    /// none: the public web PKI roots.
    pub tls_ca: Option<PathBuf>,
    pub app_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("cannot read the syslog TLS CA file {0}: {1}")]
    Ca(PathBuf, String),
    #[error("'{0}' is not a valid TLS server name")]
    ServerName(String),
}

enum Conn {
    Udp(UdpSocket),
    Tcp(BufWriter<TcpStream>),
    Tls(Box<BufWriter<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Conn {
    async fn send(&mut self, framed_or_plain: &str) -> std::io::Result<()> {
        match self {
            Conn::Udp(s) => {
                let bytes = framed_or_plain.as_bytes();
                s.send(&bytes[..bytes.len().min(UDP_MAX)]).await.map(|_| ())
            }
            Conn::Tcp(s) => s.write_all(octet_counted(framed_or_plain).as_bytes()).await,
            Conn::Tls(s) => s.write_all(octet_counted(framed_or_plain).as_bytes()).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Udp(_) => Ok(()),
            Conn::Tcp(s) => s.flush().await,
            Conn::Tls(s) => s.flush().await,
        }
    }

    /// Whether the receiver is still there: it never sends anything, so an end of stream or
    /// an error means it went away. (A read, not a peek: under TLS it also takes the
    /// receiver's session tickets.)
    async fn alive(&mut self) -> bool {
        let mut buf = [0u8; 512];
        let read = match self {
            Conn::Udp(_) => return true,
            Conn::Tcp(s) => tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await,
            Conn::Tls(s) => tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await,
        };
        !matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    }

    fn confirms(&self) -> bool {
        !matches!(self, Conn::Udp(_))
    }
}

pub struct Forwarder {
    app: App,
    /// This forwarder's name on the cursor's lease.
    holder: String,
    config: SyslogConfig,
    origin: Origin,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Forwarder {
    pub fn new(app: App, config: SyslogConfig) -> Result<Forwarder, SyslogError> {
        let tls = if config.target.transport == Transport::Tls {
            let mut roots = rustls::RootCertStore::empty();
            match &config.tls_ca {
                Some(path) => {
                    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                        .map_err(|e| SyslogError::Ca(path.clone(), e.to_string()))?
                        .collect::<Result<_, _>>()
                        .map_err(|e| SyslogError::Ca(path.clone(), e.to_string()))?;
                    if certs.is_empty() {
                        return Err(SyslogError::Ca(path.clone(), "it holds no certificate".into()));
                    }
                    for c in certs {
                        roots.add(c).map_err(|e| SyslogError::Ca(path.clone(), e.to_string()))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            ServerName::try_from(config.target.host.clone())
                .map_err(|_| SyslogError::ServerName(config.target.host.clone()))?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| SyslogError::Ca(PathBuf::new(), e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(client)))
        } else {
            None
        };
        let origin = Origin::here(&config.app_name);
        let holder = format!("{}/{}/{:016x}", origin.hostname, std::process::id(), rand_u64());
        Ok(Forwarder { app, holder, config, origin, tls })
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        let t = &self.config.target;
        let addr = format!("{}:{}", t.host, t.port);
        match t.transport {
            Transport::Udp => {
                let bind = if t.host.contains(':') { "[::]:0" } else { "0.0.0.0:0" };
                let s = UdpSocket::bind(bind).await?;
                s.connect(&addr).await?;
                Ok(Conn::Udp(s))
            }
            Transport::Tcp => {
                let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr)).await??;
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(BufWriter::with_capacity(256 * 1024, s)))
            }
            Transport::Tls => {
                let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr)).await??;
                s.set_nodelay(true)?;
                let name = ServerName::try_from(t.host.clone())
                    .map_err(|_| std::io::Error::other("invalid TLS server name"))?;
                let connector = self.tls.clone().ok_or_else(|| std::io::Error::other("no TLS configuration"))?;
                let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, s)).await??;
                Ok(Conn::Tls(Box::new(BufWriter::with_capacity(256 * 1024, tls))))
            }
        }
    }

    /// Takes or renews the cursor's lease.
    async fn lease(&self) -> bool {
        let now = self.app.now();
        match self.app.store.lease_delivery_cursor(CURSOR, &self.holder, now, now + LEASE.as_micros() as i64).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "syslog forwarder cannot take its lease on the cursor; retrying");
                false
            }
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let store = &self.app.store;
        let target = format!("{:?}", self.config.target);
        let mut backoff = Duration::from_millis(250);
        let mut failing = false;
        let mut standing_by = false;
        loop {
            if *stop.borrow() {
                return;
            }
            if !self.lease().await {
                if !standing_by {
                    tracing::info!("another node forwards the audit events to the SIEM; this one stands by");
                    standing_by = true;
                }
                if sleep_or_stop(&mut stop, RENEW).await {
                    return;
                }
                continue;
            }
            if standing_by {
                tracing::info!("this node now forwards the audit events to the SIEM");
                standing_by = false;
            }
            let cursor = match store.delivery_cursor(CURSOR).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "syslog forwarder cannot read its cursor; retrying");
                    if sleep_or_stop(&mut stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            let mut conn = match self.connect().await {
                Ok(c) => c,
                Err(e) => {
                    if !failing {
                        tracing::warn!(target = %target, error = %e, "cannot reach the syslog receiver; retrying with back-off");
                        failing = true;
                    }
                    if sleep_or_stop(&mut stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            if failing {
                tracing::info!(target = %target, from_seq = cursor, "syslog receiver reached; sending from the cursor");
            }
            backoff = Duration::from_millis(250);
            match self.session(&mut conn, cursor, &mut stop).await {
                Ok(()) => {
                    let _ = store.release_delivery_cursor(CURSOR, &self.holder).await;
                    return;
                }
                Err(why) => {
                    tracing::warn!(target = %target, error = %why, "syslog forwarding interrupted; it resumes from the cursor");
                    failing = true;
                }
            }
        }
    }

    /// Sends on one connection from `cursor` until it fails (`Err`) or `stop` (`Ok`).
    async fn session(
        &self,
        conn: &mut Conn,
        mut cursor: i64,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), String> {
        let store = &self.app.store;
        let mut next = cursor;
        let mut in_flight: VecDeque<(i64, Instant)> = VecDeque::new();
        let mut renewed = Instant::now();
        loop {
            if renewed.elapsed() >= RENEW {
                if !self.lease().await {
                    return Err("the lease on the cursor went to another node".into());
                }
                renewed = Instant::now();
            }
            let q = AuditQuery { after_seq: Some(next), limit: BATCH, ..AuditQuery::default() };
            let events = store.audit_events(&q).await.map_err(|e| format!("reading the audit chain: {e}"))?;
            for e in &events {
                conn.send(&message(e, &self.origin, self.config.format)).await.map_err(|e| e.to_string())?;
            }
            if let Some(last) = events.last() {
                conn.flush().await.map_err(|e| e.to_string())?;
                next = last.seq;
                in_flight.push_back((next, Instant::now()));
            }
            if !conn.alive().await {
                return Err("the receiver closed the connection".into());
            }
            let mut settled = cursor;
            if conn.confirms() {
                while let Some((seq, at)) = in_flight.front().copied() {
                    if at.elapsed() < SETTLE {
                        break;
                    }
                    settled = seq;
                    in_flight.pop_front();
                }
            } else {
                settled = next;
                in_flight.clear();
            }
            if settled > cursor {
                let held = store
                    .set_delivery_cursor(CURSOR, &self.holder, settled, self.app.now())
                    .await
                    .map_err(|e| format!("saving the cursor: {e}"))?;
                if !held {
                    return Err("the lease on the cursor went to another node".into());
                }
                cursor = settled;
            }
            if (events.len() as i64) < BATCH && sleep_or_stop(stop, POLL).await {
                // Stopping: what was written gets its settling time if the connection holds.
                let _ = conn.flush().await;
                if conn.confirms() && !in_flight.is_empty() {
                    tokio::time::sleep(SETTLE).await;
                    if !conn.alive().await {
                        return Ok(());
                    }
                }
                let _ = store.set_delivery_cursor(CURSOR, &self.holder, next, self.app.now()).await;
                return Ok(());
            }
        }
    }
}

/// A random number for the lease holder's name (no two processes share one).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}

/// Sleeps; `true` if asked to stop meanwhile.
async fn sleep_or_stop(stop: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_say_what_is_wrong() {
        let t: Target = "tcp://127.0.0.1:6514".parse().unwrap();
        assert_eq!((t.transport, t.host.as_str(), t.port), (Transport::Tcp, "127.0.0.1", 6514));
        let t: Target = "tls://[::1]:6514".parse().unwrap();
        assert_eq!((t.transport, t.host.as_str()), (Transport::Tls, "::1"));
        for bad in ["127.0.0.1:514", "http://x:1", "udp://host", "udp://:514", "tcp://h:0", "tcp://h:99999"] {
            let e = bad.parse::<Target>().unwrap_err();
            assert!(e.contains("udp://HOST:PORT"), "{bad}: {e}");
        }
    }
}
