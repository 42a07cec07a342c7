//! Full-text search over sessions (R-SES-12): an index of what every session typed, showed,
//! transferred and opened, and of who connected where and when, built while sessions run so
//! live sessions are searchable too.
//!
//! - [`feed`]: a session's events turned into entries (the same for a live session and for a
//!   recording read back);
//! - [`crypt_dir`]: where the index lives: a tantivy directory whose files are encrypted and
//!   authenticated under the index key (the plaintext index is never on disk);
//! - [`SearchIndex`]: the node's index: one writer thread (entries in, a commit every second),
//!   searches from any thread.
//!
//! The crate knows nothing of sessions' rows, the vault or who may see what: callers give it
//! the facts, the key, and filter the hits.

pub mod crypt_dir;
pub mod feed;
mod live;
mod query;

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_recording::Event;
use tantivy::schema::{Field, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

pub use crypt_dir::{EncryptedDirectory, IndexKey};
pub use feed::{Entry, Feed, Kind};
pub use live::LiveFeed;
use live::{FeedOp, FeedQueue};
pub use query::{Hit, SearchQuery, MAX_LIMIT, MAX_QUERY};

/// How often added entries become searchable.
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Batches of entries waiting for the writer.
const QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Query(String),
    #[error("the search index writer stopped")]
    Stopped,
}

/// Who, where and when: what every entry of a session carries, for filters.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub session_id: String,
    pub user: String,
    pub account: String,
    pub asset: String,
    pub protocol: String,
    pub client: String,
    /// The session's start (µs since the epoch).
    pub started_at: i64,
}

impl Facts {
    fn text(&self) -> String {
        format!(
            "{} session of user {} from {} to account {} on asset {} ({}@{})",
            self.protocol, self.user, self.client, self.account, self.asset, self.account, self.asset
        )
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Fields {
    session: Field,
    kind: Field,
    text: Field,
    at: Field,
    time: Field,
    user: Field,
    account: Field,
    asset: Field,
    protocol: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        session: b.add_text_field("session", STRING | STORED),
        kind: b.add_text_field("kind", STRING | STORED),
        text: b.add_text_field("text", TEXT | STORED),
        at: b.add_u64_field("at", STORED),
        time: b.add_i64_field("time", INDEXED | FAST | STORED),
        user: b.add_text_field("user", STRING),
        account: b.add_text_field("account", STRING),
        asset: b.add_text_field("asset", STRING),
        protocol: b.add_text_field("protocol", STRING),
    };
    (b.build(), f)
}

impl Fields {
    pub(crate) fn doc(&self, facts: &Facts, kind: &str, at: u64, text: &str) -> TantivyDocument {
        let f = self;
        let mut d = TantivyDocument::new();
        d.add_text(f.session, &facts.session_id);
        d.add_text(f.kind, kind);
        d.add_text(f.text, text);
        d.add_u64(f.at, at);
        d.add_i64(f.time, facts.started_at.saturating_add(i64::try_from(at).unwrap_or(i64::MAX)));
        d.add_text(f.user, facts.user.to_lowercase());
        d.add_text(f.account, facts.account.to_lowercase());
        d.add_text(f.asset, facts.asset.to_lowercase());
        d.add_text(f.protocol, facts.protocol.to_lowercase());
        d
    }

