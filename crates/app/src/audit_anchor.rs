//! Anchors of the audit chain outside the database (issue 13, finding 8). The chain's links
//! prove every event intact and in order, but someone who can write the database could delete
//! the last events and roll the head back: what is left still verifies. So every second the
//! scheduler appends the head (sequence number and link) to a file in the data directory, which
//! a database writer cannot reach; `audit verify` then checks that the log still holds the last
//! anchored event with the anchored link. Lines: `<seq> <link> <unix µs>`; the file is
//! compacted to its last line when it passes 1 MiB.

use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis_core::audit::{BreakReason, BrokenLink};

use crate::error::{AppError, AppResult};
use crate::state::App;

const COMPACT_AT: u64 = 1 << 20;

/// The anchor file and the last sequence number written to it.
#[derive(Debug)]
pub struct AnchorFile {
    path: PathBuf,
    last: std::sync::Mutex<i64>,
}

impl AnchorFile {
    pub fn new(path: PathBuf) -> AnchorFile {
        let last = read_last(&path).map_or(0, |(seq, _)| seq);
        AnchorFile { path, last: std::sync::Mutex::new(last) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The last well-formed anchor in the file.
fn read_last(path: &Path) -> Option<(i64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|line| {
        let mut parts = line.split(' ');
        let seq = parts.next()?.parse::<i64>().ok()?;
        let link = parts.next()?;
        (link.len() == 64 && link.bytes().all(|b| b.is_ascii_hexdigit())).then(|| (seq, link.to_owned()))
    })
}

/// Opening for writing, created readable by the server's user only.
fn private() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.create(true).mode(0o600);
    o
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> AppError {
    tracing::error!(error = %e, path = %path.display(), "{what}");
    AppError::internal()
}

/// Appends the current head, if it moved since the last anchor. Called every second.
pub async fn write(state: &App) -> AppResult<()> {
    let Some(file) = state.audit_anchor.as_deref() else { return Ok(()) };
    let (seq, link) = state.store.audit_head().await?;
    let last = *file.last.lock().unwrap_or_else(|p| p.into_inner());
    if seq <= last {
        return Ok(());
    }
    let line = format!("{seq} {link} {}\n", state.now());
    let path = file.path.clone();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > COMPACT_AT {
            // Only the last anchor is needed: replace the file by it, atomically.
            let tmp = path.with_extension("tmp");
            let mut f = private().write(true).truncate(true).open(&tmp)?;
            f.write_all(line.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            return Ok(());
        }
        let mut f = private().append(true).open(&path)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()
    })
    .await
    .map_err(|_| AppError::internal())?;
    written.map_err(|e| io_error("cannot write the audit anchor", &file.path, e))?;
    *file.last.lock().unwrap_or_else(|p| p.into_inner()) = seq;
    Ok(())
}

/// Whether the log still holds the last anchored event, with its anchored link.
pub async fn check(state: &App) -> AppResult<Option<BrokenLink>> {
    let Some(file) = state.audit_anchor.as_deref() else { return Ok(None) };
    let path = file.path.clone();
    let Some((seq, link)) =
        tokio::task::spawn_blocking(move || read_last(&path)).await.map_err(|_| AppError::internal())?
    else {
        return Ok(None);
    };
    match state.store.audit_link(seq).await? {
        Some(stored) if stored == link => Ok(None),
        _ => {
            // The first event the log lacks: one past its head, when the head was rolled back.
            let (head, _) = state.store.audit_head().await?;
            Ok(Some(BrokenLink { seq: (head + 1).min(seq), reason: BreakReason::AnchorMismatch }))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_last_well_formed_line_is_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("anchors");
        let link = "ab".repeat(32);
        std::fs::write(&p, format!("3 {link} 1\n7 {link} 2\n9 broken 3\n")).unwrap();
        assert_eq!(super::read_last(&p), Some((7, link)));
        assert_eq!(super::read_last(&dir.path().join("none")), None);
    }
}
