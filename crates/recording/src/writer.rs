//! The recorder: a task that owns the file. Sessions hand it events through a bounded queue,
//! so the relay never waits on storage unless storage falls behind, and then the session is
//! slowed (the queue is full) rather than anything dropped. If storage fails, the queue
//! closes and the session must end (fail closed).

use std::path::Path;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::event::encode;
use crate::{
    aad, header, nonce, Event, EventKind, LiveTap, RecordingError, RecordingKey, FLAG_DEFLATE, FLAG_FINAL, FLAG_STREAM,
};

/// Plaintext gathered before a chunk is written.
const CHUNK_TARGET: usize = 256 * 1024;
/// Chunks smaller than this (interactive output) continue the recording's deflate stream;
/// larger ones (bulk) are compressed on their own with the fast level.
const STREAM_BELOW: usize = 64 * 1024;
/// A chunk is written at least this often while events arrive.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What a finished recording cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub events: u64,
    /// Event payload bytes recorded.
    pub payload_bytes: u64,
    /// Bytes written to the file.
    pub stored_bytes: u64,
    pub chunks: u64,
}

/// Writes one recording file.
pub struct RecordingWriter {
    file: tokio::fs::File,
    id: String,
    cipher: XChaCha20Poly1305,
    index: u64,
    prev_tag: [u8; 16],
    buf: Vec<u8>,
    last_at: u64,
    /// Chunks left to store uncompressed after one did not compress.
    skip_compression: u32,
    /// The deflate stream small chunks continue (its window spans chunks). Created on first
    /// use and dropped when the session rests (about 300 KiB each: an idle session should not
    /// keep one).
    stream: Option<flate2::Compress>,
    stats: WriterStats,
    /// Keep the terminal streams (input, output, stderr); off: only the session's metadata
    /// and events are stored (live watchers still see the streams).
    streams: bool,
}

impl RecordingWriter {
    /// Creates the file (it must not exist) and writes the header.
    pub async fn create(path: &Path, id: &str, key: &RecordingKey) -> Result<RecordingWriter, RecordingError> {
        if id.len() > 255 {
            return Err(RecordingError::BadHeader);
        }
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(path).await?;
        let h = header(id);
        file.write_all(&h).await?;
        let cipher = XChaCha20Poly1305::new_from_slice(&key[..]).map_err(|_| RecordingError::BadHeader)?;
        Ok(RecordingWriter {
            file,
            id: id.to_owned(),
            cipher,
            index: 0,
            prev_tag: [0; 16],
            buf: Vec::with_capacity(CHUNK_TARGET + 64 * 1024),
            last_at: 0,
            skip_compression: 0,
            stream: None,
            stats: WriterStats { stored_bytes: h.len() as u64, ..WriterStats::default() },
            streams: true,
        })
    }

    /// Stores no terminal streams (input, output, stderr): a connection policy with recording
    /// off. Metadata, channel and file events, commands and content hits are still stored.
    pub fn without_streams(self) -> Self {
        RecordingWriter { streams: false, ..self }
    }

    pub fn push(&mut self, e: &Event) {
        if !self.streams && matches!(e.kind, EventKind::Input | EventKind::Output | EventKind::Stderr) {
            return;
        }
        encode(&mut self.buf, e, self.last_at);
        self.last_at = self.last_at.max(e.at);
        self.stats.events += 1;
        self.stats.payload_bytes += e.data.len() as u64;
    }

