//! A tantivy [`Directory`] whose files are encrypted at rest.
//!
//! Every file is `"PCIDX" 0x01 | 16-byte random file nonce | blocks`, each block at most
//! [`BLOCK`] bytes of plaintext sealed with XChaCha20-Poly1305 under the index key: nonce =
//! file nonce ‖ block number, associated data = the file's name ‖ block number ‖ whether it is
//! the last block. So a changed byte, a block moved within or between files, a file renamed
//! or cut short fails to open (an I/O error "index file … was altered"), and nothing of the
//! index — words typed and shown in sessions — is on disk in the clear. Reads decrypt only the
//! blocks they touch; files are written once (tantivy's segments are immutable), the small
//! metadata files atomically (temporary file, then rename).

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, OwnedBytes, TerminatingWrite, WatchCallback,
    WatchHandle, WritePtr,
};
use tantivy::HasLen;

/// Plaintext bytes per block.
pub const BLOCK: usize = 16 * 1024;
const TAG: usize = 16;
const MAGIC: &[u8; 6] = b"PCIDX\x01";
const HEADER: usize = MAGIC.len() + 16;

/// The index's 256-bit key.
pub type IndexKey = zeroize::Zeroizing<[u8; 32]>;

/// The encrypted directory (cloning shares it).
#[derive(Clone)]
pub struct EncryptedDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    cipher: XChaCha20Poly1305,
    /// Locks held in this process (one server owns its index directory).
    locks: Mutex<HashSet<PathBuf>>,
}

impl fmt::Debug for EncryptedDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedDirectory({})", self.inner.root.display())
    }
}

impl EncryptedDirectory {
    /// Opens (creating if needed) the directory `root`, readable only by its owner.
    pub fn open(root: &Path, key: &IndexKey) -> io::Result<EncryptedDirectory> {
        std::fs::create_dir_all(root)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        }
        // Left by a crash: temporary files of atomic writes.
        for entry in std::fs::read_dir(root)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(path);
            }
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key[..]).map_err(|_| io::Error::other("bad index key"))?;
        Ok(EncryptedDirectory {
            inner: Arc::new(Inner { root: root.to_owned(), cipher, locks: Mutex::new(HashSet::new()) }),
        })
    }

    fn path(&self, p: &Path) -> PathBuf {
        self.inner.root.join(p)
    }
}

fn name_of(p: &Path) -> Vec<u8> {
    p.to_string_lossy().as_bytes().to_vec()
}

fn nonce(file_nonce: &[u8; 16], block: u64) -> chacha20poly1305::XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(file_nonce);
    n[16..].copy_from_slice(&block.to_be_bytes());
    n.into()
}

fn aad(name: &[u8], block: u64, last: bool) -> Vec<u8> {
    let mut a = Vec::with_capacity(name.len() + 9);
    a.extend_from_slice(name);
    a.extend_from_slice(&block.to_be_bytes());
    a.push(u8::from(last));
    a
}

fn altered(name: &[u8]) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("index file {} was altered", String::from_utf8_lossy(name)))
}

/// The plaintext length and block count of a file of `stored` bytes.
fn layout(stored: u64) -> Option<(usize, u64)> {
    let body = usize::try_from(stored.checked_sub(HEADER as u64)?).ok()?;
    let blocks = body.div_ceil(BLOCK + TAG).max(1);
    let plain = body.checked_sub(blocks * TAG)?;
    Some((plain, blocks as u64))
}

/// Seals a whole plaintext (for atomic writes).
fn seal_all(cipher: &XChaCha20Poly1305, name: &[u8], plain: &[u8]) -> io::Result<Vec<u8>> {
    let mut w = BlockWriter::new(Vec::new(), cipher.clone(), name.to_vec())?;
    w.write_all(plain)?;
    w.finish()
}

/// Writes the blocks of one file to `out`.
struct BlockWriter<W: Write> {
    out: W,
    cipher: XChaCha20Poly1305,
    name: Vec<u8>,
    file_nonce: [u8; 16],
    buf: Vec<u8>,
    block: u64,
}

