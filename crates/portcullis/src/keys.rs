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

/// Narrows a file or directory that group or others may use to `mode` (0600 or 0700), with a
/// warning: the database and recordings are as private as the keys.
pub fn tighten(path: &Path, mode: u32) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    let now = meta.permissions().mode() & 0o777;
    if now & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot narrow the mode of {}", path.display()))?;
        tracing::warn!(path = %path.display(), was = format!("{now:o}"), now = format!("{mode:o}"), "narrowed the mode of a data file other users could read");
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

/// The vault's key ring: the current KEK (from the configuration, a command, or the key file
/// created on first start) and the older KEKs kept by rotations.
pub fn load_vault_ring(cfg: &crate::config::VaultConfig, keys_dir: &Path) -> Result<portcullis_vault::KeyRing> {
    use portcullis_vault::{Kek, KeyRing};
    let current = if !cfg.key.is_empty() {
        Kek::from_text(&cfg.key).map_err(|e| anyhow::anyhow!("vault.key: {e}"))?
    } else if !cfg.key_command.is_empty() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cfg.key_command)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("vault.key_command: cannot run it")?;
        if !out.status.success() {
            bail!("vault.key_command: exited with {}", out.status);
        }
        let text =
            zeroize::Zeroizing::new(String::from_utf8(out.stdout).context("vault.key_command: output is not text")?);
        Kek::from_text(&text).map_err(|e| anyhow::anyhow!("vault.key_command: {e}"))?
    } else {
        let key = load_or_create_key(&keys_dir.join("vault.kek"), 32)?;
        Kek::from_bytes(&key).map_err(|e| anyhow::anyhow!("{}: {e}", keys_dir.join("vault.kek").display()))?
    };
    let mut previous = Vec::new();
    if let Ok(entries) = std::fs::read_dir(keys_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "vault.kek.new" || name.starts_with("vault.kek.old.") {
                check_private(&e.path())?;
                let bytes = zeroize::Zeroizing::new(std::fs::read(e.path())?);
                let kek = Kek::from_bytes(&bytes).map_err(|err| anyhow::anyhow!("{}: {err}", e.path().display()))?;
                if kek.id() != current.id() {
                    previous.push(kek);
                }
            }
        }
    }
    Ok(KeyRing::new(current, previous))
}
