//! Reading and verifying a recording, chunk by chunk (memory bounded by one chunk).

use std::io::{BufReader, Read};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;

use crate::event::decode_all;
use crate::{aad, nonce, Event, RecordingError, RecordingKey, FLAG_DEFLATE, FLAG_FINAL, FLAG_STREAM, MAGIC, MAX_CHUNK};

/// Streams the events of a recording, verifying every chunk before yielding its events.
pub struct Reader<R: Read> {
    input: R,
    id: String,
    cipher: XChaCha20Poly1305,
    index: u64,
    prev_tag: [u8; 16],
    last_at: u64,
    sealed: bool,
    pending: std::vec::IntoIter<Event>,
    stored_bytes: u64,
    /// The recording's deflate stream, continued by each `FLAG_STREAM` chunk.
    stream: flate2::Decompress,
    failed: bool,
    /// Stop cleanly where the chunks end without the final one (a crash cut the recording).
    tolerate_cut: bool,
    cut: bool,
}

impl Reader<BufReader<std::fs::File>> {
    pub fn open(path: &Path, expected_id: &str, key: &RecordingKey) -> Result<Self, RecordingError> {
        Reader::new(BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?), expected_id, key)
    }

    /// For following a recording as it is written ([`Reader::poll_more`]): a small buffer, as
    /// a node may follow thousands at once, each growing by a chunk a second at most.
    pub fn open_to_follow(path: &Path, expected_id: &str, key: &RecordingKey) -> Result<Self, RecordingError> {
        Reader::new(BufReader::with_capacity(16 * 1024, std::fs::File::open(path)?), expected_id, key)
    }
}

impl Reader<BufReader<std::fs::File>> {
    /// Following a recording as it is written (a session live on another node): the events of
    /// the chunks written since the last call, and whether the final chunk was among them. A
    /// chunk not wholly written yet is read again at the next call; every chunk is
    /// authenticated and chained as ever.
    pub fn poll_more(&mut self) -> Result<(Vec<Event>, bool), RecordingError> {
        use std::io::{Seek, SeekFrom};
        self.tolerate_cut = true;
        let mut events: Vec<Event> = self.pending.by_ref().collect();
        loop {
            match self.next_chunk()? {
                Some(more) => events.extend(more),
                None if self.sealed => return Ok((events, true)),
                None => {
                    // The end of what is written so far: start again at the next chunk.
                    self.cut = false;
                    self.input.seek(SeekFrom::Start(self.stored_bytes))?;
                    return Ok((events, false));
                }
            }
        }
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of input before any byte.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(true)
}

impl<R: Read> Reader<R> {
    pub fn new(mut input: R, expected_id: &str, key: &RecordingKey) -> Result<Self, RecordingError> {
        let mut magic = [0u8; 7];
        if !read_full(&mut input, &mut magic).map_err(|_| RecordingError::BadHeader)? || &magic[..6] != MAGIC {
            return Err(RecordingError::BadHeader);
        }
        let mut id = vec![0u8; usize::from(magic[6])];
        if !id.is_empty() && !read_full(&mut input, &mut id).map_err(|_| RecordingError::BadHeader)? {
            return Err(RecordingError::BadHeader);
        }
        let id = String::from_utf8(id).map_err(|_| RecordingError::BadHeader)?;
        if id != expected_id {
            return Err(RecordingError::WrongSession { expected: expected_id.into(), found: id });
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key[..]).map_err(|_| RecordingError::BadHeader)?;
        Ok(Reader {
            input,
            stored_bytes: 7 + id.len() as u64,
            id,
            cipher,
            index: 0,
            prev_tag: [0; 16],
            last_at: 0,
            sealed: false,
            pending: Vec::new().into_iter(),
            stream: flate2::Decompress::new(false),
            failed: false,
            tolerate_cut: false,
            cut: false,
        })
    }

    /// Reads a recording cut short (by a server crash, or by truncation) up to its last whole
    /// chunk and stops there instead of failing; [`Self::was_cut`] tells afterwards. Every
    /// chunk read is still authenticated and chained: an altered chunk is still an error.
    pub fn tolerating_cut(mut self) -> Self {
        self.tolerate_cut = true;
        self
    }

    /// Whether the recording ended without its final chunk (only with [`Self::tolerating_cut`]).
    pub fn was_cut(&self) -> bool {
        self.cut
    }

    fn not_sealed(&mut self) -> Result<Option<Vec<Event>>, RecordingError> {
        if self.tolerate_cut {
            self.cut = true;
            return Ok(None);
        }
        Err(RecordingError::NotSealed(self.index))
    }

