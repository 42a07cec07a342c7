//! Ways in: launch tokens, plink, port forwarding, public keys and one-time codes, the
//! listener under abuse, the algorithms offered.

use super::*;

#[tokio::test]
async fn launch_tokens_plink_and_port_forwarding() {
    let w = world(json!({ "port_forwarding": true })).await;
    let request = w.request().await;

    // A launch token: one use, for the requester only, and ready-made commands.
    let (s, b) = post(&w.server, &w.admin, &format!("/api/v1/requests/{request}/launch"), json!({})).await;
    assert_eq!(s, 403, "{b}");
    let (s, launch) = post(&w.server, &w.alice, &format!("/api/v1/requests/{request}/launch"), json!({})).await;
    assert_eq!(s, 200, "{launch}");
    let token = launch["token"].as_str().unwrap();
    assert!(launch["ssh"].as_str().unwrap().contains(&format!("{token}@127.0.0.1")), "{launch}");
    let token_ssh = |cmd: &str| {
        Command::new("ssh")
            .args(["-p", &w.server.ssh_port.to_string(), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg(format!("{token}@127.0.0.1"))
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = token_ssh("echo via-token");
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).trim()), (Some(0), "via-token"), "{}", text(&o));
    let o = token_ssh("echo again");
    assert_eq!(o.status.code(), Some(255), "a launch token works once: {}", text(&o));
    // … and the refused reuse is an audit event.
    let (_, page) =
        w.server.call("GET", "/api/v1/audit/events?action=session.launch_token&limit=100", Some(&w.admin), None).await;
    let refused = page["events"].as_array().unwrap();
    let denied =
        |e: &&Value| e["outcome"] == "denied" && e["source"].as_str().is_some_and(|s| s.starts_with("127.0.0.1"));
    assert!(refused.iter().any(|e| denied(&e)), "{page}");

    // `serve` printed the fingerprints `ssh` shows on first connect, and a known_hosts line.
    let banner = w.server.all_output();
    let fp = proxy_fingerprint(&w);
    assert!(banner.contains(&format!("SSH host key fingerprint: {fp} (ssh-ed25519)")), "{banner}");
    assert!(banner.contains("SSH host key fingerprint: SHA256:") && banner.contains("(ssh-rsa)"), "{banner}");
    let pub_key = std::fs::read_to_string(w.server.data_dir().join("keys/ssh_host_ed25519_key.pub")).unwrap();
    let key_blob = pub_key.split_whitespace().nth(1).unwrap();
    let line = format!("known_hosts line: [127.0.0.1]:{} ssh-ed25519 {key_blob}", w.server.ssh_port);
    assert!(banner.contains(&line), "{banner}");
    assert!(!banner.contains('\u{1b}'), "no terminal colour codes in a log file: {banner}");

    // PuTTY's plink, with the proxy's host key pinned.
    let o = Command::new("plink")
        .args(["-ssh", "-batch", "-P", &w.server.ssh_port.to_string(), "-l", &w.login(), "-pw", ALICE_PW])
        .args(["-hostkey", &proxy_fingerprint(&w), "127.0.0.1", "echo from plink; exit 4"])
        .stdin(Stdio::null())
        .output()
        .expect("plink (scripts/test installs putty-tools)");
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("from plink"), "{}", text(&o));

    // ssh -L, allowed by this policy: the forwarded port reaches the target's sshd.
    let local = portcullis_testkit::free_port();
    let mut fwd = w.base("ssh", ALICE_PW);
    fwd.args(["-N", "-p", &w.server.ssh_port.to_string()]);
    fwd.args(["-L", &format!("127.0.0.1:{local}:127.0.0.1:{}", w.sshd.port()), &w.dest()]);
    let mut child = fwd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let banner = read_banner(local).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner:?}");
    let (_, e) = w.server.call("GET", &format!("/api/v1/sessions?request_id={request}"), Some(&w.admin), None).await;
    assert!(e.as_array().unwrap().len() >= 3, "{e}");
}

