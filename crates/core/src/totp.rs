//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps).
//! The caller passes the time; nothing here reads a clock.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: u32 = 6;
/// How many steps either side of now are accepted, for clock drift.
pub const DRIFT_STEPS: i64 = 1;

/// The code for a given time step.
pub fn code_at_step(secret: &[u8], step: i64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    bin % 10u32.pow(DIGITS)
}

pub fn step_of(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(STEP_SECONDS)
}

/// Checks `code` against the steps around `unix_seconds`. A step at or before
/// `last_used_step` is refused, so a code cannot be replayed. Returns the matched step.
pub fn verify(secret: &[u8], code: &str, unix_seconds: i64, last_used_step: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(unix_seconds);
    let mut matched = None;
    for step in now - DRIFT_STEPS..=now + DRIFT_STEPS {
        let expected = format!("{:0width$}", code_at_step(secret, step), width = DIGITS as usize);
        let fresh = last_used_step.is_none_or(|last| step > last);
        // Compare every candidate, so timing does not reveal which step matched.
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && fresh && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// Base32 (RFC 4648, no padding) as authenticator apps expect it.
pub fn encode_secret(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    data_encoding::BASE32_NOPAD.decode(text.as_bytes()).ok()
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        enc(issuer),
        enc(account),
        encode_secret(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_sha1_vectors() {
        // Appendix B of RFC 6238, truncated to 6 digits.
        for (t, full) in [
            (59, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            assert_eq!(code_at_step(RFC_SECRET, step_of(t)), full % 1_000_000, "t={t}");
        }
    }

    #[test]
    fn verify_accepts_drift_and_refuses_replay() {
        let t = 1_234_567_890;
        let code = format!("{:06}", code_at_step(RFC_SECRET, step_of(t)));
        let step = verify(RFC_SECRET, &code, t, None).unwrap();
        assert_eq!(step, step_of(t));
        assert_eq!(verify(RFC_SECRET, &code, t + 30, None), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, t + 90, None), None);
        assert_eq!(verify(RFC_SECRET, &code, t, Some(step)), None, "replay must fail");
        assert_eq!(verify(RFC_SECRET, "12345", t, None), None);
        assert_eq!(verify(RFC_SECRET, "abcdef", t, None), None);
    }

    #[test]
    fn secret_round_trips_and_uri_is_escaped() {
        let enc = encode_secret(RFC_SECRET);
        assert_eq!(decode_secret(&enc).unwrap(), RFC_SECRET);
        let uri = otpauth_uri("Portcullis", "alice@corp", RFC_SECRET);
        assert!(uri.starts_with("otpauth://totp/Portcullis:alice%40corp?secret="));
    }
}