    fn compress(&mut self) -> (u8, Vec<u8>) {
        if self.buf.len() < STREAM_BELOW {
            if let Some(z) = self.stream_piece() {
                self.buf.clear();
                return (FLAG_STREAM, z);
            }
            return (0, std::mem::take(&mut self.buf));
        }
        if self.skip_compression > 0 {
            self.skip_compression -= 1;
            return (0, std::mem::take(&mut self.buf));
        }
        use std::io::Write;
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::with_capacity(self.buf.len() / 2), flate2::Compression::fast());
        if enc.write_all(&self.buf).is_ok() {
            if let Ok(z) = enc.finish() {
                if z.len() < self.buf.len() * 95 / 100 {
                    self.buf.clear();
                    return (FLAG_DEFLATE, z);
                }
            }
        }
        // Incompressible (encrypted or random payload): do not try again for a while.
        self.skip_compression = 16;
        (0, std::mem::take(&mut self.buf))
    }

    /// The buffer as the stream's next piece, ending in a sync flush so the reader can
    /// decode it whole. `None` if the compressor failed: the chunk is then stored as it is and
    /// the stream starts afresh, which the reader's decompressor follows without knowing (a
    /// fresh raw deflate stream never refers back past its own start).
    fn stream_piece(&mut self) -> Option<Vec<u8>> {
        let stream = self.stream.get_or_insert_with(|| flate2::Compress::new(flate2::Compression::default(), false));
        let mut out = Vec::with_capacity(self.buf.len() / 2 + 64);
        let mut input = &self.buf[..];
        loop {
            let (in0, out0) = (stream.total_in(), stream.total_out());
            if stream.compress_vec(input, &mut out, flate2::FlushCompress::Sync).is_err() {
                self.stream = None;
                return None;
            }
            input = &input[(stream.total_in() - in0) as usize..];
            let produced = stream.total_out() - out0;
            // Done when all input is taken and the flush had room to finish.
            if input.is_empty() && (out.len() < out.capacity() || produced == 0) {
                return Some(out);
            }
            out.reserve(out.capacity().max(1024));
        }
    }

    /// The session is resting: free the compression context. The next small chunk starts a
    /// fresh stream, which the reader follows without knowing (a fresh raw deflate stream
    /// never refers back past its own start, and a sync flush leaves no block open).
    pub fn rest(&mut self) {
        self.stream = None;
    }

    /// Writes the gathered events as one chunk (`last`: the final one).
    pub async fn flush_chunk(&mut self, last: bool) -> Result<(), RecordingError> {
        if self.buf.is_empty() && !last {
            return Ok(());
        }
        let (mut flags, plain) = self.compress();
        if last {
            flags |= FLAG_FINAL;
        }
        let ad = aad(&self.id, self.index, flags, &self.prev_tag);
        let sealed = self
            .cipher
            .encrypt(&nonce(self.index), Payload { msg: &plain, aad: &ad })
            .map_err(|_| RecordingError::Malformed(self.index))?;
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&sealed[sealed.len() - 16..]);
        let len = u32::try_from(sealed.len() + 1).map_err(|_| RecordingError::Malformed(self.index))?;
        let mut frame = Vec::with_capacity(sealed.len() + 5);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.push(flags);
        frame.extend_from_slice(&sealed);
        self.file.write_all(&frame).await?;
        self.stats.stored_bytes += frame.len() as u64;
        self.stats.chunks += 1;
        self.prev_tag = tag;
        self.index += 1;
        if self.buf.capacity() < CHUNK_TARGET {
            self.buf.reserve(CHUNK_TARGET);
        }
        Ok(())
    }

    /// Writes the final chunk and syncs the file.
    pub async fn seal(mut self) -> Result<WriterStats, RecordingError> {
        self.flush_chunk(true).await?;
        self.file.flush().await?;
        self.file.sync_all().await?;
        Ok(self.stats)
    }

    /// Runs the recorder as a task; returns the handle sessions record through. `capacity`
    /// bounds the queue (events).
    pub fn spawn(self, capacity: usize) -> RecorderHandle {
        self.spawn_watched(capacity, None)
    }

    /// As [`spawn`](Self::spawn), publishing every recorded event to `tap` for live watchers.
    pub fn spawn_watched(self, capacity: usize, tap: Option<LiveTap>) -> RecorderHandle {
        self.spawn_observed(capacity, tap, None)
    }

    /// As [`spawn_watched`](Self::spawn_watched), also handing every recorded event to
    /// `observer` (in the recorder's task, in order: the search index's feed). The observer must
    /// not wait.
    pub fn spawn_observed(self, capacity: usize, tap: Option<LiveTap>, observer: Option<Observer>) -> RecorderHandle {
        let (tx, rx) = mpsc::channel(capacity);
        let task = tokio::spawn(async move {
            let result = self.run(rx, tap.as_ref(), observer).await;
            if let (Some(tap), Err(_)) = (&tap, &result) {
                tap.close("the session recording failed");
            }
            result
        });
        RecorderHandle { tx: Some(tx), task: Some(task), started: Instant::now() }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Event>,
        tap: Option<&LiveTap>,
        observer: Option<Observer>,
    ) -> Result<WriterStats, RecordingError> {
        let mut out = Outlets { tap, observer };
        let mut last_flush = Instant::now();
        // Whether anything was written since the recorder last rested.
        let mut busy = false;
        loop {
            // At rest (nothing gathered, nothing written for a second) the recorder waits for
            // the next event without a timer.
            let next = if self.buf.is_empty() && !busy {
                Ok(rx.recv().await)
            } else {
                let wait = FLUSH_EVERY.saturating_sub(last_flush.elapsed());
                tokio::time::timeout(wait, rx.recv()).await
            };
            match next {
                Ok(Some(e)) => {
                    if self.buf.is_empty() && !busy {
                        // Waking from rest: the first flush comes a second from now.
                        last_flush = Instant::now();
                    }
                    self.push(&e);
                    out.publish(&e, self.last_at);
                    // Take whatever else is queued without waiting.
                    while self.buf.len() < CHUNK_TARGET {
                        match rx.try_recv() {
                            Ok(e) => {
                                self.push(&e);
                                out.publish(&e, self.last_at);
                            }
                            Err(_) => break,
                        }
                    }
                    if self.buf.len() >= CHUNK_TARGET {
                        self.flush_chunk(false).await?;
                        busy = true;
                        last_flush = Instant::now();
                    }
                }
                Ok(None) => return self.seal().await,
                Err(_) => {
                    // A quiet second: the observer gives out what it gathered.
                    out.quiet();
                    if self.buf.is_empty() {
                        // A second without events: rest.
                        busy = false;
                        self.rest();
                    } else {
                        self.flush_chunk(false).await?;
                        self.file.flush().await?;
                        busy = true;
                    }
                    last_flush = Instant::now();
                }
            }
        }
    }
}

