//! Several nodes on one PostgreSQL database (durable settings): how long an event published on
//! one node takes to reach another (the delivery behind cross-node revocation: the row, the
//! `NOTIFY`, the other node's cursor read and its broadcast), and how many due requests the
//! scheduler moves per second when 100,000 come due at once (quick: 1,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_app::{App, AuthSettings, SystemClock};
use portcullis_core::request::{EndCause, RequestState};
use portcullis_store::Transition;
use portcullis_testkit::pg::PgCluster;

use crate::{percentile, workflow, Metric};

fn now() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

pub async fn run(quick: bool) -> Vec<Metric> {
    let pg = PgCluster::start_durable();
    let url = pg.create_database("nodes");
    let f = Arc::new(workflow::fixture(&url).await);
    let mut out = Vec::new();

    // Two nodes on the one store: A publishes, B receives through the database.
    let a = f.app.clone().with_node("bench-a");
    let vault = portcullis_vault::KeyRing::new(portcullis_vault::Kek::generate(), vec![]);
    let b = App::new(f.app.store.clone(), Arc::new(SystemClock), AuthSettings::standard(), vault).with_node("bench-b");
    let mut on_b = b.events.subscribe();
    let listener = tokio::spawn(portcullis_app::cluster::run_events(b.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = if quick { 20 } else { 500 };
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-{i}");
        let t = Instant::now();
        a.publish([Transition {
            request_id: id.clone(),
            from: RequestState::Available,
            to: RequestState::Revoked,
            ended_by: Some(EndCause::Revocation),
        }]);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), on_b.recv()).await {
                Ok(Ok(got)) if got.request_id == id => break,
                Ok(Ok(_)) => {}
                _ => panic!("event {id} did not reach the other node"),
            }
        }
        times.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    listener.abort();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    out.push(Metric {
        name: "cross-node event delivery (revocation) p50".into(),
        value: ms(percentile(&times, 50.0)),
        unit: "ms",
        spread: (ms(times[0]), ms(times[times.len() - 1])),
        goal: String::new(),
        note: format!("{n} transitions published on node A, received by node B"),
    });
    out.push(Metric {
        name: "cross-node event delivery (revocation) p99".into(),
        value: ms(percentile(&times, 99.0)),
        unit: "ms",
        spread: (ms(times[0]), ms(times[times.len() - 1])),
        goal: "< 1000".into(),
        note: "PostgreSQL LISTEN/NOTIFY and the cursor read".into(),
    });

    // Due requests: made and approved by eight clients, then all due in the same second.
    let due = if quick { 1_000 } else { 100_000 };
    eprintln!("nodes: making {due} approved requests");
    workflow::eight_clients(&f, due).await;
    let at = now() + 1_000_000;
    pg.psql("nodes", &format!("UPDATE access_requests SET end_at = {at} WHERE state IN ('approved', 'available')"))
        .expect("make them due");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let store = &f.app.store;
    let t = Instant::now();
    let mut done = 0usize;
    loop {
        let moved = store.run_due_transitions(now()).await.expect("scheduler pass");
        if moved.is_empty() {
            break;
        }
        done += moved.len();
    }
    let secs = t.elapsed().as_secs_f64();
    out.push(Metric {
        name: "scheduler: due requests expired".into(),
        value: done as f64 / secs,
        unit: "requests/s",
        spread: (0.0, 0.0),
        goal: String::new(),
        note: format!("{done} due at once, expired in {secs:.1} s (one scheduler: the lease holder), each audited"),
    });
    f.app.store.close().await;
    out
}
