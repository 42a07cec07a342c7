//! Key material in the data directory: created on first start with mode 0600, refused when
//! other users could read it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::RngCore;

/// Creates `dir` (mode 0700) if missing.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Refuses a secret file that group or others may read or write.
pub fn check_private(path: &Path) -> Result<()> {
    let mode = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "refusing to start: {} has mode {:o}, so other users may read it; run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to a new file with mode 0600 (fails if it exists).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Loads a random key of `len` bytes, creating it on first start.
pub fn load_or_create_key(path: &Path, len: usize) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    if !path.exists() {
        let mut key = zeroize::Zeroizing::new(vec![0u8; len]);
        rand::rngs::OsRng.fill_bytes(&mut key);
        write_private(path, &key)?;
    }
    check_private(path)?;
    let key = zeroize::Zeroizing::new(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?);
    if key.len() != len {
        bail!("{} is damaged: expected {len} bytes, found {}", path.display(), key.len());
    }
    Ok(key)
}
