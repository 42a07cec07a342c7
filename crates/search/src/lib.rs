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
mod query;

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_recording::Event;
use tantivy::schema::{Field, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

pub use crypt_dir::{EncryptedDirectory, IndexKey};
pub use feed::{Entry, Feed, Kind};
pub use query::{Hit, SearchQuery, MAX_LIMIT, MAX_QUERY};

/// How often added entries become searchable.
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Entries waiting for the writer (batches); a session that finds the queue full is indexed
/// again from its recording when it ends.
const QUEUE: usize = 4096;

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
struct Fields {
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

/// The `kind` of the entry that marks a session as wholly indexed.
const COMPLETE: &str = "complete";

enum Op {
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
    /// Sessions whose live entries did not all fit the queue (indexed again from the recording).
    incomplete: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl SearchIndex {
    /// Opens (or creates) the index in `dir`, encrypted under `key`, and starts its writer.
    pub fn open(dir: &Path, key: &IndexKey) -> Result<SearchIndex, SearchError> {
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
        Ok(SearchIndex { index, reader, fields, tx, incomplete: Arc::default() })
    }

    fn doc(&self, facts: &Facts, kind: &str, at: u64, text: &str) -> TantivyDocument {
        let f = &self.fields;
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

    fn docs(&self, facts: &Facts, entries: &[Entry]) -> Vec<TantivyDocument> {
        entries.iter().map(|e| self.doc(facts, e.kind.as_str(), e.at, &e.text)).collect()
    }

    /// A live session's feed: give it every recorded event (from the recorder's task).
    pub fn live(&self, facts: Facts) -> LiveFeed {
        let feed = Feed::new(facts.text(), &facts.protocol);
        LiveFeed { index: self.clone(), facts, feed, buf: Vec::new(), lost: false, complete: false }
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

    /// Commits what was added and waits until it is searchable.
    pub fn flush(&self) -> Result<(), SearchError> {
        let (tx, rx) = mpsc::channel();
        self.send(Op::Flush(tx))?;
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

/// Feeds one live session's events into the index.
pub struct LiveFeed {
    index: SearchIndex,
    facts: Facts,
    feed: Feed,
    buf: Vec<Entry>,
    lost: bool,
    /// The session ended: mark it wholly indexed with the next batch.
    complete: bool,
}

impl LiveFeed {
    /// A quiet moment: the output gathered so far becomes searchable.
    pub fn quiet(&mut self) {
        if self.lost {
            return;
        }
        self.feed.finish(&mut self.buf);
        self.send();
    }

    /// One recorded event. Never waits: when the index's queue is full, the session is marked
    /// to be indexed again from its recording once it ends.
    pub fn event(&mut self, e: &Event) {
        if self.lost {
            return;
        }
        self.feed.event(e, &mut self.buf);
        if e.kind == portcullis_recording::EventKind::End {
            self.complete = true;
        }
        self.send();
    }

    fn send(&mut self) {
        if self.buf.is_empty() && !self.complete {
            return;
        }
        let mut docs = self.index.docs(&self.facts, &self.buf);
        self.buf.clear();
        if std::mem::take(&mut self.complete) {
            docs.push(self.index.doc(&self.facts, COMPLETE, 0, ""));
        }
        match self.index.tx.try_send(Op::Add(docs)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(session = %self.facts.session_id, "search index queue full; the session will be indexed from its recording");
                self.lost = true;
                self.index.incomplete.lock().unwrap_or_else(|p| p.into_inner()).insert(self.facts.session_id.clone());
            }
            Err(TrySendError::Disconnected(_)) => self.lost = true,
        }
    }
}

/// Lowers the calling thread's scheduling priority (Linux: per thread, inherited by the threads
/// it starts), so that indexing yields the CPU to the sessions it indexes; what it cannot keep up with waits in the queue,
/// and a session whose entries overflow it is indexed from its recording afterwards.
fn yield_to_sessions() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority have no memory effects; a failure only leaves the priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
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
