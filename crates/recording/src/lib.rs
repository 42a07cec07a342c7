//! Session recordings (R-SES-11): every byte and event of a session, with timing, stored
//! encrypted and tamper-evident.
//!
//! File format (version 1):
//!
//! ```text
//! "PCREC" 0x01 | u8 id length | session id
//! chunk*: u32 big-endian length | u8 flags | ciphertext (XChaCha20-Poly1305, tag included)
//! ```
//!
//! Each chunk holds a run of events, compressed when that helps: on its own with fast deflate
//! (flag bit 1, used for large chunks: bulk transfers), or as the next piece of one raw
//! deflate stream that runs through the recording and ends each piece with a sync flush
//! (flag bit 2, used for the small chunks of interactive sessions, whose output repeats from
//! one second to the next: a screen redrawn by `top` compresses against the previous one). A
//! stream piece can only be read after the pieces before it, which the chain below already
//! demands. It is
//! encrypted under the recording's own 256-bit data key (sealed by the vault and stored with
//! the session, never in the file) with nonce = chunk index, and authenticated with associated
//! data = session id ‖ chunk index ‖ flags ‖ the previous chunk's tag. So any changed byte, a
//! removed or reordered chunk, or a chunk from another recording fails to decrypt at that
//! chunk; the last chunk carries the `final` flag (bit 0), so a truncated recording is
//! reported as unsealed.
//!
//! An event is `varint Δt (µs) | u8 kind | varint channel | varint length | data`.

mod asciicast;
mod event;
mod live;
mod reader;
pub mod screen;
mod writer;

pub use asciicast::{export_asciicast, export_events};
pub use event::{Event, EventKind};
pub use live::{LiveFrame, LiveTap, LiveView};
pub use reader::{verify, verify_allowing_cut, Reader, VerifyReport};
pub use writer::{Observer, Recorder, RecorderHandle, RecordingWriter, WriterStats};

/// File magic and format version.
pub const MAGIC: &[u8; 6] = b"PCREC\x01";
/// Flag: the last chunk (the recording was sealed at the session's end).
pub const FLAG_FINAL: u8 = 1;
/// Flag: the chunk's plaintext is deflate-compressed.
pub const FLAG_DEFLATE: u8 = 2;
/// Flag: the chunk's plaintext continues the recording's deflate stream (sync-flushed).
pub const FLAG_STREAM: u8 = 4;
/// The largest chunk accepted when reading (bounds memory on hostile files).
pub const MAX_CHUNK: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recording storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a Portcullis recording (bad header)")]
    BadHeader,
    #[error("the recording belongs to session {found}, not {expected}")]
    WrongSession { expected: String, found: String },
    #[error("chunk {0} was altered, removed, reordered or taken from another recording")]
    Tampered(u64),
    #[error("chunk {0} is malformed")]
    Malformed(u64),
    #[error("the recording is not sealed: it ends after chunk {0} without its final chunk (truncated, or the session is still running)")]
    NotSealed(u64),
    #[error("there is data after the final chunk {0}")]
    TrailingData(u64),
    #[error("the recorder stopped")]
    Closed,
}

/// The 256-bit data key of one recording.
pub type RecordingKey = zeroize::Zeroizing<[u8; 32]>;

/// A fresh random data key.
pub fn new_key() -> RecordingKey {
    use rand::RngCore;
    let mut k = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut k[..]);
    k
}

fn nonce(index: u64) -> chacha20poly1305::XNonce {
    let mut n = [0u8; 24];
    n[16..].copy_from_slice(&index.to_be_bytes());
    n.into()
}

fn aad(id: &str, index: u64, flags: u8, prev_tag: &[u8; 16]) -> Vec<u8> {
    let mut a = Vec::with_capacity(id.len() + 25);
    a.extend_from_slice(id.as_bytes());
    a.extend_from_slice(&index.to_be_bytes());
    a.push(flags);
    a.extend_from_slice(prev_tag);
    a
}

fn header(id: &str) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.push(id.len() as u8);
    h.extend_from_slice(id.as_bytes());
    h
}
