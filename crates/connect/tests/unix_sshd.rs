//! The Linux connector against a real OpenSSH sshd and real throwaway Unix users.

use std::time::Duration;

use portcullis_connect::{for_platform, ConnectError, Credential, Login, NewKey, Plaintext, Target};
use portcullis_testkit::sshd::{ssh_with_password, Sshd, UnixUser};
use portcullis_vault::{generate_ssh_key, KeyAlgorithm};

fn target(sshd: &Sshd, host_key: Option<String>) -> Target {
    Target { host: "127.0.0.1".into(), port: sshd.port(), host_key, timeout: Duration::from_secs(10) }
}

fn pw(text: &str) -> Plaintext {
    Plaintext::new(text.as_bytes().to_vec())
}

fn ssh_with_key(port: u16, user: &str, key: &Plaintext) -> Option<i32> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id");
    std::fs::write(&path, key.expose()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::process::Command::new("ssh")
        .args(["-p", &port.to_string(), "-i"])
        .arg(&path)
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "PasswordAuthentication=no", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"])
        .arg(format!("{user}@127.0.0.1"))
        .arg("true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .status
        .code()
}

#[tokio::test]
async fn check_and_change_password_as_the_account_itself() {
    let sshd = Sshd::start();
    let old = "Old-pass-1234-xyz";
    let user = UnixUser::create(old);
    let linux = for_platform("linux").unwrap();
    let t = target(&sshd, Some(sshd.host_key()));

    let old_pw = pw(old);
    let seen =
        linux.check(&t, Login { username: &user.name, credential: Credential::Password(&old_pw) }).await.unwrap();
    assert_eq!(seen.host_key.split_whitespace().nth(1), sshd.host_key().split_whitespace().nth(1));

    let wrong = pw("not-the-password");
    let err = linux.check(&t, Login { username: &user.name, credential: Credential::Password(&wrong) }).await;
    assert_eq!(err, Err(ConnectError::AuthenticationFailed(user.name.clone())));

    let new = pw("New-pass-98765-Qrst!");
    linux
        .change_password(
            &t,
            &user.name,
            Login { username: &user.name, credential: Credential::Password(&old_pw) },
            &new,
        )
        .await
        .unwrap();
    assert_eq!(ssh_with_password(sshd.port(), &user.name, "New-pass-98765-Qrst!", "true").0, Some(0));
    assert_ne!(ssh_with_password(sshd.port(), &user.name, old, "true").0, Some(0));

    // A new password the target's policy rejects (pam_unix: too short): a clear refusal
    // with passwd's own message, and the working password stays.
    let current = pw("New-pass-98765-Qrst!");
    let palindrome = pw("Ab1");
    let err = linux
        .change_password(
            &t,
            &user.name,
            Login { username: &user.name, credential: Credential::Password(&current) },
            &palindrome,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Refused(_)), "{err:?}");
    assert!(!err.to_string().contains("Ab1"), "{err}");
    assert_eq!(ssh_with_password(sshd.port(), &user.name, "New-pass-98765-Qrst!", "true").0, Some(0));

    // Logging in with a wrong current password changes nothing.
    let newer = pw("Newer-pass-55555-Zz?");
    let err = linux
        .change_password(
            &t,
            &user.name,
            Login { username: &user.name, credential: Credential::Password(&old_pw) },
            &newer,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::AuthenticationFailed(_)), "{err:?}");
    assert_eq!(ssh_with_password(sshd.port(), &user.name, "New-pass-98765-Qrst!", "true").0, Some(0));
}

#[tokio::test]
async fn pinned_host_key_mismatch_is_refused_and_unreachable_is_clear() {
    let sshd = Sshd::start();
    let user = UnixUser::create("Pass-word-0001-abc");
    let linux = for_platform("unix").unwrap();
    let other = generate_ssh_key(KeyAlgorithm::Ed25519, "other").unwrap();
    let t = target(&sshd, Some(other.public_openssh.clone()));
    let p = pw("Pass-word-0001-abc");
    let err = linux.check(&t, Login { username: &user.name, credential: Credential::Password(&p) }).await.unwrap_err();
    assert!(matches!(err, ConnectError::HostKeyMismatch { .. }), "{err:?}");
    assert_eq!(err.code(), "host_key_mismatch");

    let gone = Target { port: portcullis_testkit::free_port(), ..target(&sshd, None) };
    let err =
        linux.check(&gone, Login { username: &user.name, credential: Credential::Password(&p) }).await.unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable(_)), "{err:?}");
    assert!(for_platform("windows").is_none());
}

#[tokio::test]
async fn replace_key_installs_the_new_key_and_removes_the_old() {
    let sshd = Sshd::start();
    let user = UnixUser::create("Pass-word-0002-abc");
    let linux = for_platform("linux").unwrap();
    let t = target(&sshd, None);
    let old = generate_ssh_key(KeyAlgorithm::Ed25519, "old").unwrap();
    // The administrator installed the old key by hand, with a comment and another key beside it.
    let other = generate_ssh_key(KeyAlgorithm::Ed25519, "someone-else").unwrap();
    std::fs::create_dir_all(user.home.join(".ssh")).unwrap();
    std::fs::write(
        user.home.join(".ssh/authorized_keys"),
        format!(
            "{}\n{} admin@laptop\n",
            other.public_openssh,
            old.public_openssh.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        ),
    )
    .unwrap();
    let chown =
        std::process::Command::new("chown").arg("-R").arg(&user.name).arg(user.home.join(".ssh")).status().unwrap();
    assert!(chown.success());
    assert_eq!(ssh_with_key(sshd.port(), &user.name, &old.private_openssh), Some(0));

    let new = generate_ssh_key(KeyAlgorithm::Rsa(3072), "new").unwrap();
    linux
        .replace_key(
            &t,
            &user.name,
            Login { username: &user.name, credential: Credential::PrivateKey(&old.private_openssh) },
            Some(&old.public_openssh),
            NewKey { private_openssh: &new.private_openssh, public_openssh: &new.public_openssh },
        )
        .await
        .unwrap();
    assert_eq!(ssh_with_key(sshd.port(), &user.name, &new.private_openssh), Some(0));
    assert_ne!(ssh_with_key(sshd.port(), &user.name, &old.private_openssh), Some(0));
    let keys = std::fs::read_to_string(user.home.join(".ssh/authorized_keys")).unwrap();
    assert!(keys.contains(other.public_openssh.split_whitespace().nth(1).unwrap()), "{keys}");

    // A "new" key whose private half does not match the public one never logs in: it is
    // taken out again and the current key stays.
    let mismatched = generate_ssh_key(KeyAlgorithm::Ed25519, "x").unwrap();
    let err = linux
        .replace_key(
            &t,
            &user.name,
            Login { username: &user.name, credential: Credential::PrivateKey(&new.private_openssh) },
            Some(&new.public_openssh),
            NewKey { private_openssh: &mismatched.private_openssh, public_openssh: &old.public_openssh },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::VerificationFailed(_)), "{err:?}");
    assert_eq!(ssh_with_key(sshd.port(), &user.name, &new.private_openssh), Some(0));
    assert_ne!(ssh_with_key(sshd.port(), &user.name, &old.private_openssh), Some(0));
}
