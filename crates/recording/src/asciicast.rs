//! Export to asciicast v2 (what `asciinema play` and `asciinema cat` read): a JSON header line,
//! then one `[seconds, "o"|"i", text]` line per terminal output or input event.

use std::io::{Read, Write};

use crate::{EventKind, Reader, RecordingError};

/// Writes the recording as asciicast v2. `started_unix` is the session's start (seconds).
/// Every chunk is verified as it is read; on the first error the export stops with it.
pub fn export_asciicast<R: Read, W: Write>(
    reader: Reader<R>,
    started_unix: i64,
    out: &mut W,
) -> Result<u64, RecordingError> {
    let mut events = reader.peekable();
    // The terminal size: the first pty request or resize, else 80x24.
    let mut header_done = false;
    let mut lines = 0u64;
    let mut pending = Vec::new();
    let mut size = (80, 24);
    let mut term = "xterm".to_owned();
    while let Some(e) = events.next() {
        let e = e?;
        if !header_done {
            if let Some(s) = e.size() {
                // A client without a terminal asks for 0x0, which no player can draw.
                if s.0 > 0 && s.1 > 0 {
                    size = s;
                }
                if e.kind == EventKind::Pty {
                    term = String::from_utf8_lossy(&e.data[8..]).into_owned();
                }
            }
            pending.push(e);
            if pending.len() < 64 && events.peek().is_some() && !pending.iter().any(|p| p.size().is_some()) {
                continue;
            }
            let header = serde_json::json!({
                "version": 2, "width": size.0, "height": size.1, "timestamp": started_unix,
                "env": { "TERM": term, "SHELL": "/bin/sh" },
            });
            writeln!(out, "{header}")?;
            header_done = true;
            for p in std::mem::take(&mut pending) {
                lines += line(out, &p)?;
            }
            continue;
        }
        lines += line(out, &e)?;
    }
    if !header_done {
        let header = serde_json::json!({ "version": 2, "width": size.0, "height": size.1, "timestamp": started_unix });
        writeln!(out, "{header}")?;
        for p in pending {
            lines += line(out, &p)?;
        }
    }
    Ok(lines)
}

fn line<W: Write>(out: &mut W, e: &crate::Event) -> Result<u64, RecordingError> {
    let code = match e.kind {
        EventKind::Output | EventKind::Stderr => "o",
        EventKind::Input => "i",
        _ => return Ok(0),
    };
    let t = e.at as f64 / 1_000_000.0;
    let text = String::from_utf8_lossy(&e.data);
    writeln!(out, "{}", serde_json::json!([t, code, text]))?;
    Ok(1)
}

/// Writes every event as a JSON line: `{"t": seconds, "kind": "...", "channel": n, "data": text}`
/// (binary payloads as lossy UTF-8). For reviewing what happened beyond the terminal: exec
/// commands, file operations, forwarded connections, exit statuses, the end reason.
pub fn export_events<R: Read, W: Write>(reader: Reader<R>, out: &mut W) -> Result<u64, RecordingError> {
    let mut n = 0;
    for e in reader {
        let e = e?;
        let data = match e.kind {
            EventKind::Resize | EventKind::Pty => {
                let (c, r) = e.size().unwrap_or((0, 0));
                let term = if e.kind == EventKind::Pty {
                    String::from_utf8_lossy(&e.data[8.min(e.data.len())..]).into_owned()
                } else {
                    String::new()
                };
                serde_json::json!({ "cols": c, "rows": r, "term": term })
            }
            EventKind::ExitStatus if e.data.len() == 4 => {
                serde_json::json!(u32::from_be_bytes([e.data[0], e.data[1], e.data[2], e.data[3]]))
            }
            EventKind::Meta | EventKind::File | EventKind::Content => serde_json::from_slice(&e.data)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&e.data).into_owned())),
            _ => serde_json::Value::String(String::from_utf8_lossy(&e.data).into_owned()),
        };
        let line =
            serde_json::json!({ "t": e.at as f64 / 1e6, "kind": e.kind.name(), "channel": e.channel, "data": data });
        writeln!(out, "{line}")?;
        n += 1;
    }
    Ok(n)
}
