//! One-time-code (TOTP) secrets at rest: sealed by the vault like credentials (issue 13,
//! finding 10), bound to their user, so a copy of the database alone yields no second factor.
//! Stored as text in `users.totp_secret`:
//! `sealed1:<kek id>:<nonce>:<key nonce>:<wrapped key>:<ciphertext>` (base64, no padding).

use data_encoding::BASE64_NOPAD;
use portcullis_vault::{KeyRing, Sealed, SecretContext};
use zeroize::Zeroizing;

const PREFIX: &str = "sealed1:";

fn context(user_id: &str) -> SecretContext {
    SecretContext { account_id: user_id.to_owned(), kind: "totp".into(), version: 1 }
}

/// Whether a stored value is sealed (older installations kept the base32 text).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// A sealed value as text (also used for RDP launch tokens, the search index key and backups).
pub fn encode(s: &Sealed) -> String {
    format!(
        "{PREFIX}{}:{}:{}:{}:{}",
        s.kek_id,
        BASE64_NOPAD.encode(&s.nonce),
        BASE64_NOPAD.encode(&s.dek_nonce),
        BASE64_NOPAD.encode(&s.wrapped_dek),
        BASE64_NOPAD.encode(&s.ciphertext)
    )
}

/// The sealed value of [`encode`]'s text.
pub fn decode(stored: &str) -> Option<Sealed> {
    let mut parts = stored.strip_prefix(PREFIX)?.split(':');
    let kek_id = parts.next()?.to_owned();
    let mut next = || BASE64_NOPAD.decode(parts.next()?.as_bytes()).ok();
    let (nonce, dek_nonce, wrapped_dek, ciphertext) = (next()?, next()?, next()?, next()?);
    Some(Sealed {
        ciphertext,
        nonce: nonce.try_into().ok()?,
        wrapped_dek,
        dek_nonce: dek_nonce.try_into().ok()?,
        kek_id,
    })
}

/// Seals `user_id`'s base32 secret for the database.
pub fn seal(ring: &KeyRing, user_id: &str, base32: &str) -> String {
    encode(&portcullis_vault::seal(ring, &context(user_id), base32.as_bytes()))
}

/// The secret's bytes, if `stored` is `user_id`'s sealed secret and opens.
pub fn open(ring: &KeyRing, user_id: &str, stored: &str) -> Option<Zeroizing<Vec<u8>>> {
    let plain = portcullis_vault::open(ring, &context(user_id), &decode(stored)?).ok()?;
    let text = std::str::from_utf8(plain.expose()).ok()?;
    portcullis_core::totp::decode_secret(text).map(Zeroizing::new)
}

/// The same secret with its key wrapped by the ring's current key (a key rotation), or `None`
/// when it is under the current key already.
pub fn rewrap(ring: &KeyRing, user_id: &str, stored: &str) -> Result<Option<String>, portcullis_vault::VaultError> {
    let sealed = decode(stored).ok_or(portcullis_vault::VaultError::Tampered)?;
    if sealed.kek_id == ring.current().id() {
        return Ok(None);
    }
    Ok(Some(encode(&portcullis_vault::rewrap(ring, &context(user_id), &sealed)?)))
}

/// Seals the secrets an older installation kept as text; run at start. Returns how many.
pub async fn seal_legacy(state: &crate::state::App) -> crate::error::AppResult<u64> {
    let mut done = 0;
    for (user_id, stored) in state.store.totp_secrets().await? {
        if is_sealed(&stored) {
            continue;
        }
        let sealed = seal(&state.vault, &user_id, &stored);
        if state.store.replace_totp_secret(&user_id, &stored, &sealed).await? {
            done += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_vault::Kek;

    #[test]
    fn sealed_secrets_open_for_their_user_only_and_survive_a_rotation() {
        let ring = KeyRing::new(Kek::generate(), vec![]);
        let base32 = portcullis_core::totp::encode_secret(b"12345678901234567890");
        let stored = seal(&ring, "u1", &base32);
        assert!(is_sealed(&stored) && !stored.contains(&base32), "{stored}");
        assert_eq!(open(&ring, "u1", &stored).unwrap().as_slice(), b"12345678901234567890");
        assert!(open(&ring, "u2", &stored).is_none(), "another user's row");
        assert!(open(&ring, "u1", &base32).is_none(), "plain text is not accepted");
        assert!(open(&ring, "u1", &stored.replace(':', ";")).is_none());
        // A rotation: the old key is kept as previous; rewrapped rows open under the new one.
        let old = ring.current().to_bytes();
        let rotated = KeyRing::new(Kek::generate(), vec![Kek::from_bytes(old.as_ref()).unwrap()]);
        let again = rewrap(&rotated, "u1", &stored).unwrap().expect("under the old key");
        assert!(rewrap(&rotated, "u1", &again).unwrap().is_none(), "already under the current key");
        let only_new = KeyRing::new(Kek::from_bytes(rotated.current().to_bytes().as_ref()).unwrap(), vec![]);
        assert_eq!(open(&only_new, "u1", &again).unwrap().as_slice(), b"12345678901234567890");
    }
}
