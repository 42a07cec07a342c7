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
}

pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Loads `cert`/`key`, or generates a self-signed pair under `dir` naming `hosts`.
pub fn load_or_generate(cert: Option<(&Path, &Path)>, dir: &Path, hosts: &[String]) -> Result<TlsIdentity> {
    let (cert_path, key_path): (PathBuf, PathBuf) = match cert {
        Some((c, k)) => (c.into(), k.into()),
        None => {
            let c = dir.join("tls-cert.pem");
            let k = dir.join("tls-key.pem");
            if !c.exists() || !k.exists() {
                let generated = rcgen::generate_simple_self_signed(hosts.to_vec())
                    .context("generating a self-signed certificate")?;
                let _ = std::fs::remove_file(&c);
                let _ = std::fs::remove_file(&k);
                write_private(&k, generated.key_pair.serialize_pem().as_bytes())?;
                std::fs::write(&c, generated.cert.pem())?;
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
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("{} is not a PEM private key", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsIdentity { config: Arc::new(config), fingerprint })
}
