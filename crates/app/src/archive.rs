//! The archive (R-SES-13): after a session ends, its recording (encrypted, as it is on disk) is
//! copied to S3-compatible object storage, read back and compared (size and SHA-256) before the
//! copy counts, and — with `remove_local` — only then removed from the node's disk. A store
//! that is down or slow delays copies, never loses one: the local file stays until a verified
//! copy exists, and pending copies are retried every few seconds. A recording no longer on
//! disk is fetched from the archive into a cache when it is played, exported, verified or
//! indexed, so those work the same.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use portcullis_store::{Actor, SessionRecord};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{AppError, AppResult};
use crate::state::App;

/// How the archive is reached (the `[archive]` configuration).
#[derive(Clone)]
pub struct ArchiveSettings {
    /// The S3 endpoint, e.g. `https://s3.eu-central-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub url: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: zeroize::Zeroizing<String>,
    /// Prepended to object names (`recordings/`).
    pub prefix: String,
    /// Remove the local file once a verified copy exists.
    pub remove_local: bool,
    /// Plain HTTP to the endpoint (the recordings are encrypted either way).
    pub allow_http: bool,
    pub timeout: Duration,
    /// Where recordings fetched back from the archive are kept a while.
    pub cache_dir: PathBuf,
}

/// A connected archive.
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    remove_local: bool,
    cache_dir: PathBuf,
    /// Where the archive is, for messages (never the credentials).
    pub location: String,
    /// The last copy failed (the store unreachable or refusing): for `/healthz`.
    pub failing: std::sync::atomic::AtomicBool,
}

/// Pending copies are looked for this often.
const EVERY: Duration = Duration::from_secs(3);
/// Larger recordings go up in parts of this size.
const PART: usize = 8 << 20;

impl Archive {
    pub fn new(s: ArchiveSettings) -> Result<Archive, String> {
        let options = ClientOptions::new()
            .with_allow_http(s.allow_http)
            .with_timeout(s.timeout)
            .with_connect_timeout(s.timeout.min(Duration::from_secs(10)));
        let retry = RetryConfig { max_retries: 2, retry_timeout: s.timeout, ..RetryConfig::default() };
        let store = AmazonS3Builder::new()
            .with_endpoint(&s.url)
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key_id)
            .with_secret_access_key(s.secret_access_key.as_str())
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_retry(retry)
            .build()
            .map_err(|e| format!("archive: {e}"))?;
        Ok(Archive {
            store: Arc::new(store),
            prefix: s.prefix,
            remove_local: s.remove_local,
            cache_dir: s.cache_dir,
            location: format!("{}/{}", s.url.trim_end_matches('/'), s.bucket),
            failing: Default::default(),
        })
    }

    fn key(&self, file: &str) -> String {
        format!("{}{file}", self.prefix)
    }

    /// Deletes an archived copy (retention).
    pub async fn delete(&self, key: &str) -> Result<(), String> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

async fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Copies one ended session's recording, verifies the copy, records it; then removes the local
/// file if so configured.
async fn upload(state: &App, archive: &Archive, s: &SessionRecord) -> Result<(), String> {
    let Some(file) = &s.recording else { return Ok(()) };
    let local = state.recordings.join(file);
    let (sha, size) = match sha256_of(&local).await {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Another node archived it (and removed it) meanwhile: done.
            if state.store.archive_key(&s.id).await.map_err(|e| e.to_string())?.is_some() {
                return Ok(());
            }
            // Nothing to copy, ever: recorded (audited) so that it leaves the queue.
            tracing::error!(session = %s.id, file, "the recording file is missing; nothing to archive");
            let details =
                json!({ "key": "", "problem": format!("the recording file {file} is missing; nothing was archived") });
            return mark(state, &s.id, "", details).await;
        }
        Err(e) => return Err(e.to_string()),
    };
    let key = archive.key(file);
    let path = ObjectPath::from(key.as_str());
    if size as usize <= PART {
        let bytes = tokio::fs::read(&local).await.map_err(|e| e.to_string())?;
        archive.store.put(&path, PutPayload::from(bytes)).await.map_err(|e| e.to_string())?;
    } else {
        let upload = archive.store.put_multipart(&path).await.map_err(|e| e.to_string())?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut f = tokio::fs::File::open(&local).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; PART];
        loop {
            let k = f.read(&mut buf).await.map_err(|e| e.to_string())?;
            if k == 0 {
                break;
            }
            w.wait_for_capacity(4).await.map_err(|e| e.to_string())?;
            w.write(&buf[..k]);
        }
        w.finish().await.map_err(|e| e.to_string())?;
    }
    // Verified by reading it back: the same bytes, or the copy does not count.
    let mut stream = archive.store.get(&path).await.map_err(|e| e.to_string())?.into_stream();
    let (mut h, mut got) = (Sha256::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        h.update(&chunk);
        got += chunk.len() as u64;
    }
    let got_sha = hex::encode(h.finalize());
    if got != size || got_sha != sha {
        return Err(format!("the copy of {file} read back differs ({got} bytes, SHA-256 {got_sha})"));
    }
    let details = json!({ "key": key, "archive": archive.location, "bytes": size, "sha256": sha, "local_removed": archive.remove_local });
    mark(state, &s.id, &key, details).await?;
    if archive.remove_local {
        if let Err(e) = tokio::fs::remove_file(&local).await {
            tracing::warn!(session = %s.id, error = %e, "archived, but the local recording could not be removed");
        }
    }
    Ok(())
}

