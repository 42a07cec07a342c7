//! The harness itself: a real sshd on 127.0.0.1 accepts a throwaway user's password through
//! the real ssh client, refuses a wrong one, and follows a password change.

use portcullis_testkit::sshd::{ssh_with_password, Sshd, UnixUser};

#[test]
fn real_sshd_with_a_throwaway_user() {
    let sshd = Sshd::start();
    assert!(sshd.host_key().starts_with("ssh-ed25519 "));
    let user = UnixUser::create("first-pass-1234");
    let (code, out, err) = ssh_with_password(sshd.port(), &user.name, "first-pass-1234", "echo ok; id -un");
    assert_eq!(code, Some(0), "{err}\n{}", sshd.log());
    assert_eq!(out, format!("ok\n{}\n", user.name));
    let (code, _, _) = ssh_with_password(sshd.port(), &user.name, "wrong-pass", "true");
    assert_ne!(code, Some(0), "a wrong password must be refused");
    user.set_password("second-pass-5678");
    assert_ne!(ssh_with_password(sshd.port(), &user.name, "first-pass-1234", "true").0, Some(0));
    assert_eq!(ssh_with_password(sshd.port(), &user.name, "second-pass-5678", "true").0, Some(0));
}
