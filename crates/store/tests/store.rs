//! The store's behaviour, run identically against SQLite and a throwaway PostgreSQL cluster.

use portcullis_core::audit::BreakReason;
use portcullis_core::inventory::{AccountKind, Platform, Protocol};
use portcullis_core::role::Role;
use portcullis_store::{
    Actor, AuditQuery, GroupKind, NewAccount, NewAsset, NewUser, Page, ProtocolPort, Store, StoreError, StoreOptions,
};
use portcullis_testkit::pg::PgCluster;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn actor() -> Actor {
    Actor { id: "admin-id".into(), name: "admin".into(), source: "127.0.0.1".into() }
}

fn asset(name: &str) -> NewAsset {
    NewAsset {
        name: name.into(),
        address: "10.0.0.5".into(),
        platform: Platform::Linux,
        description: String::new(),
        protocols: vec![ProtocolPort { protocol: Protocol::Ssh, port: 22 }],
        host_key: None,
    }
}

fn user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        display_name: name.into(),
        email: None,
        password_hash: "$argon2id$fake".into(),
        roles: vec![Role::Auditor],
        time_zone: "Europe/Berlin".into(),
        time_zone_locked: false,
    }
}

async fn open(url: &str) -> Store {
    Store::open(&StoreOptions { url: url.into(), sqlite_synchronous: "full".into(), max_connections: 8 }, KEY)
        .await
        .expect("open store")
}

