//! Envelope encryption with XChaCha20-Poly1305 (192-bit random nonces, so random nonces are
//! safe without a counter).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{KeyRing, Plaintext, VaultError};

/// Which row a secret belongs to; bound into the associated data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretContext {
    pub account_id: String,
    /// `password` or `ssh_key`.
    pub kind: String,
    pub version: i64,
}

impl SecretContext {
    fn secret_aad(&self) -> Vec<u8> {
        format!("portcullis-secret-v1\0{}\0{}\0{}", self.account_id, self.kind, self.version).into_bytes()
    }

    fn dek_aad(&self, kek_id: &str) -> Vec<u8> {
        format!("portcullis-dek-v1\0{}\0{}\0{}\0{}", self.account_id, self.kind, self.version, kek_id).into_bytes()
    }
}

/// What the store keeps for one secret version. Nothing here is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    pub nonce: [u8; 24],
    pub wrapped_dek: Vec<u8>,
    pub dek_nonce: [u8; 24],
    pub kek_id: String,
}

fn nonce() -> [u8; 24] {
    let mut n = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// Encrypts `plaintext` for `ctx` under a fresh data key wrapped by the ring's current KEK.
pub fn seal(ring: &KeyRing, ctx: &SecretContext, plaintext: &[u8]) -> Sealed {
    let mut dek = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(dek.as_mut());
    let (n, dn) = (nonce(), nonce());
    let ciphertext = cipher(&dek)
        .encrypt(XNonce::from_slice(&n), Payload { msg: plaintext, aad: &ctx.secret_aad() })
        .expect("encryption of an in-memory buffer cannot fail");
    let kek = ring.current();
    let wrapped_dek = cipher(kek.key())
        .encrypt(XNonce::from_slice(&dn), Payload { msg: dek.as_ref(), aad: &ctx.dek_aad(kek.id()) })
        .expect("encryption of an in-memory buffer cannot fail");
    Sealed { ciphertext, nonce: n, wrapped_dek, dek_nonce: dn, kek_id: kek.id().to_owned() }
}

fn unwrap_dek(ring: &KeyRing, ctx: &SecretContext, sealed: &Sealed) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let kek = ring.get(&sealed.kek_id)?;
    let dek = Zeroizing::new(
        cipher(kek.key())
            .decrypt(
                XNonce::from_slice(&sealed.dek_nonce),
                Payload { msg: &sealed.wrapped_dek, aad: &ctx.dek_aad(&sealed.kek_id) },
            )
            .map_err(|_| VaultError::Tampered)?,
    );
    let key: [u8; 32] = dek.as_slice().try_into().map_err(|_| VaultError::Tampered)?;
    Ok(Zeroizing::new(key))
}

/// Decrypts a sealed secret of `ctx`.
pub fn open(ring: &KeyRing, ctx: &SecretContext, sealed: &Sealed) -> Result<Plaintext, VaultError> {
    let dek = unwrap_dek(ring, ctx, sealed)?;
    let plain = cipher(&dek)
        .decrypt(XNonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad: &ctx.secret_aad() })
        .map_err(|_| VaultError::Tampered)?;
    Ok(Plaintext::new(plain))
}

/// Re-wraps the data key under the ring's current KEK; the ciphertext is untouched. This is
/// the per-row step of a KEK rotation: until it is applied, the row still opens with its old
/// KEK, so a rotation stopped half-way leaves every secret decryptable.
pub fn rewrap(ring: &KeyRing, ctx: &SecretContext, sealed: &Sealed) -> Result<Sealed, VaultError> {
    let dek = unwrap_dek(ring, ctx, sealed)?;
    let kek = ring.current();
    let dn = nonce();
    let wrapped_dek = cipher(kek.key())
        .encrypt(XNonce::from_slice(&dn), Payload { msg: dek.as_ref(), aad: &ctx.dek_aad(kek.id()) })
        .expect("encryption of an in-memory buffer cannot fail");
    Ok(Sealed { wrapped_dek, dek_nonce: dn, kek_id: kek.id().to_owned(), ..sealed.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kek;

    fn ctx(account: &str, version: i64) -> SecretContext {
        SecretContext { account_id: account.into(), kind: "password".into(), version }
    }

    #[test]
    fn round_trip_and_redacted_debug() {
        let ring = KeyRing::new(Kek::generate(), vec![]);
        let sealed = seal(&ring, &ctx("a1", 1), b"hunter2-secret");
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"), "ciphertext hides the plaintext");
        let plain = open(&ring, &ctx("a1", 1), &sealed).unwrap();
        assert_eq!(plain.expose(), b"hunter2-secret");
        assert_eq!(format!("{plain:?}"), "[redacted]");
        assert!(!format!("{:?}", ring).contains(&format!("{:?}", ring.current().to_bytes().as_ref())));
    }

    #[test]
    fn swapped_rows_and_tampering_fail() {
        let ring = KeyRing::new(Kek::generate(), vec![]);
        let a = seal(&ring, &ctx("a1", 1), b"one");
        assert_eq!(open(&ring, &ctx("a2", 1), &a).unwrap_err(), VaultError::Tampered, "another account's row");
        assert_eq!(open(&ring, &ctx("a1", 2), &a).unwrap_err(), VaultError::Tampered, "another version");
        let mut t = a.clone();
        t.ciphertext[0] ^= 1;
        assert_eq!(open(&ring, &ctx("a1", 1), &t).unwrap_err(), VaultError::Tampered);
        let other = KeyRing::new(Kek::generate(), vec![]);
        assert!(matches!(open(&other, &ctx("a1", 1), &a).unwrap_err(), VaultError::UnknownKek(_)));
    }

    #[test]
    fn rotation_rewraps_and_old_rows_still_open() {
        let old = Kek::generate();
        let old_id = old.id().to_owned();
        let old_bytes = old.to_bytes();
        let before = KeyRing::new(old, vec![]);
        let rows: Vec<_> = (0..4).map(|v| seal(&before, &ctx("a", v), format!("pw{v}").as_bytes())).collect();
        // During rotation both keys are loaded; only half the rows are rewrapped ("crash").
        let during = KeyRing::new(Kek::generate(), vec![Kek::from_bytes(old_bytes.as_ref()).unwrap()]);
        let mixed: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(v, r)| if v < 2 { rewrap(&during, &ctx("a", v as i64), r).unwrap() } else { r.clone() })
            .collect();
        for (v, r) in mixed.iter().enumerate() {
            assert_eq!(open(&during, &ctx("a", v as i64), r).unwrap().expose(), format!("pw{v}").as_bytes());
        }
        assert_ne!(mixed[0].kek_id, old_id);
        assert_eq!(mixed[0].ciphertext, rows[0].ciphertext, "rewrapping leaves the ciphertext alone");
        assert_eq!(mixed[3].kek_id, old_id);
    }

    #[test]
    fn kek_text_forms() {
        let k = Kek::from_text(&"ab".repeat(32)).unwrap();
        assert_eq!(k.id().len(), 16);
        assert!(Kek::from_text("short").is_err());
        assert!(Kek::from_bytes(&[0u8; 31]).is_err());
    }
}