impl<W: Write> BlockWriter<W> {
    fn new(mut out: W, cipher: XChaCha20Poly1305, name: Vec<u8>) -> io::Result<Self> {
        use rand::RngCore;
        let mut file_nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut file_nonce);
        out.write_all(MAGIC)?;
        out.write_all(&file_nonce)?;
        Ok(BlockWriter { out, cipher, name, file_nonce, buf: Vec::with_capacity(BLOCK * 2), block: 0 })
    }

    fn seal_block(&mut self, plain: &[u8], last: bool) -> io::Result<()> {
        let ad = aad(&self.name, self.block, last);
        let sealed = self
            .cipher
            .encrypt(&nonce(&self.file_nonce, self.block), Payload { msg: plain, aad: &ad })
            .map_err(|_| io::Error::other("index encryption failed"))?;
        self.out.write_all(&sealed)?;
        self.block += 1;
        Ok(())
    }

    /// Writes the last block; returns the output.
    fn finish(mut self) -> io::Result<W> {
        let rest = std::mem::take(&mut self.buf);
        self.seal_block(&rest, true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for BlockWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        // A full block is sealed only once more follows: the last block must be marked so.
        while self.buf.len() > BLOCK {
            let block: Vec<u8> = self.buf.drain(..BLOCK).collect();
            self.seal_block(&block, false)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A file being written; tantivy terminates it when done.
struct FileWriter {
    inner: Option<BlockWriter<io::BufWriter<File>>>,
}

impl Write for FileWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.inner.as_mut().ok_or_else(|| io::Error::other("file already terminated"))?.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TerminatingWrite for FileWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        let w = self.inner.take().ok_or_else(|| io::Error::other("file already terminated"))?;
        // Not synced: see the durability note of `SearchIndex::open`.
        w.finish()?.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    }
}

/// Decrypted blocks an open file keeps (most recent first): tantivy reads postings and
/// positions in many small, nearby ranges, which would otherwise decrypt the same block again
/// and again.
const CACHED_BLOCKS: usize = 8;

/// An open file: blocks decrypted as they are read.
struct Reader {
    file: File,
    name: Vec<u8>,
    cipher: XChaCha20Poly1305,
    file_nonce: [u8; 16],
    len: usize,
    blocks: u64,
    recent: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "encrypted index file {}", String::from_utf8_lossy(&self.name))
    }
}

impl HasLen for Reader {
    fn len(&self) -> usize {
        self.len
    }
}

impl Reader {
    fn open(path: &Path, name: Vec<u8>, cipher: XChaCha20Poly1305) -> io::Result<Reader> {
        let file = File::open(path)?;
        let stored = file.metadata()?.len();
        let (len, blocks) = layout(stored).ok_or_else(|| altered(&name))?;
        let mut head = [0u8; HEADER];
        file.read_exact_at(&mut head, 0)?;
        if &head[..MAGIC.len()] != MAGIC {
            return Err(altered(&name));
        }
        let mut file_nonce = [0u8; 16];
        file_nonce.copy_from_slice(&head[MAGIC.len()..]);
        Ok(Reader { file, name, cipher, file_nonce, len, blocks, recent: Mutex::new(Vec::new()) })
    }

    /// Block `i`, from the recent ones or decrypted (and then kept).
    fn cached_block(&self, i: u64) -> io::Result<Arc<Vec<u8>>> {
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = recent.iter().position(|(b, _)| *b == i) {
                let hit = recent.remove(at);
                let block = hit.1.clone();
                recent.insert(0, hit);
                return Ok(block);
            }
        }
        let block = Arc::new(self.block(i)?);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.insert(0, (i, block.clone()));
        recent.truncate(CACHED_BLOCKS);
        Ok(block)
    }

    fn block(&self, i: u64) -> io::Result<Vec<u8>> {
        let last = i + 1 == self.blocks;
        let plain_len = if last { self.len - (i as usize) * BLOCK } else { BLOCK };
        let mut sealed = vec![0u8; plain_len + TAG];
        let at = HEADER as u64 + i * (BLOCK + TAG) as u64;
        self.file.read_exact_at(&mut sealed, at)?;
        let ad = aad(&self.name, i, last);
        self.cipher
            .decrypt(&nonce(&self.file_nonce, i), Payload { msg: &sealed, aad: &ad })
            .map_err(|_| altered(&self.name))
    }

    fn read(&self, range: Range<usize>) -> io::Result<Vec<u8>> {
        if range.start > range.end || range.end > self.len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "read past the end of an index file"));
        }
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let (first, last) = ((range.start / BLOCK) as u64, ((range.end - 1) / BLOCK) as u64);
        let mut out = Vec::with_capacity(range.len());
        for i in first..=last {
            let plain = self.cached_block(i)?;
            let base = i as usize * BLOCK;
            let from = range.start.max(base) - base;
            let to = range.end.min(base + plain.len()) - base;
            out.extend_from_slice(&plain[from..to]);
        }
        Ok(out)
    }

    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.read(0..self.len)
    }
}

impl FileHandle for Reader {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        self.read(range).map(OwnedBytes::new)
    }
}

fn not_found(path: &Path, e: io::Error) -> OpenReadError {
    if e.kind() == io::ErrorKind::NotFound {
        OpenReadError::FileDoesNotExist(path.to_owned())
    } else {
        OpenReadError::wrap_io_error(e, path.to_owned())
    }
}

/// Releases an in-process lock when dropped.
struct Held {
    dir: EncryptedDirectory,
    path: PathBuf,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.dir.inner.locks.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.path);
    }
}

