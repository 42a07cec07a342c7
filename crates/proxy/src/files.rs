//! File operations seen in SFTP and SCP channels, for the recording (R-SES-11): which paths
//! were opened for reading or writing, how many bytes moved, removes, renames, directories.
//!
//! The parsers read copies of the relayed bytes; they never change what is relayed. They are
//! bounded: an SFTP packet longer than [`MAX_PACKET`] (or malformed input) stops the tracking
//! of that channel (noted once) instead of buffering without limit.

use std::collections::HashMap;

use serde_json::{json, Value};

/// Largest SFTP packet followed (OpenSSH's sftp-server allows 256 KiB).
pub(crate) const MAX_PACKET: usize = 256 * 1024 + 1024;

#[derive(Default)]
struct Buf {
    bytes: Vec<u8>,
}

impl Buf {
    /// Appends `data` and returns the complete packets (type and body, without the length).
    fn packets(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, ()> {
        self.bytes.extend_from_slice(data);
        let mut out = Vec::new();
        let mut pos = 0;
        while self.bytes.len() - pos >= 4 {
            let len = u32::from_be_bytes(self.bytes[pos..pos + 4].try_into().map_err(|_| ())?) as usize;
            if len == 0 || len > MAX_PACKET {
                return Err(());
            }
            if self.bytes.len() - pos - 4 < len {
                break;
            }
            out.push(self.bytes[pos + 4..pos + 4 + len].to_vec());
            pos += 4 + len;
        }
        self.bytes.drain(..pos);
        if self.bytes.len() > MAX_PACKET + 4 {
            return Err(());
        }
        Ok(out)
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (v, rest) = self.b.split_first()?;
        self.b = rest;
        Some(*v)
    }
    fn u32(&mut self) -> Option<u32> {
        let v = self.b.get(..4)?;
        self.b = &self.b[4..];
        Some(u32::from_be_bytes(v.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        let v = self.b.get(..8)?;
        self.b = &self.b[8..];
        Some(u64::from_be_bytes(v.try_into().ok()?))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        let v = self.b.get(..len)?;
        self.b = &self.b[len..];
        Some(v)
    }
}

struct OpenFile {
    path: String,
    write: bool,
    read_bytes: u64,
    written_bytes: u64,
}

/// Follows one SFTP channel.
#[derive(Default)]
pub(crate) struct SftpTracker {
    up: Buf,
    down: Buf,
    /// Request id → (path, opened for writing, is a directory).
    opening: HashMap<u32, (String, bool)>,
    handles: HashMap<Vec<u8>, OpenFile>,
    /// Request id of a READ → its handle.
    reading: HashMap<u32, Vec<u8>>,
    stopped: bool,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(1024).collect()
}

impl SftpTracker {
    fn stop(&mut self) -> Vec<Value> {
        if self.stopped {
            return vec![];
        }
        self.stopped = true;
        self.up = Buf::default();
        self.down = Buf::default();
        vec![
            json!({ "protocol": "sftp", "op": "untracked", "note": "malformed or oversized SFTP packet; file operations are no longer itemized (the bytes are still recorded)" }),
        ]
    }

    /// Bytes from the client.
    pub(crate) fn client(&mut self, data: &[u8]) -> Vec<Value> {
        if self.stopped {
            return vec![];
        }
        let Ok(packets) = self.up.packets(data) else { return self.stop() };
        let mut ops = Vec::new();
        for p in packets {
            let mut r = Reader { b: &p };
            let Some(kind) = r.u8() else { continue };
            if kind == 1 {
                continue; // INIT
            }
            let Some(id) = r.u32() else { continue };
            match kind {
                3 => {
                    if let (Some(path), Some(flags)) = (r.string(), r.u32()) {
                        self.opening.insert(id, (text(path), flags & 0x02 != 0));
                        if self.opening.len() > 10_000 {
                            return self.stop();
                        }
                    }
                }
                4 => {
                    if let Some(h) = r.string() {
                        if let Some(f) = self.handles.remove(h) {
                            ops.push(json!({
                                "protocol": "sftp", "op": "close", "path": f.path,
                                "direction": if f.write { "upload" } else { "download" },
                                "bytes": if f.write { f.written_bytes } else { f.read_bytes },
                            }));
                        }
                    }
                }
                6 => {
                    if let (Some(h), Some(_offset), Some(d)) = (r.string(), r.u64(), r.string()) {
                        if let Some(f) = self.handles.get_mut(h) {
                            f.written_bytes += d.len() as u64;
                        }
                    }
                }
                5 => {
                    // READ: bytes are counted from the DATA answers.
                    if let Some(h) = r.string() {
                        self.reading.insert(id, h.to_vec());
                        if self.reading.len() > 10_000 {
                            return self.stop();
                        }
                    }
                }
                13..=15 => {
                    if let Some(path) = r.string() {
                        let op = match kind {
                            13 => "remove",
                            14 => "mkdir",
                            _ => "rmdir",
                        };
                        ops.push(json!({ "protocol": "sftp", "op": op, "path": text(path) }));
                    }
                }
                18 => {
                    if let (Some(from), Some(to)) = (r.string(), r.string()) {
                        ops.push(json!({ "protocol": "sftp", "op": "rename", "path": text(from), "to": text(to) }));
                    }
                }
                _ => {}
            }
        }
        ops
    }

    /// Bytes from the target.
    pub(crate) fn server(&mut self, data: &[u8]) -> Vec<Value> {
        if self.stopped {
            return vec![];
        }
        let Ok(packets) = self.down.packets(data) else { return self.stop() };
        let mut ops = Vec::new();
        for p in packets {
            let mut r = Reader { b: &p };
            let (Some(kind), Some(id)) = (r.u8(), r.u32()) else { continue };
            match kind {
                102 => {
                    if let (Some((path, write)), Some(h)) = (self.opening.remove(&id), r.string()) {
                        ops.push(json!({ "protocol": "sftp", "op": "open", "path": path, "mode": if write { "write" } else { "read" } }));
                        self.handles.insert(h.to_vec(), OpenFile { path, write, read_bytes: 0, written_bytes: 0 });
                    }
                }
                103 => {
                    if let (Some(handle), Some(d)) = (self.reading.remove(&id), r.string()) {
                        if let Some(f) = self.handles.get_mut(&handle) {
                            f.read_bytes += d.len() as u64;
                        }
                    }
                }
                101 => {
                    self.opening.remove(&id);
                    self.reading.remove(&id);
                }
                _ => {}
            }
        }
        ops
    }
}

/// What a channel's file operations are followed with.
pub(crate) enum FileTracker {
    Sftp(SftpTracker),
    Scp(ScpTracker),
}

impl FileTracker {
    pub(crate) fn client(&mut self, data: &[u8]) -> Vec<Value> {
        match self {
            FileTracker::Sftp(t) => t.client(data),
            FileTracker::Scp(t) => t.client(data),
        }
    }

    pub(crate) fn server(&mut self, data: &[u8]) -> Vec<Value> {
        match self {
            FileTracker::Sftp(t) => t.server(data),
            FileTracker::Scp(t) => t.server(data),
        }
    }
}

/// A channel's tracker, shared by the client side and the relay (set by the channel's
/// subsystem or exec request).
pub(crate) type SharedTracker = std::sync::Arc<std::sync::Mutex<Option<FileTracker>>>;

/// Follows a legacy SCP channel (`scp -t` uploads, `scp -f` downloads): its `C` lines name
/// each file and its size.
pub(crate) struct ScpTracker {
    /// true: the client sends files (`scp -t`).
    upload: bool,
    path: String,
}

impl ScpTracker {
    /// For an exec command that runs scp in sink or source mode.
    pub(crate) fn for_command(command: &[u8]) -> Option<ScpTracker> {
        let cmd = String::from_utf8_lossy(command);
        let mut words = cmd.split_whitespace();
        if words.next()? != "scp" {
            return None;
        }
        let mut upload = None;
        let mut path = String::new();
        for w in words {
            if w.starts_with('-') && !w.starts_with("--") {
                if w.contains('t') {
                    upload = Some(true);
                } else if w.contains('f') {
                    upload = Some(false);
                }
            } else {
                path = w.to_owned();
            }
        }
        Some(ScpTracker { upload: upload?, path })
    }

    fn lines(&self, data: &[u8]) -> Vec<Value> {
        // A control line arrives in a packet of its own: "C0644 1234 name\n".
        if data.first() != Some(&b'C') || data.len() > 4096 || !data.ends_with(b"\n") {
            return vec![];
        }
        let line = String::from_utf8_lossy(&data[1..data.len() - 1]).into_owned();
        let mut parts = line.splitn(3, ' ');
        let (Some(_mode), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next()) else { return vec![] };
        let Ok(size) = size.parse::<u64>() else { return vec![] };
        vec![json!({
            "protocol": "scp", "op": "file", "path": format!("{}/{}", self.path.trim_end_matches('/'), name),
            "direction": if self.upload { "upload" } else { "download" }, "bytes": size,
        })]
    }

    pub(crate) fn client(&self, data: &[u8]) -> Vec<Value> {
        if self.upload {
            self.lines(data)
        } else {
            vec![]
        }
    }

    pub(crate) fn server(&self, data: &[u8]) -> Vec<Value> {
        if self.upload {
            vec![]
        } else {
            self.lines(data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, id: u32, fields: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![kind];
        body.extend_from_slice(&id.to_be_bytes());
        for f in fields {
            body.extend_from_slice(f);
        }
        let mut p = (body.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&body);
        p
    }

    fn s(v: &[u8]) -> Vec<u8> {
        let mut o = (v.len() as u32).to_be_bytes().to_vec();
        o.extend_from_slice(v);
        o
    }

    #[test]
    fn an_upload_is_itemized_even_when_split_across_packets() {
        let mut t = SftpTracker::default();
        let open = packet(3, 7, &[&s(b"/tmp/x"), &0x1au32.to_be_bytes(), &0u32.to_be_bytes()]);
        let (a, b) = open.split_at(5);
        assert!(t.client(a).is_empty());
        assert!(t.client(b).is_empty());
        let ops = t.server(&packet(102, 7, &[&s(b"H1")]));
        assert_eq!(ops[0]["op"], "open");
        t.client(&packet(6, 8, &[&s(b"H1"), &0u64.to_be_bytes(), &s(&[1u8; 100])]));
        t.client(&packet(6, 9, &[&s(b"H1"), &100u64.to_be_bytes(), &s(&[1u8; 50])]));
        let ops = t.client(&packet(4, 10, &[&s(b"H1")]));
        assert_eq!(
            (ops[0]["path"].as_str(), ops[0]["bytes"].as_u64(), ops[0]["direction"].as_str()),
            (Some("/tmp/x"), Some(150), Some("upload"))
        );
        let ops = t.client(&packet(18, 11, &[&s(b"a"), &s(b"b")]));
        assert_eq!(ops[0]["op"], "rename");
    }

    #[test]
    fn oversized_or_garbage_input_stops_tracking_without_panicking() {
        let mut t = SftpTracker::default();
        let ops = t.client(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert_eq!(ops[0]["op"], "untracked");
        assert!(t.client(&[0; 100]).is_empty());
        for seed in 0..200u32 {
            let mut t = SftpTracker::default();
            let junk: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(seed).wrapping_add(seed >> 3)) as u8).collect();
            let _ = t.client(&junk);
            let _ = t.server(&junk);
        }
    }

    #[test]
    fn scp_control_lines() {
        let t = ScpTracker::for_command(b"scp -t /home/u").unwrap();
        let ops = t.client(b"C0644 1234 file.bin\n");
        assert_eq!((ops[0]["path"].as_str(), ops[0]["bytes"].as_u64()), (Some("/home/u/file.bin"), Some(1234)));
        assert!(ScpTracker::for_command(b"ls -l").is_none());
        assert!(!ScpTracker::for_command(b"scp -f x").unwrap().upload);
    }
}