    /// The next chunk's events; `Ok(None)` after the final chunk.
    fn next_chunk(&mut self) -> Result<Option<Vec<Event>>, RecordingError> {
        let mut len = [0u8; 4];
        if self.sealed {
            let mut probe = [0u8; 1];
            return match self.input.read(&mut probe)? {
                0 => Ok(None),
                _ => Err(RecordingError::TrailingData(self.index - 1)),
            };
        }
        if self.cut {
            return Ok(None);
        }
        match read_full(&mut self.input, &mut len) {
            Ok(true) => {}
            Ok(false) | Err(_) => return self.not_sealed(),
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(17..=MAX_CHUNK).contains(&len) {
            return Err(RecordingError::Malformed(self.index));
        }
        let mut frame = vec![0u8; len];
        match read_full(&mut self.input, &mut frame) {
            Ok(true) => {}
            // A frame written in part: the crash came while it was written.
            Ok(false) | Err(_) => return self.not_sealed(),
        }
        self.stored_bytes += 4 + len as u64;
        let flags = frame[0];
        let sealed = &frame[1..];
        let ad = aad(&self.id, self.index, flags, &self.prev_tag);
        let plain = self
            .cipher
            .decrypt(&nonce(self.index), Payload { msg: sealed, aad: &ad })
            .map_err(|_| RecordingError::Tampered(self.index))?;
        self.prev_tag.copy_from_slice(&sealed[sealed.len() - 16..]);
        let plain = if flags & FLAG_DEFLATE != 0 {
            let mut out = Vec::with_capacity(plain.len() * 3);
            flate2::read::DeflateDecoder::new(&plain[..])
                .take(MAX_CHUNK as u64 * 8)
                .read_to_end(&mut out)
                .map_err(|_| RecordingError::Malformed(self.index))?;
            out
        } else if flags & FLAG_STREAM != 0 {
            self.stream_piece(&plain)?
        } else {
            plain
        };
        let events =
            decode_all(bytes::Bytes::from(plain), self.last_at).ok_or(RecordingError::Malformed(self.index))?;
        if let Some(e) = events.last() {
            self.last_at = e.at;
        }
        self.index += 1;
        self.sealed = flags & FLAG_FINAL != 0;
        Ok(Some(events))
    }

    /// Decodes the next piece of the deflate stream: all of `piece`, at most `MAX_CHUNK * 8`
    /// bytes out (a hostile piece cannot make memory grow without bound).
    fn stream_piece(&mut self, piece: &[u8]) -> Result<Vec<u8>, RecordingError> {
        let limit = MAX_CHUNK * 8;
        let mut out = Vec::with_capacity(piece.len() * 4 + 1024);
        let mut input = piece;
        loop {
            let (in0, out0) = (self.stream.total_in(), self.stream.total_out());
            let status = self
                .stream
                .decompress_vec(input, &mut out, flate2::FlushDecompress::Sync)
                .map_err(|_| RecordingError::Malformed(self.index))?;
            let taken = (self.stream.total_in() - in0) as usize;
            let produced = self.stream.total_out() - out0;
            input = &input[taken..];
            // Done when the input is used up and the decoder had room to say all it had.
            if input.is_empty() && (out.len() < out.capacity() || produced == 0) {
                return Ok(out);
            }
            if status == flate2::Status::StreamEnd || out.len() >= limit || (taken == 0 && produced == 0) {
                // A stream that ends, grows past the bound, or stops moving.
                return Err(RecordingError::Malformed(self.index));
            }
            let more = out.capacity().min(limit - out.len()).max(1024);
            out.reserve(more);
        }
    }

    /// Chunks read so far.
    pub fn chunks(&self) -> u64 {
        self.index
    }

    /// Bytes of the file read so far.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Event, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(e) = self.pending.next() {
                return Some(Ok(e));
            }
            match self.next_chunk() {
                Ok(Some(events)) => self.pending = events.into_iter(),
                Ok(None) => return None,
                Err(e) => {
                    // Stop after the first error.
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub chunks: u64,
    pub events: u64,
    /// Payload bytes (output, input …) in the recording.
    pub payload_bytes: u64,
    pub stored_bytes: u64,
    /// Length of the recording in microseconds (to its last event).
    pub duration_micros: u64,
    /// The final chunk is there. Without it the recording was cut after `chunks` chunks (a
    /// crash, or truncation); what it holds up to there is authentic.
    pub sealed: bool,
    /// Client-to-target payload bytes (input), for a session's byte counts.
    pub bytes_up: u64,
    /// Target-to-client payload bytes (output).
    pub bytes_down: u64,
}

/// Reads the whole recording and checks every chunk, the chain and the final seal.
pub fn verify(path: &Path, id: &str, key: &RecordingKey) -> Result<VerifyReport, RecordingError> {
    let report = verify_allowing_cut(path, id, key)?;
    if !report.sealed {
        return Err(RecordingError::NotSealed(report.chunks));
    }
    Ok(report)
}

/// Like [`verify`], but a recording that ends without its final chunk is reported as cut
/// (`sealed: false`) rather than failed: every chunk up to the cut is checked as usual, so an
/// alteration is still an error, distinct from a cut.
pub fn verify_allowing_cut(path: &Path, id: &str, key: &RecordingKey) -> Result<VerifyReport, RecordingError> {
    let mut reader = Reader::open(path, id, key)?.tolerating_cut();
    let mut report = VerifyReport {
        chunks: 0,
        events: 0,
        payload_bytes: 0,
        stored_bytes: 0,
        duration_micros: 0,
        sealed: false,
        bytes_up: 0,
        bytes_down: 0,
    };
    for e in reader.by_ref() {
        let e = e?;
        report.events += 1;
        report.payload_bytes += e.data.len() as u64;
        match e.kind {
            crate::EventKind::Input => report.bytes_up += e.data.len() as u64,
            crate::EventKind::Output | crate::EventKind::Stderr => report.bytes_down += e.data.len() as u64,
            _ => {}
        }
        report.duration_micros = e.at;
    }
    report.chunks = reader.chunks();
    report.stored_bytes = reader.stored_bytes();
    report.sealed = !reader.was_cut();
    Ok(report)
}
