//! The server's TLS identity: a configured certificate, or a self-signed one generated into
//! the data directory on first start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::keys::{check_private, write_private};

pub struct TlsIdentity {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate, as `AB:CD:…`.
    pub fingerprint: String,
    /// The leaf certificate (DER).
    pub leaf: Vec<u8>,
}

pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// How long a generated certificate is valid, and after how many days of it a start renews it
/// (a new fingerprint, printed at start).
const VALID_DAYS: i64 = 397;
const RENEW_AFTER_DAYS: u64 = 365;

/// A self-signed certificate (PEM) and its key (PEM) for `hosts`, valid from a day before
/// `now` for [`VALID_DAYS`].
fn self_signed(hosts: &[String], now: jiff::Timestamp) -> Result<(String, String)> {
    let day = |t: jiff::Timestamp| {
        let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(d.year().into(), d.month() as u8, d.day() as u8)
    };
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).context("the certificate's host names")?;
    params.not_before = day(now - jiff::SignedDuration::from_hours(24));
    params.not_after = day(now + jiff::SignedDuration::from_hours(24 * VALID_DAYS));
    let key = rcgen::KeyPair::generate().context("generating the certificate's key")?;
    let cert = params.self_signed(&key).context("generating a self-signed certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A generated certificate written more than [`RENEW_AFTER_DAYS`] ago.
fn due_for_renewal(cert: &Path) -> bool {
    std::fs::metadata(cert)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > RENEW_AFTER_DAYS * 86_400)
}

/// Loads `cert`/`key`, or generates a self-signed pair under `dir` naming `hosts`.
pub fn load_or_generate(cert: Option<(&Path, &Path)>, dir: &Path, hosts: &[String]) -> Result<TlsIdentity> {
    identity(cert, dir, hosts, "tls", &[b"h2", b"http/1.1"])
}

/// The RDP proxy's identity: `rdp-cert.pem`/`rdp-key.pem` when generated; no ALPN.
pub fn rdp_identity(cert: Option<(&Path, &Path)>, dir: &Path, hosts: &[String]) -> Result<TlsIdentity> {
    identity(cert, dir, hosts, "rdp", &[])
}

fn identity(
    cert: Option<(&Path, &Path)>,
    dir: &Path,
    hosts: &[String],
    stem: &str,
    alpn: &[&[u8]],
) -> Result<TlsIdentity> {
    let (cert_path, key_path): (PathBuf, PathBuf) = match cert {
        Some((c, k)) => (c.into(), k.into()),
        None => {
            let c = dir.join(format!("{stem}-cert.pem"));
            let k = dir.join(format!("{stem}-key.pem"));
            if !c.exists() || !k.exists() || due_for_renewal(&c) {
                let (cert, key) = self_signed(hosts, jiff::Timestamp::now())?;
                let _ = std::fs::remove_file(&c);
                let _ = std::fs::remove_file(&k);
                write_private(&k, key.as_bytes())?;
                std::fs::write(&c, cert)?;
                tracing::info!(path = %c.display(), days = VALID_DAYS, "generated a self-signed TLS certificate");
            }
            (c, k)
        }
    };
    check_private(&key_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("cannot read {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert_path.display()))?;
    let leaf = certs.first().with_context(|| format!("{} holds no certificate", cert_path.display()))?;
    let fingerprint = fingerprint(leaf.as_ref());
    let leaf = leaf.as_ref().to_vec();
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("{} is not a PEM private key", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsIdentity { config: Arc::new(config), fingerprint, leaf })
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn a_generated_certificate_is_valid_for_about_a_year_from_today() {
        let now: jiff::Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        let (cert, _) = super::self_signed(&["localhost".into()], now).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        // UTCTime in the DER: YYMMDDHHMMSSZ for both ends of the validity.
        let text = String::from_utf8_lossy(der.as_ref()).into_owned();
        assert!(text.contains("261128000000Z"), "not before: the day before");
        assert!(text.contains("271231000000Z"), "not after: 397 days later");
        assert!(!text.contains("40960101"), "no longer valid until 4096");
    }
}
