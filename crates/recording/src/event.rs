//! Recorded events and their binary encoding.

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EventKind {
    /// JSON: who, what, where (the first event).
    Meta = 0,
    /// Bytes from the target to the client (stdout).
    Output = 1,
    /// Bytes from the target's stderr.
    Stderr = 2,
    /// Bytes from the client to the target (keystrokes, uploads).
    Input = 3,
    /// Window size: u32 cols, u32 rows (big-endian).
    Resize = 4,
    /// An exec request's command line.
    Exec = 5,
    /// A subsystem request (e.g. `sftp`).
    Subsystem = 6,
    /// A pty request: u32 cols, u32 rows, then the TERM name.
    Pty = 7,
    /// A channel opened: its type (`session`, `direct-tcpip host:port from host:port`).
    ChannelOpen = 8,
    /// A channel closed.
    ChannelClose = 9,
    /// The session ended: the reason.
    End = 10,
    /// A shell request.
    Shell = 11,
    /// Exit status (u32 big-endian).
    ExitStatus = 12,
    /// An environment variable `NAME=value`.
    Env = 13,
    /// A signal name.
    Signal = 14,
    /// A file operation (SCP/SFTP): JSON with path, size, direction.
    File = 15,
    /// A content rule matched: JSON with rule, on, action, text.
    Content = 16,
    /// How the protocol's stream is to be read back (RDP: the I/O and user channels, the
    /// bulk compression, the static channels): JSON.
    Setup = 17,
}

impl EventKind {
    pub fn from_u8(v: u8) -> Option<EventKind> {
        use EventKind::*;
        Some(match v {
            0 => Meta,
            1 => Output,
            2 => Stderr,
            3 => Input,
            4 => Resize,
            5 => Exec,
            6 => Subsystem,
            7 => Pty,
            8 => ChannelOpen,
            9 => ChannelClose,
            10 => End,
            11 => Shell,
            12 => ExitStatus,
            13 => Env,
            14 => Signal,
            15 => File,
            16 => Content,
            17 => Setup,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use EventKind::*;
        match self {
            Meta => "meta",
            Output => "output",
            Stderr => "stderr",
            Input => "input",
            Resize => "resize",
            Exec => "exec",
            Subsystem => "subsystem",
            Pty => "pty",
            ChannelOpen => "channel_open",
            ChannelClose => "channel_close",
            End => "end",
            Shell => "shell",
            ExitStatus => "exit_status",
            Env => "env",
            Signal => "signal",
            File => "file",
            Content => "content",
            Setup => "setup",
        }
    }
}

/// One event. `at` is microseconds since the recording started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: u64,
    pub kind: EventKind,
    pub channel: u32,
    /// Shared, not copied: the relay hands the same buffer to the recorder and the other leg.
    pub data: bytes::Bytes,
}

impl Event {
    pub fn new(at: u64, kind: EventKind, channel: u32, data: impl Into<bytes::Bytes>) -> Event {
        Event { at, kind, channel, data: data.into() }
    }

    pub fn resize(at: u64, channel: u32, cols: u32, rows: u32) -> Event {
        let mut d = cols.to_be_bytes().to_vec();
        d.extend_from_slice(&rows.to_be_bytes());
        Event::new(at, EventKind::Resize, channel, d)
    }

    pub fn pty(at: u64, channel: u32, cols: u32, rows: u32, term: &str) -> Event {
        let mut d = cols.to_be_bytes().to_vec();
        d.extend_from_slice(&rows.to_be_bytes());
        d.extend_from_slice(term.as_bytes());
        Event::new(at, EventKind::Pty, channel, d)
    }

    /// (cols, rows) of a resize or pty event.
    pub fn size(&self) -> Option<(u32, u32)> {
        if !matches!(self.kind, EventKind::Resize | EventKind::Pty) || self.data.len() < 8 {
            return None;
        }
        let c = u32::from_be_bytes(self.data[0..4].try_into().ok()?);
        let r = u32::from_be_bytes(self.data[4..8].try_into().ok()?);
        Some((c, r))
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Appends `e` (time relative to `prev_at`).
pub(crate) fn encode(out: &mut Vec<u8>, e: &Event, prev_at: u64) {
    put_varint(out, e.at.saturating_sub(prev_at));
    out.push(e.kind as u8);
    put_varint(out, u64::from(e.channel));
    put_varint(out, e.data.len() as u64);
    out.extend_from_slice(&e.data);
}

/// Decodes every event of a chunk's plaintext (events share its buffer); `None` if malformed.
pub(crate) fn decode_all(buf: bytes::Bytes, mut prev_at: u64) -> Option<Vec<Event>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let dt = get_varint(&buf, &mut pos)?;
        let kind = EventKind::from_u8(*buf.get(pos)?)?;
        pos += 1;
        let channel = u32::try_from(get_varint(&buf, &mut pos)?).ok()?;
        let len = usize::try_from(get_varint(&buf, &mut pos)?).ok()?;
        let end = pos.checked_add(len)?;
        if end > buf.len() {
            return None;
        }
        let data = buf.slice(pos..end);
        pos = end;
        prev_at = prev_at.checked_add(dt)?;
        out.push(Event { at: prev_at, kind, channel, data });
    }
    Some(out)
}
