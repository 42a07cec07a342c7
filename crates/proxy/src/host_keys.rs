//! The proxy's host keys: Ed25519 and RSA (3072), generated on first run into the data
//! directory's `keys/` with mode 0600, and refused when others can read them.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use portcullis_vault::{generate_ssh_key, KeyAlgorithm};
use russh::keys::PrivateKey;

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: others can read this host key; run chmod 600 on it")]
    Permissions(PathBuf),
    #[error("{0}: not an OpenSSH private key")]
    Invalid(PathBuf),
    #[error("cannot generate a host key: {0}")]
    Generate(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HostKeyError + '_ {
    move |source| HostKeyError::Io { path: path.to_owned(), source }
}

/// Loads `ssh_host_ed25519_key` and `ssh_host_rsa_key` from `dir`, creating them first if
/// missing.
pub fn load_or_create_host_keys(dir: &Path) -> Result<Vec<PrivateKey>, HostKeyError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut keys = Vec::new();
    for (name, algorithm) in
        [("ssh_host_ed25519_key", KeyAlgorithm::Ed25519), ("ssh_host_rsa_key", KeyAlgorithm::Rsa(3072))]
    {
        let path = dir.join(name);
        if !path.exists() {
            let pair =
                generate_ssh_key(algorithm, "portcullis-proxy").map_err(|e| HostKeyError::Generate(e.to_string()))?;
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io(&path))?;
            f.write_all(pair.private_openssh.expose()).map_err(io(&path))?;
            f.sync_all().map_err(io(&path))?;
            std::fs::write(dir.join(format!("{name}.pub")), format!("{}\n", pair.public_openssh)).map_err(io(&path))?;
        }
        let mode = std::fs::metadata(&path).map_err(io(&path))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(HostKeyError::Permissions(path));
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(io(&path))?);
        let key = russh::keys::decode_secret_key(&text, None).map_err(|_| HostKeyError::Invalid(path.clone()))?;
        keys.push(key);
    }
    Ok(keys)
}

/// What a user checks on first connect: per host key, its algorithm, SHA-256 fingerprint (as
/// `ssh` prints it) and the public key in OpenSSH form (for a `known_hosts` line).
pub fn host_key_fingerprints(keys: &[PrivateKey]) -> Vec<(String, String, String)> {
    keys.iter()
        .map(|k| {
            let public = k.public_key();
            let openssh = public.to_openssh().unwrap_or_default();
            (k.algorithm().as_str().to_owned(), public.fingerprint(russh::keys::HashAlg::Sha256).to_string(), openssh)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_host_keys(dir.path()).unwrap();
        let b = load_or_create_host_keys(dir.path()).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].public_key(), b[0].public_key());
        let p = dir.path().join("ssh_host_ed25519_key");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_or_create_host_keys(dir.path()), Err(HostKeyError::Permissions(_))));
    }
}