/// Records the copy (audited). A session another node archived first (a node that came back
/// while a survivor copied its recordings) is not a failure: its copy counts.
async fn mark(state: &App, id: &str, key: &str, details: serde_json::Value) -> Result<(), String> {
    match state.store.mark_archived(&Actor::system(), state.now(), id, key, details).await {
        Ok(()) | Err(portcullis_store::StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Copies ended sessions' recordings to the archive, oldest first, retrying every few seconds
/// while the archive is unreachable; removes old fetched copies from the cache. Each node copies
/// the recordings it made; those of nodes that are gone (lost or stopped) are copied by one of
/// the others, when the shared directory has them.
pub async fn run(state: App) {
    let Some(archive) = state.archive.clone() else { return };
    let mut failing = false;
    let mut last_clean = std::time::Instant::now();
    loop {
        let batch = state.store.sessions_to_archive(&state.node, 50).await.unwrap_or_default();
        let reachable = copy_all(&state, &archive, batch, &mut failing).await;
        if reachable && crate::cluster::lead(&state, "archive-absent-nodes", EVERY * 4).await {
            let batch = state.store.sessions_to_archive_of_absent_nodes(500).await.unwrap_or_default();
            let mut here = Vec::new();
            for s in batch {
                let file = s.recording.clone().unwrap_or_default();
                // Not on this node's disk: it may be on the absent node's own, to copy when it returns.
                if tokio::fs::try_exists(state.recordings.join(&file)).await.unwrap_or(false) {
                    here.push(s);
                }
                if here.len() == 50 {
                    break;
                }
            }
            copy_all(&state, &archive, here, &mut failing).await;
        }
        if last_clean.elapsed() > Duration::from_secs(600) {
            clean_cache(&archive.cache_dir).await;
            last_clean = std::time::Instant::now();
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Copies `batch`; `false` when the archive refused one (the rest wait for the next round).
async fn copy_all(state: &App, archive: &Archive, batch: Vec<SessionRecord>, failing: &mut bool) -> bool {
    for s in batch {
        // A live session's row has ended; give its recorder a moment to seal the file.
        if s.ended_at.is_some_and(|e| state.now() - e < 1_000_000) {
            continue;
        }
        match upload(state, archive, &s).await {
            Ok(()) => {
                archive.failing.store(false, std::sync::atomic::Ordering::Relaxed);
                if std::mem::take(failing) {
                    tracing::info!(archive = %archive.location, "the archive is reachable again; copies resumed");
                }
            }
            Err(e) => {
                state.metrics.archive_errors.inc();
                archive.failing.store(true, std::sync::atomic::Ordering::Relaxed);
                if !*failing {
                    tracing::warn!(archive = %archive.location, session = %s.id, error = %e, "cannot archive a recording; it stays on disk and is retried");
                }
                *failing = true;
                return false;
            }
        }
    }
    true
}

/// Removes recordings fetched more than an hour ago from the cache.
async fn clean_cache(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else { return };
    while let Ok(Some(e)) = entries.next_entry().await {
        let old = e.metadata().await.ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
        if old.is_some_and(|d| d > Duration::from_secs(3600)) {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
}

/// The recording's file: on disk, or fetched from the archive into the cache.
pub async fn local_path(state: &App, s: &SessionRecord, file: &str) -> AppResult<PathBuf> {
    let local = state.recordings.join(file);
    if tokio::fs::try_exists(&local).await.unwrap_or(false) {
        return Ok(local);
    }
    let key = state.store.archive_key(&s.id).await?.filter(|k| !k.is_empty());
    let (Some(archive), Some(key)) = (state.archive.clone(), key) else {
        return Ok(local);
    };
    let cached = archive.cache_dir.join(file);
    if tokio::fs::try_exists(&cached).await.unwrap_or(false) {
        return Ok(cached);
    }
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(session = %s.id, error = %e, "cannot fetch a recording from the archive");
        AppError::new(
            crate::error::ErrorKind::Upstream,
            "archive_unavailable",
            format!(
                "the recording is in the archive ({}), which cannot be reached now; try again later",
                archive.location
            ),
        )
    };
    let mut stream =
        archive.store.get(&ObjectPath::from(key.as_str())).await.map_err(|e| unavailable(&e))?.into_stream();
    tokio::fs::create_dir_all(&archive.cache_dir).await.map_err(|e| unavailable(&e))?;
    let tmp = archive.cache_dir.join(format!("{file}.{}.tmp", uuid::Uuid::new_v4()));
    let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| unavailable(&e))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unavailable(&e))?;
        out.write_all(&chunk).await.map_err(|e| unavailable(&e))?;
    }
    out.flush().await.map_err(|e| unavailable(&e))?;
    drop(out);
    tokio::fs::rename(&tmp, &cached).await.map_err(|e| unavailable(&e))?;
    Ok(cached)
}