/// Connects to a local forwarded port and reads what arrives first (empty if refused).
pub(super) async fn read_banner(port: u16) -> String {
    use tokio::io::AsyncReadExt;
    for _ in 0..100 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut buf = vec![0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap_or(Ok(0)).unwrap_or(0);
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    String::new()
}

#[tokio::test]
async fn forwarding_refused_by_default_and_the_listener_survives_abuse() {
    let w = world(json!({})).await;
    w.request().await;
    let local = portcullis_testkit::free_port();
    let mut fwd = w.base("ssh", ALICE_PW);
    fwd.args(["-N", "-p", &w.server.ssh_port.to_string()]);
    fwd.args(["-L", &format!("127.0.0.1:{local}:127.0.0.1:{}", w.sshd.port()), &w.dest()]);
    let mut child = fwd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let banner = read_banner(local).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(banner, "", "port forwarding must be refused unless the policy allows it");

    // Random bytes and half-open connections on the listener: closed, no harm.
    use tokio::io::AsyncWriteExt;
    for i in 0..20 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", w.server.ssh_port)).await.unwrap();
        let _ = s.write_all(&random(1000 + i * 500)).await;
        drop(s);
    }
    let idle: Vec<_> = futures_util::future::join_all(
        (0..50).map(|_| tokio::net::TcpStream::connect(("127.0.0.1", w.server.ssh_port))),
    )
    .await;

    // A client opening far more channels than allowed: the extra ones are refused.
    let target = portcullis_connect::Target {
        host: "127.0.0.1".into(),
        port: w.server.ssh_port,
        host_key: None,
        timeout: Duration::from_secs(10),
    };
    let client = portcullis_connect::session_with_password(&target, &w.login(), ALICE_PW).await.unwrap();
    let handle = client.into_handle();
    let mut opened = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match handle.channel_open_session().await {
            Ok(c) => opened.push(c),
            Err(_) => refused += 1,
        }
    }
    assert_eq!((opened.len(), refused), (32, 168));
    drop(opened);
    drop(handle);
    drop(idle);

    // Still serving.
    let o = w.ssh(&[&w.dest(), "echo alive"], b"");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "alive", "{}", text(&o));
}

#[tokio::test]
async fn ssh_audit_finds_no_weak_algorithms() {
    let w = world(json!({})).await;
    let tool = std::env::var("PORTCULLIS_SSH_AUDIT")
        .unwrap_or_else(|_| format!("{}/../../.venv/bin/ssh-audit", env!("CARGO_MANIFEST_DIR")));
    let o = Command::new(&tool)
        .args(["-p", &w.server.ssh_port.to_string(), "127.0.0.1"])
        .output()
        .expect("ssh-audit (scripts/test installs it into .venv)");
    let report = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "ssh-audit reported warnings or failures:\n{report}");
    assert!(report.contains("ssh-ed25519"), "{report}");
    // Compression only after sign-in (issue 13, finding 21): plain "zlib" is not offered.
    assert!(report.contains("compression: enabled (zlib@openssh.com)"), "{report}");
}

