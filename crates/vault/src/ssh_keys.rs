//! SSH private keys for accounts: generated (Ed25519 or RSA) or imported in OpenSSH format.
//! The private key exists only as [`Plaintext`]; the public key is for display and for the
//! target's `authorized_keys`.

use ssh_key::private::RsaKeypair;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::{Plaintext, VaultError};

/// Key types Portcullis generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Ed25519,
    /// RSA with this many bits (3072 or 4096).
    Rsa(usize),
}

/// A private key in OpenSSH format and its public key (`TYPE BASE64 COMMENT`).
pub struct SshKeyPair {
    pub private_openssh: Plaintext,
    pub public_openssh: String,
}

fn pair(key: &PrivateKey) -> Result<SshKeyPair, VaultError> {
    let private = key.to_openssh(LineEnding::LF).map_err(|e| VaultError::BadKey(e.to_string()))?;
    let public = key.public_key().to_openssh().map_err(|e| VaultError::BadKey(e.to_string()))?;
    Ok(SshKeyPair { private_openssh: Plaintext::new(private.as_bytes().to_vec()), public_openssh: public })
}

/// Generates a new key pair with the OS CSPRNG.
pub fn generate_ssh_key(algorithm: KeyAlgorithm, comment: &str) -> Result<SshKeyPair, VaultError> {
    let mut rng = rand::rngs::OsRng;
    let mut key = match algorithm {
        KeyAlgorithm::Ed25519 => {
            PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(|e| VaultError::BadKey(e.to_string()))?
        }
        KeyAlgorithm::Rsa(bits) => {
            if !(bits == 3072 || bits == 4096) {
                return Err(VaultError::BadKey("RSA keys are 3072 or 4096 bits".into()));
            }
            let kp = RsaKeypair::random(&mut rng, bits).map_err(|e| VaultError::BadKey(e.to_string()))?;
            PrivateKey::from(kp)
        }
    };
    key.set_comment(comment);
    pair(&key)
}

/// Parses an unencrypted OpenSSH private key (Ed25519 or RSA of at least 2048 bits).
pub fn import_ssh_key(openssh: &[u8]) -> Result<SshKeyPair, VaultError> {
    let text = std::str::from_utf8(openssh).map_err(|_| VaultError::BadKey("the private key is not text".into()))?;
    let key = PrivateKey::from_openssh(text.trim())
        .map_err(|_| VaultError::BadKey("not an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----)".into()))?;
    if key.is_encrypted() {
        return Err(VaultError::BadKey("the private key is encrypted with a passphrase; import it decrypted".into()));
    }
    match key.algorithm() {
        Algorithm::Ed25519 => {}
        Algorithm::Rsa { .. } => {
            let bits =
                key.key_data().rsa().map(|k| k.public.n.as_positive_bytes().map_or(0, |b| b.len() * 8)).unwrap_or(0);
            if bits < 2048 {
                return Err(VaultError::BadKey(format!("RSA keys must have at least 2048 bits (this one has {bits})")));
            }
        }
        other => return Err(VaultError::BadKey(format!("unsupported key type {other}; use Ed25519 or RSA"))),
    }
    pair(&key)
}

/// A user's public key, parsed: (normalized "algorithm base64" line, SHA256 fingerprint as
/// OpenSSH prints it). Ed25519, ECDSA, and RSA of at least 2048 bits.
pub fn parse_public_key(text: &str) -> Result<(String, String), VaultError> {
    let text = text.trim();
    if text.contains("PRIVATE KEY") {
        return Err(VaultError::BadKey("this is a private key; give the public key (the .pub file)".into()));
    }
    let key = ssh_key::PublicKey::from_openssh(text)
        .map_err(|_| VaultError::BadKey("not an OpenSSH public key (e.g. ssh-ed25519 AAAA…)".into()))?;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => {}
        Algorithm::Rsa { .. } => {
            let bits = key.key_data().rsa().map(|k| k.n.as_positive_bytes().map_or(0, |b| b.len() * 8)).unwrap_or(0);
            if bits < 2048 {
                return Err(VaultError::BadKey(format!("RSA keys must have at least 2048 bits (this one has {bits})")));
            }
        }
        other => return Err(VaultError::BadKey(format!("unsupported key type {other}; use Ed25519, ECDSA or RSA"))),
    }
    let mut plain = key.clone();
    plain.set_comment("");
    let line = plain.to_openssh().map_err(|e| VaultError::BadKey(e.to_string()))?.trim().to_owned();
    Ok((line, key.fingerprint(ssh_key::HashAlg::Sha256).to_string()))
}