/// Sees every recorded event, in order (see [`RecordingWriter::spawn_observed`]), and `None`
/// after a quiet second while the session is busy (to give out what it gathered).
pub type Observer = Box<dyn FnMut(Option<&Event>) + Send>;

/// Where recorded events go besides the file: live watchers and the observer.
struct Outlets<'a> {
    tap: Option<&'a LiveTap>,
    observer: Option<Observer>,
}

impl Outlets<'_> {
    /// `at`: the event's time as recorded (an event queued after a later one is recorded at
    /// the later one's time), so the observer sees the times a player will.
    fn publish(&mut self, e: &Event, at: u64) {
        if let Some(t) = self.tap {
            t.publish(e);
        }
        if let Some(o) = &mut self.observer {
            if e.at == at {
                o(Some(e));
            } else {
                o(Some(&Event { at, ..e.clone() }));
            }
        }
    }

    fn quiet(&mut self) {
        if let Some(o) = &mut self.observer {
            o(None);
        }
    }
}

/// How a session records. Cloning shares the queue.
pub struct RecorderHandle {
    tx: Option<mpsc::Sender<Event>>,
    task: Option<tokio::task::JoinHandle<Result<WriterStats, RecordingError>>>,
    started: Instant,
}

impl RecorderHandle {
    /// Microseconds since the recording started.
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// A sender for other tasks of the same session.
    pub fn sender(&self) -> Option<Recorder> {
        self.tx.as_ref().map(|tx| Recorder { tx: tx.clone(), started: self.started })
    }

    /// Records an event; waits while the queue is full. `Err` when the recorder has failed.
    pub async fn record(
        &self,
        kind: EventKind,
        channel: u32,
        data: impl Into<bytes::Bytes>,
    ) -> Result<(), RecordingError> {
        self.sender().ok_or(RecordingError::Closed)?.record(kind, channel, data).await
    }

    /// Records `End` with the reason, seals the file and returns its statistics.
    pub async fn finish(mut self, reason: &str) -> Result<WriterStats, RecordingError> {
        let end = Event::new(self.now(), EventKind::End, 0, reason.as_bytes().to_vec());
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(end).await;
        }
        match self.task.take() {
            Some(t) => t.await.map_err(|_| RecordingError::Closed)?,
            None => Err(RecordingError::Closed),
        }
    }
}

/// A cheap, cloneable sender into a session's recorder.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    started: Instant,
}

impl Recorder {
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    pub async fn record(
        &self,
        kind: EventKind,
        channel: u32,
        data: impl Into<bytes::Bytes>,
    ) -> Result<(), RecordingError> {
        self.tx.send(Event::new(self.now(), kind, channel, data)).await.map_err(|_| RecordingError::Closed)
    }

    pub async fn event(&self, e: Event) -> Result<(), RecordingError> {
        self.tx.send(e).await.map_err(|_| RecordingError::Closed)
    }

    /// Resolves when the recorder has stopped (storage failed, or the session finished).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}
