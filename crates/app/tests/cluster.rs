//! Several nodes on one PostgreSQL database, driven through the application layer: events
//! published on one node reach the others (and not their origin twice), leases on shared work
//! go to one node at a time, and a node that stops heartbeating is declared lost once.

use std::sync::Arc;
use std::time::Duration;

use portcullis_app::cluster::{self, ClusterSettings, Message};
use portcullis_app::{App, AuthSettings, SystemClock};
use portcullis_core::request::{EndCause, RequestState};
use portcullis_store::{Store, StoreOptions, Transition};

async fn node(url: &str, name: &str) -> App {
    let store = Store::open(
        &StoreOptions { url: url.into(), sqlite_synchronous: "normal".into(), max_connections: 4 },
        &[7u8; 32],
    )
    .await
    .unwrap();
    let vault = portcullis_vault::KeyRing::new(portcullis_vault::Kek::generate(), vec![]);
    App::new(store, Arc::new(SystemClock), AuthSettings::standard(), vault).with_node(name)
}

fn revoked(id: &str) -> Transition {
    Transition {
        request_id: id.into(),
        from: RequestState::Available,
        to: RequestState::Revoked,
        ended_by: Some(EndCause::Revocation),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_events_leases_and_the_registry() {
    let pg = portcullis_testkit::pg::PgCluster::start();
    let url = pg.create_database("cluster");
    let (a, b) = (node(&url, "node-a").await, node(&url, "node-b").await);
    let settings = ClusterSettings { heartbeat: Duration::from_millis(200), lost_after: Duration::from_secs(1) };
    cluster::join(&a, settings).await.unwrap();
    cluster::join(&b, settings).await.unwrap();
    let mut on_a = a.events.subscribe();
    let mut on_b = b.events.subscribe();
    tokio::spawn(cluster::run_events(a.clone()));
    tokio::spawn(cluster::run_events(b.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A transition published on A: A's subscribers at once, B's through the database.
    a.publish([revoked("r-1")]);
    let got = tokio::time::timeout(Duration::from_secs(2), on_a.recv()).await.unwrap().unwrap();
    assert_eq!(got, revoked("r-1"));
    let got =
        tokio::time::timeout(Duration::from_secs(2), on_b.recv()).await.expect("B hears of A's transition").unwrap();
    assert_eq!(got, revoked("r-1"));
    // A does not hear its own event a second time from the database.
    cluster::send(&b, &Message::Transition(revoked("r-2"))).await;
    let got = tokio::time::timeout(Duration::from_secs(2), on_a.recv()).await.unwrap().unwrap();
    assert_eq!(got.request_id, "r-2", "A's next event is B's, not its own again");
    // Many at once, in order, none lost (more than one read's batch).
    for i in 0..600 {
        cluster::send(&a, &Message::Transition(revoked(&format!("bulk-{i}")))).await;
    }
    for i in 0..600 {
        let got = tokio::time::timeout(Duration::from_secs(5), on_b.recv()).await.expect("bulk event").unwrap();
        assert_eq!(got.request_id, format!("bulk-{i}"));
    }

    // One node at a time holds a lease; when it stops renewing, another takes over.
    assert!(cluster::lead(&a, "test-work", Duration::from_millis(500)).await);
    assert!(!cluster::lead(&b, "test-work", Duration::from_millis(500)).await);
    assert!(cluster::lead(&a, "test-work", Duration::from_millis(500)).await, "the holder renews");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(cluster::lead(&b, "test-work", Duration::from_millis(500)).await, "taken over once it ran out");
    assert!(!cluster::lead(&a, "test-work", Duration::from_millis(500)).await);

    // A second process with A's name is refused while A heartbeats.
    let hb = tokio::spawn(cluster::run_heartbeats(a.clone(), settings));
    let twin = node(&url, "node-a").await;
    let e = cluster::join(&twin, settings).await.unwrap_err();
    assert!(e.contains("node-a") && e.contains("[node] name"), "{e}");
    // A stops heartbeating: B declares it lost, once, audited.
    hb.abort();
    let hb_b = tokio::spawn(cluster::run_heartbeats(b.clone(), settings));
    let mut lost = false;
    for _ in 0..50 {
        let nodes = b.store.nodes().await.unwrap();
        if nodes.iter().any(|n| n.name == "node-a" && n.state == "lost") {
            lost = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lost, "node-a declared lost");
    let q = portcullis_store::AuditQuery { action: Some("node.lost".into()), limit: 10, ..Default::default() };
    let events = b.store.audit_events(&q).await.unwrap();
    assert_eq!(events.len(), 1, "declared lost once: {events:?}");
    assert_eq!(events[0].object_id, "node-a");
    hb_b.abort();
    // A comes back (its heartbeat says it was lost): registered again.
    cluster::join(&a, settings).await.unwrap();
    assert!(b.store.nodes().await.unwrap().iter().any(|n| n.name == "node-a" && n.state == "up"));
}
