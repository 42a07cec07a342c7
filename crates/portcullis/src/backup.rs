//! `portcullis backup` and `portcullis restore` (R-SES-13): one tar file with a consistent
//! snapshot of the database (SQLite: `VACUUM INTO`; PostgreSQL: `pg_dump`), the recordings on
//! this node's disk with a manifest (size, SHA-256, archive key), and the node's other keys
//! (audit chain key, SSH host keys, TLS identity) **sealed under the vault's key-encryption
//! key**. The KEK itself is never in a backup: it is referenced by id, and a restore needs it
//! given separately (its file copied into the new data directory's `keys/`, or `vault.key`).
//! The search index is not backed up: it is rebuilt from the recordings at the first start.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use portcullis_vault::{KeyRing, SecretContext};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::keys::{load_or_create_key, write_private};

const FORMAT: u64 = 1;
/// Key files of the data directory carried in a backup (sealed), other than the KEK.
fn carried_key(name: &str) -> bool {
    name == "audit.key" || name.starts_with("ssh_host_") || name.starts_with("tls")
}

fn context(name: &str) -> SecretContext {
    SecretContext { account_id: "backup".into(), kind: format!("key-file:{name}"), version: 1 }
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

fn ring(config: &Config) -> Result<KeyRing> {
    let keys = config.data_dir().join("keys");
    if config.vault.key.is_empty() && config.vault.key_command.is_empty() && !keys.join("vault.kek").exists() {
        bail!(
            "no vault key: copy keys/vault.kek from the server that made the backup (it is kept apart from backups) into {} (mode 0600), or set vault.key / PORTCULLIS_VAULT_KEY",
            keys.display()
        );
    }
    crate::keys::load_vault_ring(&config.vault, &keys)
}

/// Writes the backup to `output`.
pub async fn backup(config: Config, output: &Path) -> Result<()> {
    let data = config.data_dir();
    let keys = data.join("keys");
    if !keys.join("audit.key").exists() {
        bail!("{} holds no Portcullis server (no keys/audit.key); point --config or PORTCULLIS_STORAGE_DATA_DIR at the server's data", data.display());
    }
    let ring = ring(&config)?;
    let audit_key = load_or_create_key(&keys.join("audit.key"), 32)?;
    let store = crate::rotate::open_store(&config, &audit_key).await?;
    let work = tempfile::tempdir_in(output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
        .context("a temporary directory beside the output")?;
    // 1. The database, consistent as of now.
    let (backend, db_file) = match store.backend() {
        portcullis_store::Backend::Sqlite => {
            let path = work.path().join("database.sqlite");
            store.snapshot_sqlite(&path.display().to_string()).await.context("snapshot of the SQLite database")?;
            ("sqlite", path)
        }
        portcullis_store::Backend::Postgres => {
            let path = work.path().join("database.pgdump");
            let out = std::process::Command::new("pg_dump")
                .args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
                .arg(&path)
                .arg(format!("--dbname={}", config.database_url()))
                .output()
                .context("running pg_dump (install the PostgreSQL client)")?;
            if !out.status.success() {
                bail!("pg_dump failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            ("postgres", path)
        }
    };
    // 2. The recordings the snapshot names (what is on this disk; archived ones by key).
    let mut recordings = Vec::new();
    let mut after = String::new();
    loop {
        let batch = store.recorded_sessions(&after, 500).await?;
        let Some(last) = batch.last() else { break };
        after = last.id.clone();
        for s in batch {
            let Some(file) = s.recording.clone() else { continue };
            let path = config.recordings_dir().join(&file);
            let archived = store.archive_key(&s.id).await.ok().flatten();
            let entry = if path.exists() {
                let (sha, bytes) = sha256_file(&path)?;
                json!({ "session_id": s.id, "file": file, "bytes": bytes, "sha256": sha, "archive_key": archived, "included": true })
            } else {
                json!({ "session_id": s.id, "file": file, "archive_key": archived, "included": false })
            };
            recordings.push(entry);
        }
    }
    // 3. The other keys, sealed under the KEK.
    let mut sealed_keys = serde_json::Map::new();
    for e in std::fs::read_dir(&keys)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if carried_key(&name) && e.path().is_file() {
            let bytes = zeroize::Zeroizing::new(std::fs::read(e.path())?);
            let sealed = portcullis_vault::seal(&ring, &context(&name), &bytes);
            sealed_keys.insert(name.clone(), Value::String(portcullis_app::totp_secret::encode(&sealed)));
        }
    }
    store.close().await;
    let manifest = json!({
        "format": FORMAT, "portcullis": env!("CARGO_PKG_VERSION"),
        "created_at": jiff::Timestamp::now().to_string(), "database": backend,
        "kek_id": ring.current().id(), "keys": sealed_keys, "recordings": recordings,
    });
    let tmp = output.with_extension("partial");
    {
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let text = serde_json::to_vec_pretty(&manifest)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o600);
        tar.append_data(&mut h, "manifest.json", &text[..])?;
        tar.append_path_with_name(&db_file, db_file.file_name().unwrap_or_default())?;
        let mut n = 0;
        for r in &recordings {
            if r["included"] == true {
                let file = r["file"].as_str().unwrap_or_default();
                tar.append_path_with_name(config.recordings_dir().join(file), format!("recordings/{file}"))?;
                n += 1;
            }
        }
        tar.into_inner()?.flush()?;
        println!(
            "Backup written to {}: the {backend} database, {n} recording(s) ({} archived only), {} sealed key file(s) under vault key {}.",
            output.display(),
            recordings.len() - n,
            manifest["keys"].as_object().map_or(0, |k| k.len()),
            ring.current().id()
        );
    }
    std::fs::rename(&tmp, output)?;
    println!("Keep the vault key (keys/vault.kek) apart from backups: a restore needs it, and the backup is useless without it.");
    Ok(())
}

/// Restores a backup into the configured (empty) data directory and database.
pub async fn restore(config: Config, input: &Path) -> Result<()> {
    let data = config.data_dir();
    let keys = data.join("keys");
    if keys.join("audit.key").exists() || data.join("portcullis.db").exists() {
        bail!("{} already holds a Portcullis server; restore into a new data directory", data.display());
    }
    let ring = ring(&config)?;
    let mut archive =
        tar::Archive::new(std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?);
    let work = tempfile::tempdir_in(&data).or_else(|_| tempfile::tempdir())?;
    archive.unpack(work.path()).context("the backup is not a readable tar file")?;
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(work.path().join("manifest.json")).context("the backup has no manifest.json")?,
    )?;
    if manifest["format"] != FORMAT {
        bail!("unknown backup format {}", manifest["format"]);
    }
    let kek = manifest["kek_id"].as_str().unwrap_or("?");
    if ring.get(kek).is_err() {
        bail!("the backup's keys are sealed under vault key {kek}, which this configuration does not have (it has {}); give the key the backed-up server used", ring.current().id());
    }
    // Keys first: without them nothing else is of use.
    std::fs::create_dir_all(&keys)?;
    crate::keys::ensure_private_dir(&keys)?;
    for (name, v) in manifest["keys"].as_object().into_iter().flatten() {
        if !carried_key(name) || name.contains('/') {
            bail!("the backup carries an unexpected key file {name}");
        }
        let sealed = v
            .as_str()
            .and_then(portcullis_app::totp_secret::decode)
            .with_context(|| format!("the sealed key file {name} is malformed"))?;
        let plain = portcullis_vault::open(&ring, &context(name), &sealed)
            .map_err(|e| anyhow::anyhow!("the key file {name} cannot be opened with vault key {kek}: {e}"))?;
        write_private(&keys.join(name), plain.expose())?;
    }
    // Recordings, each checked against the manifest.
    let recordings = config.recordings_dir();
    std::fs::create_dir_all(&recordings)?;
    let mut n = 0;
    for r in manifest["recordings"].as_array().into_iter().flatten() {
        if r["included"] != true {
            continue;
        }
        let file = r["file"].as_str().unwrap_or_default();
        if file.contains('/') || file.is_empty() {
            bail!("the backup names an unexpected recording file {file}");
        }
        let from = work.path().join("recordings").join(file);
        let (sha, _) = sha256_file(&from).with_context(|| format!("recording {file} is missing from the backup"))?;
        if Some(sha.as_str()) != r["sha256"].as_str() {
            bail!("recording {file} in the backup does not match its manifest (SHA-256 {sha})");
        }
        std::fs::copy(&from, recordings.join(file))?;
        n += 1;
    }
    // The database last.
    match manifest["database"].as_str() {
        Some("sqlite") => {
            if !config.storage.database_url.is_empty() {
                bail!("the backup holds a SQLite database, but this configuration uses {}", "storage.database_url");
            }
            let to: PathBuf = data.join("portcullis.db");
            std::fs::copy(work.path().join("database.sqlite"), &to)?;
        }
        Some("postgres") => {
            if config.storage.database_url.is_empty() {
                bail!("the backup holds a PostgreSQL database: set storage.database_url to an empty database to restore it into");
            }
            let out = std::process::Command::new("pg_restore")
                .args(["--no-owner", "--no-privileges", "--exit-on-error"])
                .arg(format!("--dbname={}", config.database_url()))
                .arg(work.path().join("database.pgdump"))
                .output()
                .context("running pg_restore (install the PostgreSQL client)")?;
            if !out.status.success() {
                bail!(
                    "pg_restore failed (restore into an empty database): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        other => bail!("the backup's database kind {other:?} is unknown"),
    }
    let archived = manifest["recordings"].as_array().map_or(0, |a| a.iter().filter(|r| r["included"] != true).count());
    println!(
        "Restored into {}: the {} database, {n} recording(s){}, the server's keys. Start the server; the search index is rebuilt from the recordings.",
        data.display(),
        manifest["database"].as_str().unwrap_or("?"),
        if archived > 0 { format!(" ({archived} more are in the archive)") } else { String::new() }
    );
    Ok(())
}
