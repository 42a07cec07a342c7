use super::*;

fn spec(json: &str) -> ConnectionPolicySpec {
    serde_json::from_str(json).unwrap()
}

fn facts(client: &str, asset: &str) -> Facts<'static> {
    Facts {
        protocol: Protocol::Ssh,
        client: client.parse().unwrap(),
        listen_port: 2222,
        asset: Box::leak(asset.to_owned().into_boxed_str()),
        target_address: "10.1.0.5",
        target_port: 22,
    }
}

#[test]
fn first_match_wins_and_explains_the_others() {
    let a = compile("a", "office", &spec(r#"{"protocol":"ssh","clients":["192.168.0.0/16"]}"#)).unwrap();
    let b = compile("b", "tel", &spec(r#"{"protocol":"telnet"}"#)).unwrap();
    let c = compile("c", "db", &spec(r#"{"protocol":"ssh","targets":[{"asset":"db*"}]}"#)).unwrap();
    let d =
        compile("d", "net", &spec(r#"{"protocol":"ssh","targets":[{"network":"10.1.0.0/16","port":22}]}"#)).unwrap();
    let all = [a, b, c, d];
    assert_eq!(select(&all, &facts("192.168.1.1", "web")).unwrap().id, "a");
    assert_eq!(select(&all, &facts("::ffff:192.168.1.1", "web")).unwrap().id, "a");
    assert_eq!(select(&all, &facts("10.9.9.9", "DB1")).unwrap().id, "c");
    assert_eq!(select(&all, &facts("10.9.9.9", "web")).unwrap().id, "d");
    let why: Vec<_> = explain(&all, &facts("10.9.9.9", "web")).into_iter().map(|(p, m)| (p.id.clone(), m)).collect();
    assert_eq!(
        why,
        vec![
            ("a".into(), Some(Miss::Client)),
            ("b".into(), Some(Miss::Protocol)),
            ("c".into(), Some(Miss::Target)),
            ("d".into(), None)
        ]
    );
    let mut f = facts("10.9.9.9", "web");
    f.target_port = 2200;
    assert!(select(&all, &f).is_none());
}

#[test]
fn mistakes_name_their_field() {
    let err = |j: &str| compile("x", "x", &spec(j)).unwrap_err().field;
    assert_eq!(err(r#"{"protocol":"smtp"}"#), "protocol");
    assert_eq!(err(r#"{"protocol":"ssh","clients":["10.0.0.0/33"]}"#), "clients[0]");
    assert_eq!(err(r#"{"protocol":"ssh","targets":[{}]}"#), "targets[0]");
    assert_eq!(err(r#"{"protocol":"ssh","channels":[{"kind":"teleport"}]}"#), "channels[0].kind");
    assert_eq!(err(r#"{"protocol":"ssh","channels":[{"kind":"exec","commands":["("]}]}"#), "channels[0].commands[0]");
    assert_eq!(err(r#"{"protocol":"ssh","channels":[{"kind":"shell","commands":["x"]}]}"#), "channels[0].commands");
    assert_eq!(
        err(r#"{"protocol":"ssh","channels":[{"kind":"local_forward","destinations":["db"]}]}"#),
        "channels[0].destinations[0]"
    );
    assert_eq!(err(r#"{"protocol":"ssh","source_address":"here"}"#), "source_address");
    assert_eq!(err(r#"{"protocol":"ssh","time_zone":"Mars/Base"}"#), "time_zone");
    assert_eq!(err(r#"{"protocol":"ssh","listen_ports":[0]}"#), "listen_ports[0]");
    assert_eq!(err(r#"{"protocol":"telnet","algorithms":{"kex":["curve25519-sha256"]}}"#), "algorithms");
    assert_eq!(err(r#"{"protocol":"ssh","channels":[{"kind":"shell"},{"kind":"x11"}]}"#), "channels[1].kind");
    assert_eq!(err(r#"{"protocol":"telnet","channels":[{"kind":"sftp"}]}"#), "channels[0].kind");
    // Every field of the document is in SPEC_FIELDS (the API refuses any other).
    let written = serde_json::to_value(default_spec()).unwrap();
    let mut keys: Vec<&str> = written.as_object().unwrap().keys().map(String::as_str).collect();
    let mut listed = SPEC_FIELDS.to_vec();
    keys.sort();
    listed.sort();
    assert_eq!(keys, listed);
}

#[test]
fn channels_by_kind_group_time_command_and_destination() {
    let p = compile(
        "p",
        "ops",
        &spec(
            r#"{"protocol":"ssh","channels":[
            {"kind":"shell","groups":["g-ops"]},
            {"kind":"exec","commands":["^uptime$","^df( -h)?$"]},
            {"kind":"local_forward","destinations":["db*.internal:5432"]},
            {"kind":"sftp","windows":[{"days":["mon-fri"],"start":"09:00","end":"17:00"}]}]}"#,
        ),
    )
    .unwrap();
    // 2026-11-30 is a Monday.
    let monday_10 = Timestamp::from_second(1_796_032_800).unwrap().as_microsecond();
    assert_eq!(Timestamp::from_microsecond(monday_10).unwrap().to_string(), "2026-11-30T10:00:00Z", "fixture time");
    let sunday = monday_10 - 86_400_000_000;
    let ops = vec!["g-ops".to_string()];
    let ask = |kind, groups: &'static [String], at, command, destination| ChannelAsk {
        kind,
        groups,
        at,
        command,
        destination,
    };
    let ops: &'static [String] = Box::leak(ops.into_boxed_slice());
    assert!(p.channel(&ask(ChannelKind::Shell, ops, monday_10, None, None)).is_ok());
    assert!(p.channel(&ask(ChannelKind::Shell, &[], monday_10, None, None)).unwrap_err().contains("groups"));
    assert!(p.channel(&ask(ChannelKind::Exec, &[], monday_10, Some("uptime"), None)).is_ok());
    assert!(p.channel(&ask(ChannelKind::Exec, &[], monday_10, Some("df -h"), None)).is_ok());
    assert!(p.channel(&ask(ChannelKind::Exec, &[], monday_10, Some("rm -rf /"), None)).is_err());
    assert!(p.channel(&ask(ChannelKind::LocalForward, &[], 0, None, Some(("db1.internal", 5432)))).is_ok());
    assert!(p
        .channel(&ask(ChannelKind::LocalForward, &[], 0, None, Some(("web.internal", 5432))))
        .unwrap_err()
        .contains("web.internal:5432"));
    assert!(p.channel(&ask(ChannelKind::Sftp, &[], monday_10, None, None)).is_ok());
    assert!(p.channel(&ask(ChannelKind::Sftp, &[], sunday, None, None)).unwrap_err().contains("at this time"));
    assert!(p.channel(&ask(ChannelKind::X11, ops, monday_10, None, None)).unwrap_err().contains("X11"));
    assert!(p.any_channel(&[], sunday));
    let none = compile("n", "n", &spec(r#"{"protocol":"ssh"}"#)).unwrap();
    assert!(!none.any_channel(ops, monday_10));
}

#[test]
fn translation_and_wildcards() {
    let p = compile("p", "p", &spec(r#"{"protocol":"ssh","translate":{"address":"127.0.0.1","port":2201}}"#)).unwrap();
    assert_eq!(p.destination("db1.example", 22), ("127.0.0.1".into(), 2201));
    assert!(wildcard("db*", "DB12"));
    assert!(wildcard("*.internal", "a.b.internal"));
    assert!(!wildcard("db*x", "db12"));
    assert!(wildcard("*", ""));
    assert!(!wildcard("", "a"));
    assert!(wildcard("a*b*c", "axxbyyc"));
}

#[test]
fn the_default_policy_compiles_and_admits_ssh() {
    let p = compile("d", "default", &default_spec()).unwrap();
    assert!(p.miss(&facts("203.0.113.9", "any")).is_none());
    assert!(p
        .channel(&ChannelAsk { kind: ChannelKind::Sftp, groups: &[], at: 0, command: None, destination: None })
        .is_ok());
    assert!(p
        .channel(&ChannelAsk { kind: ChannelKind::X11, groups: &[], at: 0, command: None, destination: None })
        .is_err());
}
