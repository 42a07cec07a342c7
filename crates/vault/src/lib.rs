//! The vault (R-VAULT-2): the key hierarchy, envelope encryption of credentials, and
//! password generation. This is the only crate in which credential plaintext exists; it
//! leaves only through [`Plaintext`], which has no `Debug`, `Display` or serialization, so a
//! secret can reach a log, an error or a response only by an explicit, audited checkout.
//!
//! Key hierarchy: a key-encryption key (KEK, 256 bits) lives outside the database (a 0600
//! key file, an environment variable or a key command). Every secret version is encrypted
//! with its own random data key (DEK) under XChaCha20-Poly1305; the DEK is wrapped by the
//! KEK. Associated data binds the ciphertext to its account, kind and version, and the
//! wrapped DEK to the same and to the KEK's id, so swapping ciphertexts between rows fails.

mod envelope;
mod keyring;
mod password;
mod ssh_keys;

pub use envelope::{open, rewrap, seal, Sealed, SecretContext};
pub use keyring::{Kek, KeyRing};
pub use password::{generate_password, PasswordProfile};
pub use ssh_keys::{
    generate_ssh_key, import_ssh_key, parse_public_key, sign_possession, verify_possession, KeyAlgorithm, SshKeyPair,
    SIGNATURE_NAMESPACE,
};

/// Plaintext secret material. Wiped when dropped; prints as `[redacted]`.
pub struct Plaintext(zeroize::Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(zeroize::Zeroizing::new(bytes))
    }

    /// The bytes, for the one place that needs them (checkout, a connector).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    /// The secret was encrypted under a KEK this server does not have.
    #[error("the key that encrypted this secret ({0}) is not loaded")]
    UnknownKek(String),
    /// Decryption failed: wrong key, or the row was altered or moved.
    #[error("the secret cannot be decrypted: it was altered, moved to another row, or the key is wrong")]
    Tampered,
    #[error("invalid key material: {0}")]
    BadKey(String),
    #[error("{0}")]
    Profile(String),
}