/// The namespace of registration signatures (`ssh-keygen -Y sign -n portcullis`).
pub const SIGNATURE_NAMESPACE: &str = "portcullis";

/// Checks that `signature` (an armored `SSH SIGNATURE`, as `ssh-keygen -Y sign` writes it) was
/// made by the private half of `public_key` over `message` in [`SIGNATURE_NAMESPACE`]: proof
/// that whoever registers a public key holds it.
pub fn verify_possession(public_key: &str, message: &[u8], signature: &str) -> Result<(), VaultError> {
    let key = ssh_key::PublicKey::from_openssh(public_key.trim())
        .map_err(|_| VaultError::BadKey("not an OpenSSH public key".into()))?;
    let sig = ssh_key::SshSig::from_pem(signature.trim()).map_err(|_| {
        VaultError::BadKey("the signature is not an SSH signature (-----BEGIN SSH SIGNATURE----- …)".into())
    })?;
    if sig.public_key() != key.key_data() {
        return Err(VaultError::BadKey("the signature was made with another key than this one".into()));
    }
    if sig.namespace() != SIGNATURE_NAMESPACE {
        return Err(VaultError::BadKey(format!(
            "the signature is for the namespace '{}'; sign with -n {SIGNATURE_NAMESPACE}",
            sig.namespace()
        )));
    }
    key.verify(SIGNATURE_NAMESPACE, message, &sig)
        .map_err(|_| VaultError::BadKey("the signature does not match the challenge text; sign it exactly".into()))
}

/// Signs `message` for registration with an OpenSSH private key (what `ssh-keygen -Y sign -n
/// portcullis` does), for clients that hold the key in memory (the benchmark harness).
pub fn sign_possession(private_openssh: &[u8], message: &[u8]) -> Result<String, VaultError> {
    let key = ssh_key::PrivateKey::from_openssh(private_openssh)
        .map_err(|_| VaultError::BadKey("not an OpenSSH private key".into()))?;
    let sig = key
        .sign(SIGNATURE_NAMESPACE, ssh_key::HashAlg::Sha512, message)
        .map_err(|e| VaultError::BadKey(e.to_string()))?;
    sig.to_pem(ssh_key::LineEnding::LF).map_err(|e| VaultError::BadKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn possession_is_proved_by_a_signature_of_the_challenge() {
        let k = generate_ssh_key(KeyAlgorithm::Ed25519, "me").unwrap();
        let other = generate_ssh_key(KeyAlgorithm::Ed25519, "someone").unwrap();
        let sig = sign_possession(k.private_openssh.expose(), b"challenge for alice").unwrap();
        assert!(verify_possession(&k.public_openssh, b"challenge for alice", &sig).is_ok());
        assert!(verify_possession(&k.public_openssh, b"challenge for mallory", &sig).is_err(), "another text");
        let err = verify_possession(&other.public_openssh, b"challenge for alice", &sig).unwrap_err();
        assert!(err.to_string().contains("another key"), "{err}");
        assert!(verify_possession(&k.public_openssh, b"challenge for alice", "nonsense").is_err());
    }

    #[test]
    fn generate_and_reimport() {
        let k = generate_ssh_key(KeyAlgorithm::Ed25519, "root@db1").unwrap();
        assert!(k.public_openssh.starts_with("ssh-ed25519 ") && k.public_openssh.ends_with("root@db1"));
        let again = import_ssh_key(k.private_openssh.expose()).unwrap();
        assert_eq!(again.public_openssh, k.public_openssh);
        assert_eq!(format!("{:?}", k.private_openssh), "[redacted]");
    }

    #[test]
    fn public_keys() {
        let k = generate_ssh_key(KeyAlgorithm::Ed25519, "me@laptop").unwrap();
        let (line, fp) = parse_public_key(&k.public_openssh).unwrap();
        assert!(line.starts_with("ssh-ed25519 ") && !line.contains("laptop"));
        assert!(fp.starts_with("SHA256:"));
        assert!(parse_public_key("ssh-ed25519 garbage").is_err());
        assert!(parse_public_key(std::str::from_utf8(k.private_openssh.expose()).unwrap()).is_err());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(import_ssh_key(b"not a key").is_err());
        assert!(
            import_ssh_key(b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----").is_err()
        );
        assert!(generate_ssh_key(KeyAlgorithm::Rsa(1024), "x").is_err());
    }
}