    pub(crate) fn docs(&self, facts: &Facts, entries: &[Entry]) -> Vec<TantivyDocument> {
        entries.iter().map(|e| self.doc(facts, e.kind.as_str(), e.at, &e.text)).collect()
    }
}

/// The writer's queue and the schema: what the feed thread needs (not the index itself,
/// whose last handle dropped stops both threads).
pub(crate) struct Writer {
    pub(crate) fields: Fields,
    pub(crate) tx: SyncSender<Op>,
}

impl Writer {
    pub(crate) fn send(&self, op: Op) -> Result<(), SearchError> {
        self.tx.send(op).map_err(|_| SearchError::Stopped)
    }
}

/// The `kind` of the entry that marks a session as wholly indexed.
pub(crate) const COMPLETE: &str = "complete";

pub(crate) enum Op {
    Add(Vec<TantivyDocument>),
    DeleteSession(String),
    Flush(mpsc::Sender<()>),
}

/// The node's search index.
#[derive(Clone)]
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    tx: SyncSender<Op>,
    /// Live sessions' events, on their way to the feed thread.
    feed: FeedQueue,
    /// Sessions whose live entries did not all fit the queue (indexed again from the recording).
    incomplete: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl SearchIndex {
    /// Opens (or creates) the index in `dir`, encrypted under `key`, and starts its writer.
    ///
    /// Durability: the index is derived from the recordings, and is not synced to disk while
    /// the server runs (see `EncryptedDirectory::sync_directory`). A process that dies leaves
    /// its writes in the operating system's cache, whole; only a crash of the machine can
    /// tear them. So a marker holding the machine's boot id is kept while the index is open
    /// and removed by [`SearchIndex::close`]: found at open with another boot id, the index
    /// may be torn and is started afresh — as is one that cannot be opened — and the caller's
    /// catch-up indexes every session from its recording again.
    pub fn open(dir: &Path, key: &IndexKey) -> Result<SearchIndex, SearchError> {
        let marker = dir.join(OPEN_MARKER);
        let boot = boot_id();
        if std::fs::read_to_string(&marker).is_ok_and(|b| b.trim() != boot) {
            tracing::warn!(dir = %dir.display(), "the machine stopped while the search index was open; rebuilding it from the recordings");
            wipe(dir)?;
        }
        let ix = match Self::open_here(dir, key) {
            Ok(ix) => ix,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "the search index cannot be opened; rebuilding it from the recordings");
                wipe(dir)?;
                Self::open_here(dir, key)?
            }
        };
        write_synced(&marker, boot.as_bytes())?;
        Ok(ix)
    }

    /// Makes everything durable and marks the index closed cleanly (a server shutting down).
    pub fn close(&self, dir: &Path) -> Result<(), SearchError> {
        self.flush()?;
        sync_fs(dir)?;
        std::fs::remove_file(dir.join(OPEN_MARKER))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn open_here(dir: &Path, key: &IndexKey) -> Result<SearchIndex, SearchError> {
        let (schema, fields) = schema();
        let directory = EncryptedDirectory::open(dir, key)?;
        let index = Index::open_or_create(directory, schema)?;
        let reader: IndexReader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (r2, ix2) = (Clone::clone(&reader), index.clone());
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("search-index".into())
            .spawn(move || {
                // Before the writer exists: its indexing and merging threads inherit the priority.
                yield_to_sessions();
                match ix2.writer_with_num_threads::<TantivyDocument>(1, 32_000_000) {
                    Ok(writer) => {
                        let _ = ready_tx.send(Ok(()));
                        write_loop(writer, r2, fields, rx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(SearchError::Io)?;
        ready_rx.recv().map_err(|_| SearchError::Stopped)??;
        let (feed_tx, feed_rx) = mpsc::sync_channel(live::FEED_QUEUE);
        let bytes = Arc::default();
        FeedQueue::start(Writer { fields, tx: tx.clone() }, feed_rx, Arc::clone(&bytes))?;
        let feed = FeedQueue::new(feed_tx, bytes);
        Ok(SearchIndex { index, reader, fields, tx, feed, incomplete: Arc::default() })
    }

    fn doc(&self, facts: &Facts, kind: &str, at: u64, text: &str) -> TantivyDocument {
        self.fields.doc(facts, kind, at, text)
    }

    fn docs(&self, facts: &Facts, entries: &[Entry]) -> Vec<TantivyDocument> {
        self.fields.docs(facts, entries)
    }

    /// A live session's feed: give it every recorded event (from the recorder's task).
    pub fn live(&self, facts: Facts) -> LiveFeed {
        LiveFeed::new(self.clone(), facts)
    }

    /// Bytes of live sessions' events not yet turned into entries (tools that feed sessions
    /// faster than they would arrive pace themselves on it).
    pub fn backlog(&self) -> usize {
        self.feed.backlog()
    }

    /// Indexes a whole session from its events (a recording read back), replacing what the
    /// index had of it. Waits until it is searchable.
    pub fn reindex(
        &self,
        facts: &Facts,
        events: impl Iterator<Item = Result<Event, portcullis_recording::RecordingError>>,
    ) -> Result<u64, SearchError> {
        self.send(Op::DeleteSession(facts.session_id.clone()))?;
        let mut feed = Feed::new(facts.text(), &facts.protocol);
        let (mut out, mut n) = (Vec::new(), 0u64);
        let mut ended = false;
        for e in events {
            // A recording cut by a crash is indexed up to the cut; an altered one is an error.
            let e = match e {
                Ok(e) => e,
                Err(portcullis_recording::RecordingError::NotSealed(_)) => break,
                Err(e) => return Err(SearchError::Query(format!("the recording cannot be read: {e}"))),
            };
            ended |= e.kind == portcullis_recording::EventKind::End;
            feed.event(&e, &mut out);
            if out.len() >= 256 {
                n += out.len() as u64;
                self.send(Op::Add(self.docs(facts, &out)))?;
                out.clear();
            }
        }
        if !ended {
            feed.finish(&mut out);
        }
        n += out.len() as u64;
        let mut docs = self.docs(facts, &out);
        docs.push(self.doc(facts, COMPLETE, 0, ""));
        self.send(Op::Add(docs))?;
        self.incomplete.lock().unwrap_or_else(|p| p.into_inner()).remove(&facts.session_id);
        self.flush()?;
        Ok(n)
    }

    /// Removes a session from the index (retention).
    pub fn delete_session(&self, session_id: &str) -> Result<(), SearchError> {
        self.send(Op::DeleteSession(session_id.to_owned()))
    }

    fn send(&self, op: Op) -> Result<(), SearchError> {
        self.tx.send(op).map_err(|_| SearchError::Stopped)
    }

    /// Commits what was added (live sessions' events included) and waits until it is
    /// searchable.
    pub fn flush(&self) -> Result<(), SearchError> {
        let (tx, rx) = mpsc::channel();
        self.feed.send(FeedOp::Flush(tx))?;
        rx.recv().map_err(|_| SearchError::Stopped)
    }

    /// Sessions wholly indexed (their live entries all arrived, or they were indexed from the
    /// recording).
    pub fn complete_sessions(&self) -> Result<HashSet<String>, SearchError> {
        use tantivy::collector::DocSetCollector;
        let searcher = self.reader.searcher();
        let q = tantivy::query::TermQuery::new(
            Term::from_field_text(self.fields.kind, COMPLETE),
            tantivy::schema::IndexRecordOption::Basic,
        );
        let mut out = HashSet::new();
        for addr in searcher.search(&q, &DocSetCollector)? {
            let d: TantivyDocument = searcher.doc(addr)?;
            if let Some(s) = d.get_first(self.fields.session).and_then(|v| v.as_str()) {
                out.insert(s.to_owned());
            }
        }
        Ok(out)
    }

    /// Sessions whose live entries were not all indexed (the queue was full), until indexed
    /// again.
    pub fn take_incomplete(&self) -> Vec<String> {
        self.incomplete.lock().unwrap_or_else(|p| p.into_inner()).drain().collect()
    }

    /// Entries in the index.
    pub fn entries(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// The marker of an open index (holding the boot id of the machine that opened it).
const OPEN_MARKER: &str = "open-since-boot";

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|b| b.trim().to_owned()).unwrap_or_default()
}

fn wipe(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => std::fs::create_dir_all(dir),
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Writes out everything of the file system holding `dir` (the index's files, written
/// unsynced).
fn sync_fs(dir: &Path) -> std::io::Result<()> {
    let d = std::fs::File::open(dir)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs takes an open descriptor, valid for the call.
        if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    d.sync_all()
}

/// Puts the calling thread in Linux's idle scheduling class (per thread, inherited by the
/// threads it starts): it runs only on CPU time the sessions leave, so indexing never slows
/// them; what it cannot keep up with waits in the queue, and a session whose events overflow
/// it is indexed from its recording afterwards. Where the class is refused, the lowest
/// niceness is used instead.
pub fn yield_to_sessions() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid, sched_setscheduler and setpriority have no memory effects (the param
    // struct lives on the stack for the call); a failure only leaves the priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        }
    }
}

fn write_loop(mut writer: IndexWriter<TantivyDocument>, reader: IndexReader, fields: Fields, rx: Receiver<Op>) {
    let mut dirty = false;
    let mut last = Instant::now();
    let mut waiting: Vec<mpsc::Sender<()>> = Vec::new();
    loop {
        let wait = if dirty { COMMIT_EVERY.saturating_sub(last.elapsed()) } else { Duration::from_secs(3600) };
        let op = rx.recv_timeout(wait);
        match op {
            Ok(Op::Add(docs)) => {
                for d in docs {
                    if let Err(e) = writer.add_document(d) {
                        tracing::error!(error = %e, "cannot add to the search index");
                    }
                }
                dirty = true;
            }
            Ok(Op::DeleteSession(id)) => {
                writer.delete_term(Term::from_field_text(fields.session, &id));
                dirty = true;
            }
            Ok(Op::Flush(done)) => {
                waiting.push(done);
                dirty = true;
                last = Instant::now() - COMMIT_EVERY;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = writer.commit();
                return;
            }
        }
        if dirty && last.elapsed() >= COMMIT_EVERY {
            match writer.commit().and_then(|_| reader.reload()) {
                Ok(()) => dirty = false,
                Err(e) => tracing::error!(error = %e, "cannot commit the search index"),
            }
            last = Instant::now();
            for w in waiting.drain(..) {
                let _ = w.send(());
            }
        }
    }
}