/// Runs `f` against a fresh SQLite store and a fresh PostgreSQL store. The returned raw-SQL
/// runner lets a test tamper with the database behind the store's back.
async fn on_both<F, Fut>(f: F)
where
    F: Fn(Store, Box<dyn Fn(&str) + Send + Sync>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = open(&url).await;
    let p2 = path.clone();
    f(
        store.clone(),
        Box::new(move |sql: &str| {
            let out = std::process::Command::new("sqlite3").arg(&p2).arg(sql).output();
            match out {
                Ok(o) if o.status.success() => {}
                _ => panic!("sqlite3 CLI failed for {sql}"),
            }
        }),
    )
    .await;
    store.close().await;

    let pg = std::sync::Arc::new(PgCluster::start());
    let url = pg.create_database("store_test");
    let store = open(&url).await;
    let pg2 = pg.clone();
    f(
        store.clone(),
        Box::new(move |sql: &str| {
            pg2.psql("store_test", sql).expect("psql");
        }),
    )
    .await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_identity_round_trip_with_audit() {
    on_both(|store, _raw| async move {
        let a = actor();
        let u = store.create_user(&a, 1, user("alice")).await.unwrap();
        assert_eq!(store.user(&u.id).await.unwrap(), u);
        assert!(
            matches!(store.create_user(&a, 2, user("alice")).await, Err(StoreError::Conflict(m)) if m.contains("alice"))
        );

        let asset1 = store.create_asset(&a, 3, asset("db1")).await.unwrap();
        assert_eq!(store.asset(&asset1.id).await.unwrap(), asset1);
        assert!(matches!(store.create_asset(&a, 4, asset("db1")).await, Err(StoreError::Conflict(_))));
        let mut bad = asset("db2");
        bad.address = "not an address".into();
        assert!(matches!(store.create_asset(&a, 5, bad).await, Err(StoreError::Invalid(e)) if e.field == "address"));

        let acct = store
            .create_account(
                &a,
                6,
                NewAccount {
                    asset_id: asset1.id.clone(),
                    name: "root".into(),
                    kind: AccountKind::Local,
                    description: String::new(),
                },
            )
            .await
            .unwrap();
        assert_eq!(store.accounts(Some(&asset1.id), Page::default()).await.unwrap(), vec![acct.clone()]);
        let missing = store
            .create_account(
                &a,
                7,
                NewAccount {
                    asset_id: "nope".into(),
                    name: "root".into(),
                    kind: AccountKind::Local,
                    description: String::new(),
                },
            )
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound("asset"))));

        let g = store.create_group(&a, 8, GroupKind::Account, "dbas", "").await.unwrap();
        let g = store.set_group_member(&a, 9, GroupKind::Account, &g.id, &acct.id, true).await.unwrap();
        assert_eq!(g.members, vec![acct.id.clone()]);
        assert!(matches!(
            store.set_group_member(&a, 9, GroupKind::Account, &g.id, "ghost", true).await,
            Err(StoreError::NotFound("account"))
        ));
        // Deleting the asset cascades to its accounts and their group memberships.
        store.delete_asset(&a, 10, &asset1.id).await.unwrap();
        assert!(matches!(store.account(&acct.id).await, Err(StoreError::NotFound(_))));
        assert!(store.group(GroupKind::Account, &g.id).await.unwrap().members.is_empty());

        let events = store.audit_events(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["user.create", "asset.create", "account.create", "group.create", "group.member_add", "asset.delete"]
        );
        let only_assets = store
            .audit_events(&AuditQuery { object_type: Some("asset".into()), limit: 100, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(only_assets.len(), 2);
        let page2 =
            store.audit_events(&AuditQuery { after_seq: Some(4), limit: 1, ..Default::default() }).await.unwrap();
        assert_eq!(page2.len(), 1);
        assert_eq!(page2[0].seq, 5);
        let report = store.verify_audit_chain().await.unwrap();
        assert_eq!((report.checked, report.head_seq, report.broken), (6, 6, None));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tampering_is_detected() {
    on_both(|store, raw| async move {
        for i in 0..5 {
            store.create_asset(&actor(), i, asset(&format!("h{i}"))).await.unwrap();
        }
        assert!(store.verify_audit_chain().await.unwrap().broken.is_none());

        raw("UPDATE audit_events SET actor_name = 'mallory' WHERE seq = 3");
        let b = store.verify_audit_chain().await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.reason), (3, BreakReason::ContentModified));
        raw("UPDATE audit_events SET actor_name = 'admin' WHERE seq = 3");
        assert!(store.verify_audit_chain().await.unwrap().broken.is_none());

        raw("DELETE FROM audit_events WHERE seq = 5");
        let b = store.verify_audit_chain().await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.reason), (5, BreakReason::TailRemoved));

        raw("DELETE FROM audit_events WHERE seq = 2");
        let b = store.verify_audit_chain().await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.reason), (2, BreakReason::SequenceGap));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_one_linear_chain() {
    on_both(|store, _raw| async move {
        let mut tasks = Vec::new();
        for i in 0..40 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { s.create_asset(&actor(), i, asset(&format!("c{i}"))).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let report = store.verify_audit_chain().await.unwrap();
        assert_eq!((report.checked, report.head_seq, report.broken), (40, 40, None));
        assert_eq!(store.assets(Page { limit: 1000, offset: 0 }).await.unwrap().len(), 40);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_and_tokens() {
    on_both(|store, _raw| async move {
        let u = store.create_user(&actor(), 1, user("bob")).await.unwrap();
        for i in 0..2 {
            assert!(!store.record_login_failure(&actor(), 10 + i, &u.id, 3, 1000, "bad password").await.unwrap());
        }
        assert!(store.record_login_failure(&actor(), 12, &u.id, 3, 1000, "bad password").await.unwrap());
        let s = store.login_state("bob").await.unwrap().unwrap();
        // The lock starts the count afresh; attempts during it neither count nor move it.
        assert_eq!((s.user.failed_logins, s.user.locked_until), (0, Some(1000)));
        for i in 0..4 {
            assert!(!store.record_login_failure(&actor(), 13 + i, &u.id, 3, 2000 + i, "bad password").await.unwrap());
        }
        let s = store.login_state("bob").await.unwrap().unwrap();
        assert_eq!((s.user.failed_logins, s.user.locked_until), (0, Some(1000)), "the lock moved");
        store.record_login_success(&actor(), 20, &u.id, Some(7), "sess-hash", 100).await.unwrap();
        let s = store.login_state("bob").await.unwrap().unwrap();
        assert_eq!((s.user.failed_logins, s.user.locked_until, s.totp_last_step), (0, None, Some(7)));
        assert_eq!(store.principal("sess-hash", 50).await.unwrap().unwrap().user.id, u.id);
        assert!(store.principal("sess-hash", 100).await.unwrap().is_none(), "expired session");

        let t = store.create_api_token(&actor(), 30, &u.id, "ci", "tok-hash", None).await.unwrap();
        assert!(matches!(
            store.create_api_token(&actor(), 30, &u.id, "ci", "other", None).await,
            Err(StoreError::Conflict(_))
        ));
        let p = store.principal("tok-hash", 40).await.unwrap().unwrap();
        assert_eq!(p.api_token_id.as_deref(), Some(t.id.as_str()));
        assert_eq!(store.api_tokens(&u.id).await.unwrap()[0].last_used_at, Some(40));
        assert!(matches!(
            store.revoke_api_token(&actor(), 50, "someone-else", &t.id).await,
            Err(StoreError::NotFound(_))
        ));
        store.revoke_api_token(&actor(), 50, &u.id, &t.id).await.unwrap();
        assert!(store.principal("tok-hash", 60).await.unwrap().is_none());

        assert!(store.consume_totp_step(&u.id, 8).await.unwrap());
        assert!(!store.consume_totp_step(&u.id, 8).await.unwrap(), "a TOTP step is used once");
        assert!(store.verify_audit_chain().await.unwrap().broken.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_keep_each_recipients_order_and_the_siem_cursor_has_one_holder() {
    on_both(|store, _raw| async move {
        let events = |d: &[portcullis_store::Delivery]| d.iter().map(|d| d.event.clone()).collect::<Vec<_>>();
        store.notify(1, "e1", "s1", &["alice".into()]).await.unwrap();
        store.notify(2, "e2", "s2", &["alice".into(), "bob".into()]).await.unwrap();
        store.notify(3, "e3", "s3", &["carol".into()]).await.unwrap();
        // One worker takes the oldest; another, meanwhile, may not pass it for alice.
        let first = store.claim_deliveries(10, 1000, 1).await.unwrap();
        assert_eq!(events(&first), ["e1"]);
        let second = store.claim_deliveries(10, 1000, 20).await.unwrap();
        assert_eq!(events(&second), ["e3"], "alice's second notification overtook her first");
        store.delivered(&second[0].id, 11).await.unwrap();
        // The first fails and waits for its retry: alice's (and bob's) second still waits.
        store.delivery_retry(&first[0].id, 500, "mail server down").await.unwrap();
        assert!(store.claim_deliveries(20, 1000, 20).await.unwrap().is_empty());
        // Due again: both, in order, in one claim.
        let third = store.claim_deliveries(600, 2000, 20).await.unwrap();
        assert_eq!(events(&third), ["e1", "e2"]);
        // Given back unsent (the first failed again in that batch), not counted as an attempt.
        store.delivery_retry(&third[0].id, 5000, "mail server down").await.unwrap();
        store.delivery_release(&third[1].id, 601).await.unwrap();
        assert!(store.claim_deliveries(700, 2000, 20).await.unwrap().is_empty());
        store.delivery_failed(&third[0].id, 800, "gave up").await.unwrap();
        let fourth = store.claim_deliveries(900, 2000, 20).await.unwrap();
        assert_eq!(events(&fourth), ["e2"]);
        assert_eq!(fourth[0].attempts, 0);

        // The SIEM cursor: one holder at a time; only the holder moves it.
        assert!(store.lease_delivery_cursor("syslog", "n1", 0, 100).await.unwrap());
        assert!(store.lease_delivery_cursor("syslog", "n1", 40, 140).await.unwrap(), "renewal");
        assert!(!store.lease_delivery_cursor("syslog", "n2", 50, 150).await.unwrap());
        assert!(store.set_delivery_cursor("syslog", "n1", 7, 60).await.unwrap());
        assert!(!store.set_delivery_cursor("syslog", "n2", 9, 60).await.unwrap());
        assert_eq!(store.delivery_cursor("syslog").await.unwrap(), 7);
        // n1's lease runs out: n2 takes over from the cursor, and n1 can no longer move it.
        assert!(store.lease_delivery_cursor("syslog", "n2", 140, 240).await.unwrap());
        assert!(!store.set_delivery_cursor("syslog", "n1", 8, 150).await.unwrap());
        assert!(!store.lease_delivery_cursor("syslog", "n1", 150, 250).await.unwrap());
        assert_eq!(store.delivery_cursor("syslog").await.unwrap(), 7);
        // Given up on stopping: the other takes it at once.
        store.release_delivery_cursor("syslog", "n2").await.unwrap();
        assert!(store.lease_delivery_cursor("syslog", "n1", 160, 260).await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_policies_keep_their_order_and_move_the_generation() {
    on_both(|store, _sql| async move {
        let a = actor();
        // The installation starts with the SSH default, the same rules the core ships.
        let list = store.connection_policies().await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "ssh-default");
        let seeded: portcullis_core::gateway::ConnectionPolicySpec = serde_json::from_str(&list[0].spec).unwrap();
        assert_eq!(seeded, portcullis_core::gateway::default_spec());
        let g0 = store.connection_policy_generation().await.unwrap();
        let spec = r#"{"protocol":"ssh"}"#;
        let first = store.create_connection_policy(&a, 1, "first", spec, Some(1)).await.unwrap();
        let last = store.create_connection_policy(&a, 2, "last", spec, None).await.unwrap();
        assert_eq!((first.position, last.position), (1, 3));
        let g1 = store.connection_policy_generation().await.unwrap();
        assert!(g1 > g0, "a change moves the generation");
        let names = |l: Vec<portcullis_store::StoredConnectionPolicy>| {
            l.into_iter().map(|p| (p.name, p.position)).collect::<Vec<_>>()
        };
        assert_eq!(
            names(store.connection_policies().await.unwrap()),
            vec![("first".into(), 1), ("ssh-default".into(), 2), ("last".into(), 3)]
        );
        // Moving "last" to the top shifts the others down, without gaps.
        store.replace_connection_policy(&a, 3, &last.id, "top", spec, Some(1)).await.unwrap();
        assert_eq!(
            names(store.connection_policies().await.unwrap()),
            vec![("top".into(), 1), ("first".into(), 2), ("ssh-default".into(), 3)]
        );
        let dup = store.create_connection_policy(&a, 4, "first", spec, None).await.unwrap_err();
        assert!(matches!(dup, StoreError::Conflict(m) if m.contains("'first'")));
        store.delete_connection_policy(&a, 5, &first.id).await.unwrap();
        assert_eq!(
            names(store.connection_policies().await.unwrap()),
            vec![("top".into(), 1), ("ssh-default".into(), 2)]
        );
        assert!(matches!(
            store.delete_connection_policy(&a, 6, &first.id).await,
            Err(StoreError::NotFound("connection policy"))
        ));
        let events = store.audit_events(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
        let actions: Vec<_> =
            events.iter().filter(|e| e.action.starts_with("connection_policy.")).map(|e| e.action.as_str()).collect();
        assert_eq!(actions.len(), 4, "{actions:?}");
    })
    .await;
}

/// Several nodes reach their database over the network: with `sslmode=verify-full` and the
/// database's CA the store connects over TLS; plain TCP is refused by a server that requires
/// TLS, and a server certificate another CA signed is refused by the store.
#[tokio::test]
async fn postgres_over_tls_verifies_the_server() {
    let pg = PgCluster::start_tls();
    let url = pg.create_database("over_tls");
    let with = |params: &str| StoreOptions {
        url: format!("{url}?{params}"),
        sqlite_synchronous: "full".into(),
        max_connections: 2,
    };
    let ca = pg.ca_pem();
    let store =
        Store::open(&with(&format!("sslmode=verify-full&sslrootcert={}", ca.display())), KEY).await.expect("TLS");
    store.put_internal_setting("tls_probe", "yes").await.unwrap();
    assert_eq!(store.setting("tls_probe").await.unwrap().as_deref(), Some("yes"));
    let used = pg
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND datname = 'over_tls'",
        )
        .unwrap();
    assert_ne!(used.trim(), "0", "the store's connections use TLS");
    drop(store);

    let refused = |r: Result<Store, portcullis_store::StoreError>, what: &str| match r {
        Ok(_) => panic!("{what}"),
        Err(e) => e,
    };
    let plain = refused(Store::open(&with("sslmode=disable"), KEY).await, "plain TCP refused");
    assert!(plain.to_string().contains("no encryption"), "{plain}");
    let other = ca.with_file_name("other-ca.pem");
    let wrong = refused(
        Store::open(&with(&format!("sslmode=verify-full&sslrootcert={}", other.display())), KEY).await,
        "a server certificate from another CA is refused",
    );
    eprintln!("refused: {plain}\nrefused: {wrong}");
    assert!(wrong.to_string().to_lowercase().contains("certificate"), "{wrong}");
}

/// A store opened with another audit key than the log was written with says so (the server
/// refuses to start on it); the right key, or an empty log, does not.
#[tokio::test]
async fn the_audit_key_is_checked_against_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("k.db").display());
    let store = open(&url).await;
    assert_eq!(store.audit_key_matches().await.unwrap(), None, "an empty log");
    for i in 0..3 {
        store
            .record(&Actor::system(), i, portcullis_store::NewEvent::success("test.event", "test", "x"))
            .await
            .unwrap();
    }
    assert_eq!(store.audit_key_matches().await.unwrap(), Some(true));
    store.close().await;
    let other = Store::open(
        &StoreOptions { url: url.clone(), sqlite_synchronous: "full".into(), max_connections: 2 },
        b"another audit key, 32 bytes long",
    )
    .await
    .unwrap();
    assert_eq!(other.audit_key_matches().await.unwrap(), Some(false));
}
