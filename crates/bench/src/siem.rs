//! The SIEM forwarder's rate: 10,000 audit events stored, then forwarded from the start of
//! the chain to a real rsyslog over TCP (RFC 5424, octet counting), timed until rsyslog has
//! written the last one to its file.
//!
//! Goal: ≥ 5,000 events/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_app::{App, AuthSettings, SystemClock};
use portcullis_notify::format::Format;
use portcullis_notify::syslog::{Forwarder, SyslogConfig};
use portcullis_store::{Actor, NewEvent, Store, StoreOptions};
use portcullis_testkit::rsyslog::Rsyslog;

use crate::{summarize, Metric};

pub async fn run(quick: bool) -> Vec<Metric> {
    let n: usize = if quick { 500 } else { 10_000 };
    let rounds = if quick { 1 } else { 3 };
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("siem.db").display());
        let store =
            Store::open(&StoreOptions { url, sqlite_synchronous: "normal".into(), max_connections: 8 }, &[7u8; 32])
                .await
                .expect("store");
        let actor = Actor { id: "u1".into(), name: "bench".into(), source: "192.0.2.1".into() };
        let now = jiff::Timestamp::now().as_microsecond();
        for i in 0..n {
            let e = NewEvent::success("bench.event", "request", format!("r{i}"))
                .with_details(serde_json::json!({ "n": i, "comment": "a typical comment of moderate length" }));
            store.record(&actor, now, e).await.expect("event");
        }
        let vault = portcullis_vault::KeyRing::new(portcullis_vault::Kek::generate(), vec![]);
        let app = App::new(store.clone(), Arc::new(SystemClock), AuthSettings::standard(), vault);
        let r = Rsyslog::start();
        let config = SyslogConfig {
            target: format!("tcp://127.0.0.1:{}", r.tcp).parse().expect("target"),
            format: Format::Rfc5424,
            tls_ca: None,
            app_name: "portcullis".into(),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let task = tokio::spawn(Forwarder::new(app, config).expect("forwarder").run(stop_rx));
        let deadline = started + Duration::from_secs(120);
        while r.received("tcp").len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = started.elapsed();
        let got = r.received("tcp").len();
        let _ = stop_tx.send(true);
        let _ = task.await;
        store.close().await;
        assert!(got >= n, "rsyslog received {got} of {n} events");
        rates.push(n as f64 / took.as_secs_f64());
    }
    let (rate, spread) = summarize(rates);
    vec![Metric {
        name: format!("SIEM: {n} audit events to rsyslog over TCP"),
        value: rate,
        unit: "events/s",
        spread,
        goal: "≥ 5,000/s".into(),
        note: "from the start of the chain; timed until rsyslog wrote the last event to its file".into(),
    }]
}
