//! The directory client against a real OpenLDAP `slapd` (LDAPS and StartTLS with a test CA).

use std::time::Duration;

use portcullis_directory::{Attributes, Directory, DirectoryError, Kind, Login, Settings};
use portcullis_testkit::slapd::{self, group_dn, user_dn, Slapd};

fn settings(s: &Slapd) -> Settings {
    Settings {
        name: "corp".into(),
        kind: Kind::Ldap,
        url: s.ldaps_url(),
        starttls: false,
        allow_plain: false,
        ca_file: Some(s.ca()),
        bind_dn: slapd::SERVICE_DN.into(),
        bind_password: slapd::SERVICE_PASSWORD.to_owned().into(),
        user_base: slapd::PEOPLE.into(),
        account_base: slapd::PEOPLE.into(),
        user_filter: Kind::Ldap.default_user_filter().into(),
        group_base: slapd::GROUPS.into(),
        group_filter: Kind::Ldap.default_group_filter().into(),
        disabled_filter: Some("(employeeType=disabled)".into()),
        attributes: Attributes::defaults(Kind::Ldap),
        timeout: Duration::from_secs(5),
    }
}

fn seed(s: &Slapd) {
    s.add_user("ann", "Ann Admin", "ann@example.test", "ann pass 1");
    s.add_user("bob", "Bob Builder", "bob@example.test", "bob pass 2");
    s.add_user("star*", "Star", "star@example.test", "star pass 3");
    s.add_user("svc-db", "Database service", "db@example.test", "db pass 4");
    s.add_group("dbas", &[user_dn("bob")]);
    s.add_group("ops", &[user_dn("ann"), group_dn("dbas")]);
    s.add_group("everyone", &[group_dn("ops")]);
}

#[tokio::test]
async fn sign_in_groups_sync_and_password_change() {
    let s = Slapd::start();
    seed(&s);
    let d = Directory::new(settings(&s)).unwrap();

    // Sign-in: the bind as the user decides; nested groups come along.
    let Login::Ok { person, groups } = d.authenticate("bob", "bob pass 2").await.unwrap() else { panic!() };
    assert_eq!((person.username.as_str(), person.display_name.as_str()), ("bob", "Bob Builder"));
    assert_eq!(person.email.as_deref(), Some("bob@example.test"));
    let mut names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["dbas", "everyone", "ops"]);
    assert!(matches!(d.authenticate("bob", "wrong").await.unwrap(), Login::WrongPassword { .. }));
    assert!(matches!(d.authenticate("bob", "").await.unwrap(), Login::WrongPassword { .. }));
    assert!(matches!(d.authenticate("nobody", "x").await.unwrap(), Login::Unknown));
    // Filter metacharacters are escaped (RFC 4515): `*` is not a wildcard, `)(` ends nothing.
    assert!(matches!(d.authenticate("*", "bob pass 2").await.unwrap(), Login::Unknown));
    assert!(matches!(d.authenticate("b*", "bob pass 2").await.unwrap(), Login::Unknown));
    assert!(matches!(d.authenticate("bob)(uid=*", "bob pass 2").await.unwrap(), Login::Unknown));
    assert!(matches!(d.authenticate("star*", "star pass 3").await.unwrap(), Login::Ok { .. }));

    // Disabled in the directory.
    s.replace(&user_dn("ann"), "employeeType", "disabled");
    assert!(matches!(d.authenticate("ann", "ann pass 1").await.unwrap(), Login::Disabled { .. }));

    // A synchronisation's snapshot: every user, disabled flagged, groups nested.
    let snap = d.snapshot().await.unwrap();
    let user = |n: &str| snap.users.iter().find(|u| u.username == n).unwrap();
    assert!(user("ann").disabled && !user("bob").disabled);
    assert_eq!(user("ann").groups.len(), 2, "{:?}", user("ann").groups);
    assert_eq!(user("bob").groups.len(), 3);
    assert_eq!(snap.groups.len(), 3);

    // A directory account's password: changed as itself, verified by a bind.
    d.change_password("svc-db", "db pass 4", "db pass 5 new").await.unwrap();
    assert!(s.binds(&user_dn("svc-db"), "db pass 5 new"));
    assert!(!s.binds(&user_dn("svc-db"), "db pass 4"));
    assert!(d.check_password("svc-db", "db pass 5 new").await.unwrap());
    assert!(!d.check_password("svc-db", "db pass 4").await.unwrap());
    let e = d.change_password("svc-db", "db pass 4", "x y z").await.unwrap_err();
    assert!(e.to_string().contains("not the account's current password"), "{e}");

    // StartTLS on the plain port.
    let mut st = settings(&s);
    (st.url, st.starttls) = (s.url(), true);
    assert!(matches!(Directory::new(st).unwrap().authenticate("bob", "bob pass 2").await.unwrap(), Login::Ok { .. }));
}

#[tokio::test]
async fn failures_are_clear_and_closed() {
    let mut s = Slapd::start();
    seed(&s);
    // A certificate from another CA is refused.
    let mut other = settings(&s);
    other.ca_file = Some(s.other_ca());
    let e = Directory::new(other).unwrap().authenticate("bob", "bob pass 2").await.unwrap_err();
    assert!(matches!(e, DirectoryError::Certificate { .. }), "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");
    // Plain LDAP only when allowed.
    let mut plain = settings(&s);
    plain.url = s.url();
    let e = Directory::new(plain.clone()).err().unwrap().to_string();
    assert!(e.contains("allow_plain"), "{e}");
    plain.allow_plain = true;
    assert!(matches!(
        Directory::new(plain).unwrap().authenticate("bob", "bob pass 2").await.unwrap(),
        Login::Ok { .. }
    ));
    // A wrong service password says which setting to fix.
    let mut bad = settings(&s);
    bad.bind_password = "nope".to_owned().into();
    let e = Directory::new(bad).unwrap().authenticate("bob", "bob pass 2").await.unwrap_err().to_string();
    assert!(e.contains("service bind") && e.contains("bind_dn"), "{e}");

    // A directory that is down, and one that accepts but never answers.
    let d = Directory::new(settings(&s)).unwrap();
    s.pause();
    let e = d.authenticate("bob", "bob pass 2").await.unwrap_err();
    assert!(matches!(e, DirectoryError::Unreachable { .. }), "{e:?}");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut hang = settings(&s);
    (hang.url, hang.timeout) =
        (format!("ldaps://127.0.0.1:{}", silent.local_addr().unwrap().port()), Duration::from_secs(1));
    let e = Directory::new(hang).unwrap().snapshot().await.unwrap_err();
    assert!(matches!(e, DirectoryError::Timeout { .. }), "{e:?}");
    s.resume();
    assert!(matches!(d.authenticate("bob", "bob pass 2").await.unwrap(), Login::Ok { .. }));
}