#[tokio::test]
async fn public_keys_and_one_time_codes() {
    let w = world(json!({})).await;
    w.request().await;
    let dir = tempfile::tempdir().unwrap();

    // A key registered with the CLI signs alice in; an unregistered one does not.
    let key = portcullis_vault::generate_ssh_key(portcullis_vault::KeyAlgorithm::Ed25519, "alice@laptop").unwrap();
    let priv_path = dir.path().join("id");
    std::fs::write(&priv_path, key.private_openssh.expose()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&priv_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.path().join("id.pub"), &key.public_openssh).unwrap();
    let cfg = dir.path().join("cli.json").display().to_string();
    let o = w.server.cli(
        &["login", "--server", &w.server.url, "--username", "alice"],
        &[("PORTCULLIS_CLI_CONFIG", &cfg), ("PORTCULLIS_PASSWORD", ALICE_PW)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let pubfile = dir.path().join("id.pub").display().to_string();

    // Squatting (issue 13, finding 20): mallory registers alice's public key first. Without a
    // signature, with one alice made for herself, or with his own key's: refused each time.
    let (_, mallory) = w.server.user_with_roles(&w.admin, "mallory", &[]).await;
    let add = |signature: Option<String>| {
        let mut body = json!({ "name": "hers", "public_key": key.public_openssh });
        if let Some(s) = signature {
            body["signature"] = json!(s);
        }
        body
    };
    let (_, alice_challenge) = w.server.call("GET", "/api/v1/me/ssh-keys/challenge", Some(&w.alice), None).await;
    let (_, mallory_challenge) = w.server.call("GET", "/api/v1/me/ssh-keys/challenge", Some(&mallory), None).await;
    assert!(alice_challenge["challenge"].as_str().unwrap().contains("user: alice"), "{alice_challenge}");
    let sign = |private: &[u8], challenge: &serde_json::Value| {
        portcullis_vault::sign_possession(private, challenge["challenge"].as_str().unwrap().as_bytes()).unwrap()
    };
    let hers_for_her = sign(key.private_openssh.expose(), &alice_challenge);
    let his = portcullis_vault::generate_ssh_key(portcullis_vault::KeyAlgorithm::Ed25519, "mallory").unwrap();
    let his_for_him = sign(his.private_openssh.expose(), &mallory_challenge);
    for (signature, says) in [
        (None, "prove you hold the key"),
        (Some(hers_for_her), "does not match the challenge"),
        (Some(his_for_him), "made with another key"),
    ] {
        let (s, v) = w.server.call("POST", "/api/v1/me/ssh-keys", Some(&mallory), Some(add(signature))).await;
        assert_eq!((s, v["field"].as_str()), (422, Some("signature")), "{v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{says}: {v}");
    }

    // alice registers it with the CLI, which signs the challenge with ssh-keygen.
    let o =
        w.server.cli(&["ssh-key", "add", "--name", "laptop", "--file", &pubfile], &[("PORTCULLIS_CLI_CONFIG", &cfg)]);
    assert!(o.status.success(), "{}", text(&o));
    let o =
        w.server.cli(&["ssh-key", "add", "--name", "again", "--file", &pubfile], &[("PORTCULLIS_CLI_CONFIG", &cfg)]);
    assert_eq!(o.status.code(), Some(1), "a key registers once: {}", text(&o));
    let with_key = |path: &std::path::Path| {
        Command::new("ssh")
            .args(["-p", &w.server.ssh_port.to_string(), "-i"])
            .arg(path)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg(w.dest())
            .arg("echo by-key")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = with_key(&priv_path);
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).trim()), (Some(0), "by-key"), "{}", text(&o));
    let other = portcullis_vault::generate_ssh_key(portcullis_vault::KeyAlgorithm::Ed25519, "x").unwrap();
    let other_path = dir.path().join("other");
    std::fs::write(&other_path, other.private_openssh.expose()).unwrap();
    std::fs::set_permissions(&other_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(with_key(&other_path).status.code(), Some(255));

    // Enrolled in one-time codes: password alone is not enough; keyboard-interactive asks
    // for both.
    let (_, e) = w.server.call("POST", "/api/v1/me/totp", Some(&w.alice), None).await;
    let secret = portcullis_core::totp::decode_secret(e["secret"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let code = |step: i64| {
        format!("{:06}", portcullis_core::totp::code_at_step(&secret, portcullis_core::totp::step_of(now) + step))
    };
    let (s, b) =
        w.server.call("POST", "/api/v1/me/totp/confirm", Some(&w.alice), Some(json!({ "code": code(0) }))).await;
    assert_eq!(s, 204, "{b}");
    let o = w.ssh(&[&w.dest(), "true"], b"");
    assert_ne!(o.status.code(), Some(0), "password alone must not do: {}", text(&o));
    let askpass = dir.path().join("askpass");
    std::fs::write(
        &askpass,
        format!(
            "#!/bin/sh\necho \"$1\" >> {}\ncase \"$1\" in *code*) echo {};; *) echo '{ALICE_PW}';; esac\n",
            dir.path().join("prompts").display(),
            code(1)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new("ssh")
        .args(["-p", &w.server.ssh_port.to_string(), "-o", "PreferredAuthentications=keyboard-interactive"])
        .args(["-o", "PubkeyAuthentication=no", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR"])
        .arg(w.dest())
        .arg("echo with-code")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).trim()), (Some(0), "with-code"), "{}", text(&o));
    // The code is asked for only after the right password: the first prompt is everyone's, so
    // it does not tell who has a second factor (issue 13, finding 19).
    let prompts = std::fs::read_to_string(dir.path().join("prompts")).unwrap();
    // OpenSSH puts "(user@host) " before each prompt.
    let prompts: Vec<&str> = prompts.lines().map(|l| l.rsplit_once(") ").map_or(l, |(_, p)| p)).collect();
    assert_eq!(prompts, ["Portcullis password: ", "One-time code: "], "{prompts:?}");
}
