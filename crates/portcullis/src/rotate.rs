//! `portcullis vault rotate-key`: re-wraps every credential's data key under a new
//! key-encryption key. Run it with the server stopped (a running server loads its key ring at
//! start). Crash-safe at every point:
//!
//! 1. the new KEK is written to `keys/vault.kek.new` (0600) before any row changes;
//! 2. rows are re-wrapped one per transaction (ciphertexts untouched), each naming its KEK;
//! 3. only when no row names another KEK is `vault.kek` renamed to `vault.kek.old.<id>` and
//!    `vault.kek.new` to `vault.kek`.
//!
//! A run stopped anywhere leaves rows under the old or the new KEK, both of which the server
//! loads (`vault.kek` and `vault.kek.new`); running the command again finishes the job.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use portcullis_store::{SealedRow, Store, StoreOptions};
use portcullis_vault::{rewrap, Kek, KeyRing, Sealed, SecretContext};

use crate::config::Config;
use crate::keys::{check_private, load_or_create_key, write_private};

pub async fn run(config: Config, throttle: Duration) -> Result<()> {
    if !config.vault.key.is_empty() || !config.vault.key_command.is_empty() {
        bail!("the KEK comes from vault.key or vault.key_command: rotate it where it is kept, then re-wrap with the new key given the same way");
    }
    let keys = config.data_dir().join("keys");
    let audit_key = load_or_create_key(&keys.join("audit.key"), 32)?;
    let current_path = keys.join("vault.kek");
    let new_path = keys.join("vault.kek.new");
    let current = Kek::from_bytes(&load_or_create_key(&current_path, 32)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Resume an interrupted rotation with its key, or start a new one.
    let new = if new_path.exists() {
        check_private(&new_path)?;
        Kek::from_bytes(&std::fs::read(&new_path)?).map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        let k = Kek::generate();
        write_private(&new_path, k.to_bytes().as_ref())?;
        k
    };
    let mut previous = vec![current];
    for e in std::fs::read_dir(&keys)?.flatten() {
        if e.file_name().to_string_lossy().starts_with("vault.kek.old.") {
            check_private(&e.path())?;
            previous.push(Kek::from_bytes(&std::fs::read(e.path())?).map_err(|err| anyhow::anyhow!("{err}"))?);
        }
    }
    let old_id = previous[0].id().to_owned();
    let new_id = new.id().to_owned();
    let ring = KeyRing::new(new, previous);
    let store = open_store(&config, &audit_key).await?;
    println!("Re-wrapping credentials from key {old_id} to key {new_id}");
    let mut done = 0u64;
    loop {
        let batch = store.secrets_not_under(&new_id, 200).await?;
        if batch.is_empty() {
            break;
        }
        for (key, row) in batch {
            let ctx =
                SecretContext { account_id: key.account_id.clone(), kind: key.kind.clone(), version: key.version };
            let sealed = to_sealed(row)?;
            let from = sealed.kek_id.clone();
            let re = rewrap(&ring, &ctx, &sealed)
                .with_context(|| format!("account {} {} version {}", key.account_id, key.kind, key.version))?;
            let rewrapped = rewrapped_row(re);
            store.rewrap_secret(&key, &from, &rewrapped).await?;
            done += 1;
            if done.is_multiple_of(100) {
                println!("  {done} re-wrapped");
            }
            if !throttle.is_zero() {
                tokio::time::sleep(throttle).await;
            }
        }
    }
    // Session recordings' data keys, the same way.
    loop {
        let batch = store.session_keys_not_under(&new_id, 200).await?;
        if batch.is_empty() {
            break;
        }
        for (session, row) in batch {
            let ctx = SecretContext { account_id: session.clone(), kind: "recording".into(), version: 1 };
            let sealed = to_sealed(row)?;
            let from = sealed.kek_id.clone();
            let re = rewrap(&ring, &ctx, &sealed).with_context(|| format!("recording of session {session}"))?;
            let rewrapped = rewrapped_row(re);
            store.rewrap_session_key(&session, &from, &rewrapped).await?;
            done += 1;
            if !throttle.is_zero() {
                tokio::time::sleep(throttle).await;
            }
        }
    }
    // One-time-code secrets, sealed the same way (each row whole: they are small).
    for (user_id, stored) in store.totp_secrets().await? {
        if !portcullis_app::totp_secret::is_sealed(&stored) {
            continue; // sealed by the server at its next start, under the new key
        }
        let re = portcullis_app::totp_secret::rewrap(&ring, &user_id, &stored)
            .map_err(|e| anyhow::anyhow!("the one-time-code secret of user {user_id}: {e}"))?;
        if let Some(re) = re {
            store.replace_totp_secret(&user_id, &stored, &re).await?;
            done += 1;
        }
    }
    // The session search index's key.
    if let Some(stored) = store.setting(portcullis_app::search::KEY_SETTING).await? {
        if let Some(re) =
            portcullis_app::search::rewrap(&ring, &stored).map_err(|e| anyhow::anyhow!("the search index key: {e}"))?
        {
            store.put_internal_setting(portcullis_app::search::KEY_SETTING, &re).await?;
            done += 1;
        }
    }
    store.close().await;
    std::fs::rename(&current_path, keys.join(format!("vault.kek.old.{old_id}"))).context("keeping the old key")?;
    std::fs::rename(&new_path, &current_path).context("installing the new key")?;
    println!("Done: {done} credentials now under key {new_id}; the old key is kept as vault.kek.old.{old_id}.");
    Ok(())
}

/// The database, for a command run on the server beside it (two connections).
pub async fn open_store(config: &Config, audit_key: &[u8]) -> Result<Store> {
    let options = StoreOptions {
        url: config.database_url(),
        sqlite_synchronous: config.storage.sqlite_synchronous.clone(),
        max_connections: 2,
    };
    Store::open(&options, audit_key).await.context("cannot open the database")
}

fn to_sealed(r: SealedRow) -> Result<Sealed> {
    portcullis_app::credentials::unrow(r).map_err(|_| anyhow::anyhow!("a stored nonce is damaged"))
}

/// The new wrapping of a data key, as stored: only the key columns change (the secret's own
/// ciphertext stays as it is, so it is left empty here).
fn rewrapped_row(re: Sealed) -> SealedRow {
    SealedRow {
        ciphertext: Vec::new(),
        nonce: Vec::new(),
        wrapped_dek: re.wrapped_dek,
        dek_nonce: re.dek_nonce.to_vec(),
        kek_id: re.kek_id,
    }
}