impl Directory for EncryptedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let r =
            Reader::open(&self.path(path), name_of(path), self.inner.cipher.clone()).map_err(|e| not_found(path, e))?;
        Ok(Arc::new(r))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        std::fs::remove_file(self.path(path)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                DeleteError::FileDoesNotExist(path.to_owned())
            } else {
                DeleteError::IoError { io_error: Arc::new(e), filepath: path.to_owned() }
            }
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(self.path(path).exists())
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(self.path(path)).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                OpenWriteError::FileAlreadyExists(path.to_owned())
            } else {
                OpenWriteError::wrap_io_error(e, path.to_owned())
            }
        })?;
        let w = BlockWriter::new(io::BufWriter::new(file), self.inner.cipher.clone(), name_of(path))
            .map_err(|e| OpenWriteError::wrap_io_error(e, path.to_owned()))?;
        Ok(io::BufWriter::new(Box::new(FileWriter { inner: Some(w) })))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let r =
            Reader::open(&self.path(path), name_of(path), self.inner.cipher.clone()).map_err(|e| not_found(path, e))?;
        r.read_all().map_err(|e| OpenReadError::wrap_io_error(e, path.to_owned()))
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let sealed = seal_all(&self.inner.cipher, &name_of(path), data)?;
        let target = self.path(path);
        let tmp = target.with_extension(format!("{}.tmp", uuid_like()));
        {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(&sealed)?;
        }
        std::fs::rename(&tmp, &target)
    }

    /// Nothing is synced while the server runs: an `fsync` makes the file system write out
    /// the recordings' pending data with it (ext4's ordered journal), stalling the sessions
    /// being recorded. The index is synced once, at a clean shutdown, and rebuilt after a
    /// crash of the machine (see `SearchIndex::open`).
    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        let deadline = Instant::now() + Duration::from_secs(if lock.is_blocking { 30 } else { 0 });
        loop {
            if self.inner.locks.lock().unwrap_or_else(|p| p.into_inner()).insert(lock.filepath.clone()) {
                return Ok(DirectoryLock::from(Box::new(Held { dir: self.clone(), path: lock.filepath.clone() })));
            }
            if Instant::now() >= deadline {
                return Err(LockError::LockBusy);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn watch(&self, _: WatchCallback) -> tantivy::Result<WatchHandle> {
        // Readers are reloaded by the index writer after each commit.
        Ok(WatchHandle::empty())
    }
}

fn uuid_like() -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> IndexKey {
        zeroize::Zeroizing::new([b; 32])
    }

    fn write(dir: &EncryptedDirectory, name: &str, data: &[u8]) {
        let mut w = dir.open_write(Path::new(name)).unwrap();
        w.write_all(data).unwrap();
        w.terminate().unwrap();
    }

    #[test]
    fn files_round_trip_at_every_size_and_range() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = EncryptedDirectory::open(tmp.path(), &key(1)).unwrap();
        for size in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK, 3 * BLOCK + 7] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let name = format!("f{size}");
            write(&dir, &name, &data);
            let h = dir.get_file_handle(Path::new(&name)).unwrap();
            assert_eq!(h.len(), size);
            assert_eq!(h.read_bytes(0..size).unwrap().as_slice(), &data[..]);
            if size > 10 {
                let r = size / 3..size - 3;
                assert_eq!(h.read_bytes(r.clone()).unwrap().as_slice(), &data[r]);
            }
            assert!(h.read_bytes(0..size + 1).is_err());
        }
        dir.atomic_write(Path::new("meta.json"), b"{\"x\":1}").unwrap();
        assert_eq!(dir.atomic_read(Path::new("meta.json")).unwrap(), b"{\"x\":1}");
    }

    #[test]
    fn nothing_is_stored_in_the_clear_and_changes_are_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = EncryptedDirectory::open(tmp.path(), &key(2)).unwrap();
        let secret = b"systemctl stop postgresql ".repeat(2000);
        write(&dir, "a", &secret);
        write(&dir, "b", &secret);
        let raw = std::fs::read(tmp.path().join("a")).unwrap();
        assert!(!raw.windows(9).any(|w| w == b"systemctl"));
        // A flipped byte.
        let mut bad = raw.clone();
        bad[HEADER + 5] ^= 1;
        std::fs::write(tmp.path().join("c"), &bad).unwrap();
        let h = dir.get_file_handle(Path::new("c")).unwrap();
        let e = h.read_bytes(0..10).unwrap_err();
        assert!(e.to_string().contains("index file c was altered"), "{e}");
        // A file under another name.
        std::fs::copy(tmp.path().join("a"), tmp.path().join("d")).unwrap();
        assert!(dir.get_file_handle(Path::new("d")).unwrap().read_bytes(0..10).is_err());
        // Cut at a block boundary: the new last block was not sealed as the last.
        std::fs::write(tmp.path().join("e"), &raw[..HEADER + 2 * (BLOCK + TAG)]).unwrap();
        std::fs::rename(tmp.path().join("e"), tmp.path().join("a")).unwrap();
        let h = dir.get_file_handle(Path::new("a")).unwrap();
        assert!(h.read_bytes(2 * BLOCK - 5..2 * BLOCK).is_err());
        // Another key cannot read it.
        let other = EncryptedDirectory::open(tmp.path(), &key(3)).unwrap();
        assert!(other.get_file_handle(Path::new("b")).unwrap().read_bytes(0..1).is_err());
    }
}
