//! Live sessions into the index, off the recorder's path.
//!
//! The recorder hands each event to a [`LiveFeed`], which only queues it (a reference-counted
//! buffer, no copy) for the feed thread. That thread — at the index writer's lower priority —
//! turns events into entries ([`Feed`]) and documents, and passes them to the writer. Nothing
//! here waits: when the queue is full (by count or by bytes), the session is marked to be
//! indexed again from its recording once it ends, and its later events are dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use portcullis_recording::{Event, EventKind};

use crate::{Entry, Facts, Feed, Op, SearchIndex, Writer, COMPLETE};

/// Events waiting for the feed thread, all sessions together.
pub(crate) const FEED_QUEUE: usize = 8192;
/// Bytes of event data waiting for the feed thread, all sessions together.
pub(crate) const FEED_BYTES: usize = 64 << 20;

pub(crate) enum FeedOp {
    Open(u64, Box<Facts>, Arc<AtomicBool>),
    Event(u64, Event),
    Quiet(u64),
    Close(u64),
    /// Everything queued before is with the writer: pass the flush on.
    Flush(mpsc::Sender<()>),
}

/// The sending side shared by every [`LiveFeed`].
#[derive(Clone)]
pub(crate) struct FeedQueue {
    tx: SyncSender<FeedOp>,
    bytes: Arc<AtomicUsize>,
    next: Arc<AtomicU64>,
}

impl FeedQueue {
    /// Starts the feed thread, which hands documents to `index`'s writer.
    pub(crate) fn start(index: Writer, rx: Receiver<FeedOp>, bytes: Arc<AtomicUsize>) -> std::io::Result<()> {
        std::thread::Builder::new().name("search-feed".into()).spawn(move || {
            crate::yield_to_sessions();
            feed_loop(index, rx, bytes)
        })?;
        Ok(())
    }

    pub(crate) fn new(tx: SyncSender<FeedOp>, bytes: Arc<AtomicUsize>) -> FeedQueue {
        FeedQueue { tx, bytes, next: Arc::default() }
    }

    /// Waits for room: for callers that are not a session (flush).
    pub(crate) fn send(&self, op: FeedOp) -> Result<(), crate::SearchError> {
        self.tx.send(op).map_err(|_| crate::SearchError::Stopped)
    }

    /// Bytes of event data not yet turned into entries.
    pub(crate) fn backlog(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Feeds one live session's events into the index (see the module's note).
pub struct LiveFeed {
    index: SearchIndex,
    id: u64,
    session_id: String,
    /// Shared with the feed thread: set when an event did not fit the queue.
    lost: Arc<AtomicBool>,
    opened: bool,
    facts: Option<Box<Facts>>,
}

impl LiveFeed {
    pub(crate) fn new(index: SearchIndex, facts: Facts) -> LiveFeed {
        let id = index.feed.next.fetch_add(1, Ordering::Relaxed);
        let session_id = facts.session_id.clone();
        LiveFeed { index, id, session_id, lost: Arc::default(), opened: false, facts: Some(Box::new(facts)) }
    }

    /// A quiet moment: the output gathered so far becomes searchable.
    pub fn quiet(&mut self) {
        if self.opened {
            self.queue(FeedOp::Quiet(self.id), 0);
        }
    }

    /// One recorded event. Never waits.
    pub fn event(&mut self, e: &Event) {
        if !self.opened {
            let facts = self.facts.take().unwrap_or_default();
            self.opened = true;
            self.queue(FeedOp::Open(self.id, facts, self.lost.clone()), 0);
        }
        self.queue(FeedOp::Event(self.id, e.clone()), e.data.len());
    }

    fn queue(&mut self, op: FeedOp, len: usize) {
        if self.lost.load(Ordering::Relaxed) {
            return;
        }
        let q = &self.index.feed;
        if q.bytes.fetch_add(len, Ordering::Relaxed) + len > FEED_BYTES {
            q.bytes.fetch_sub(len, Ordering::Relaxed);
            return self.lose();
        }
        match q.tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                q.bytes.fetch_sub(len, Ordering::Relaxed);
                self.lose();
            }
            Err(TrySendError::Disconnected(_)) => {
                q.bytes.fetch_sub(len, Ordering::Relaxed);
                self.lost.store(true, Ordering::Relaxed);
            }
        }
    }

    fn lose(&mut self) {
        tracing::warn!(session = %self.session_id, "search index queue full; the session will be indexed from its recording");
        self.lost.store(true, Ordering::Relaxed);
        self.index.incomplete.lock().unwrap_or_else(|p| p.into_inner()).insert(self.session_id.clone());
    }
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        // What was gathered of a session that ended without its end event is given out; if
        // the queue is full, the feed thread forgets the session when it next finds it idle.
        if self.opened && !self.lost.load(Ordering::Relaxed) {
            let _ = self.index.feed.tx.try_send(FeedOp::Close(self.id));
        }
    }
}

struct Live {
    facts: Box<Facts>,
    feed: Feed,
    lost: Arc<AtomicBool>,
}

fn feed_loop(index: Writer, rx: Receiver<FeedOp>, bytes: Arc<AtomicUsize>) {
    let mut live: HashMap<u64, Live> = HashMap::new();
    let mut out: Vec<Entry> = Vec::new();
    loop {
        let op = match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(op) => op,
            Err(RecvTimeoutError::Timeout) => {
                // Idle: forget sessions whose feed is gone (its close did not fit the queue).
                live.retain(|_, l| Arc::strong_count(&l.lost) > 1);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let (id, done) = match op {
            FeedOp::Open(id, facts, lost) => {
                let feed = Feed::new(facts.text(), &facts.protocol);
                live.insert(id, Live { facts, feed, lost });
                continue;
            }
            FeedOp::Flush(done) => {
                let _ = index.send(Op::Flush(done));
                continue;
            }
            FeedOp::Event(id, e) => {
                bytes.fetch_sub(e.data.len(), Ordering::Relaxed);
                let Some(l) = live.get_mut(&id) else { continue };
                if l.lost.load(Ordering::Relaxed) {
                    continue;
                }
                l.feed.event(&e, &mut out);
                (id, e.kind == EventKind::End)
            }
            FeedOp::Quiet(id) => {
                let Some(l) = live.get_mut(&id) else { continue };
                l.feed.finish(&mut out);
                (id, false)
            }
            FeedOp::Close(id) => {
                let Some(mut l) = live.remove(&id) else { continue };
                l.feed.finish(&mut out);
                if !out.is_empty() && !l.lost.load(Ordering::Relaxed) {
                    let _ = index.send(Op::Add(index.fields.docs(&l.facts, &out)));
                }
                out.clear();
                continue;
            }
        };
        let Some(l) = live.get(&id) else { continue };
        if out.is_empty() && !done {
            continue;
        }
        let mut docs = index.fields.docs(&l.facts, &out);
        out.clear();
        if done {
            docs.push(index.fields.doc(&l.facts, COMPLETE, 0, ""));
        }
        // The writer's queue is waited for here, not on the recorder's path; a backlog here
        // fills the feed queue, and sessions that find it full are indexed from the recording.
        if index.send(Op::Add(docs)).is_err() {
            return;
        }
        if done {
            live.remove(&id);
        }
    }
}
