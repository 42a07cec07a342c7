use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::VaultError;

/// A key-encryption key with its public id (the first 8 bytes of SHA-256 of the key, hex).
pub struct Kek {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl Kek {
    pub fn from_bytes(bytes: &[u8]) -> Result<Kek, VaultError> {
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| VaultError::BadKey(format!("expected 32 bytes, found {}", bytes.len())))?;
        let digest = Sha256::digest(b"portcullis-kek-id-v1".iter().chain(key.iter()).copied().collect::<Vec<u8>>());
        Ok(Kek { id: data_encoding::HEXLOWER.encode(&digest[..8]), key: Zeroizing::new(key) })
    }

    /// Parses 64 hex digits or standard base64 (for keys given in an environment variable).
    pub fn from_text(text: &str) -> Result<Kek, VaultError> {
        let t = text.trim();
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(t.as_bytes())
            .or_else(|_| data_encoding::BASE64.decode(t.as_bytes()))
            .map_err(|_| VaultError::BadKey("expected 64 hex digits or base64 of 32 bytes".into()))?;
        Kek::from_bytes(&Zeroizing::new(bytes))
    }

    pub fn generate() -> Kek {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, key.as_mut());
        Kek::from_bytes(key.as_ref()).expect("32 bytes")
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The raw key, to write to the key file.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.key)
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The KEK new secrets are sealed with, and older KEKs still needed to open existing ones
/// (during and after a rotation).
#[derive(Debug)]
pub struct KeyRing {
    current: Kek,
    previous: Vec<Kek>,
}

impl KeyRing {
    pub fn new(current: Kek, previous: Vec<Kek>) -> KeyRing {
        KeyRing { current, previous }
    }

    pub fn current(&self) -> &Kek {
        &self.current
    }

    pub fn get(&self, id: &str) -> Result<&Kek, VaultError> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| VaultError::UnknownKek(id.to_owned()))
    }
}
