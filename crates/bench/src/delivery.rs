//! The workflow with delivery on: create + approve pairs (8 clients, SQLite) with and without
//! the SIEM forwarder (to a real rsyslog over TCP) and the notifier (mail for every approval
//! request and outcome, to an SMTP sink) running in the same process, rounds interleaved.
//!
//! Goal: throughput with delivery on ≥ 0.9 × without.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use portcullis_notify::format::Format;
use portcullis_notify::mail::{MailConfig, Mailer};
use portcullis_notify::notifier::{Notifier, NotifierConfig};
use portcullis_notify::syslog::{Forwarder, SyslogConfig};
use portcullis_store::{Actor, UserPatch};
use portcullis_testkit::rsyslog::Rsyslog;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::workflow::{eight_clients as rate, fixture, pair};
use crate::{summarize, Metric};

/// An SMTP server that takes every mail and counts it (the bench's receiver, not Portcullis).
async fn smtp_sink() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink\r\n").await;
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        counter.fetch_add(1, Ordering::Relaxed);
                        b"250 OK\r\n"
                    } else {
                        match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                            Some("DATA") => {
                                in_data = true;
                                b"354 go on\r\n"
                            }
                            Some("QUIT") => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            Some("EHLO") | Some("HELO") => b"250 sink\r\n",
                            _ => b"250 OK\r\n",
                        }
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, count)
}

/// The notifier, mailing to the sink, until `stop`.
fn notifier(
    f: &crate::workflow::Fixture,
    smtp_port: u16,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let mail = MailConfig {
        smtp_url: format!("smtp://127.0.0.1:{smtp_port}"),
        from: "Portcullis <pam@bench.test>".into(),
        web_url: "https://pam.bench.test".into(),
        reply: None,
        token_hours: 72,
    };
    let mailer = Mailer::new(f.app.clone(), mail).expect("mailer");
    let config = NotifierConfig { retry_seconds: 1, attempts: 3 };
    tokio::spawn(Notifier::new(f.app.clone(), Some(mailer), None, config).run(stop))
}

pub async fn run(quick: bool) -> Vec<Metric> {
    let n = if quick { 80 } else { 1_000 };
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("delivery.db").display());
    let f = Arc::new(fixture(&url).await);
    let store = f.app.store.clone();
    for u in [&f.requester.user, &f.approver.user] {
        let patch = UserPatch { email: Some(Some(format!("{}@bench.test", u.username))), ..Default::default() };
        store.update_user(&Actor::system(), f.app.now(), &u.id, patch).await.expect("e-mail");
    }
    for i in 0..40 {
        pair(&f, i).await; // warm-up
    }
    let rsyslog = Rsyslog::start();
    let (smtp_port, mails) = smtp_sink().await;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        off.push(rate(&f, n).await);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let syslog = SyslogConfig {
            target: format!("tcp://127.0.0.1:{}", rsyslog.tcp).parse().expect("target"),
            format: Format::Rfc5424,
            tls_ca: None,
            app_name: "portcullis".into(),
        };
        let forwarder = tokio::spawn(Forwarder::new(f.app.clone(), syslog).expect("forwarder").run(stop_rx.clone()));
        let notifier = notifier(&f, smtp_port, stop_rx);
        on.push(rate(&f, n).await);
        let _ = stop_tx.send(true);
        let _ = forwarder.await;
        let _ = notifier.await;
    }
    // What is left in the outbox, delivered with the workflow idle.
    let backlog_from = mails.load(Ordering::Relaxed);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let drain_started = Instant::now();
    let notifier = notifier(&f, smtp_port, stop_rx);
    let mut last = (backlog_from, Instant::now());
    while last.1.elapsed() < std::time::Duration::from_secs(3) && drain_started.elapsed().as_secs() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let now = mails.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let drained = last.0 - backlog_from;
    let drain_rate = drained as f64 / (last.1 - drain_started).as_secs_f64().max(0.001);
    let _ = stop_tx.send(true);
    let _ = notifier.await;
    let mailed = backlog_from;
    let forwarded = rsyslog.received("tcp").len();
    let (off_rate, off_spread) = summarize(off.clone());
    let (on_rate, on_spread) = summarize(on.clone());
    let ratios: Vec<f64> = on.iter().zip(&off).map(|(a, b)| 100.0 * a / b).collect();
    let (ratio, ratio_spread) = summarize(ratios);
    let note = format!("meanwhile {mailed} mails sent and {forwarded} audit events forwarded");
    vec![
        Metric {
            name: "create+approve, 8 clients, delivery off".into(),
            value: off_rate,
            unit: "pairs/s",
            spread: off_spread,
            goal: String::new(),
            note: String::new(),
        },
        Metric {
            name: "create+approve, 8 clients, mail + SIEM on".into(),
            value: on_rate,
            unit: "pairs/s",
            spread: on_spread,
            goal: String::new(),
            note,
        },
        Metric {
            name: "delivery on / off".into(),
            value: ratio,
            unit: "%",
            spread: ratio_spread,
            goal: "≥ 90 %".into(),
            note: "per round (rounds interleaved: off, then on)".into(),
        },
        Metric {
            name: "notifications mailed, workflow idle".into(),
            value: drain_rate,
            unit: "mails/s",
            spread: (drain_rate, drain_rate),
            goal: String::new(),
            note: format!("the {drained} left in the outbox after the rounds"),
        },
    ]
}
