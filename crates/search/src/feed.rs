//! What a session puts in the index: its events turned into searchable entries, the same way
//! live (fed by the recorder) and afterwards (read back from the recording).
//!
//! - `command`: each command line typed at a shell, as the content rules reconstruct it from
//!   the keystrokes (and the echo where keystrokes cannot tell: Tab completion, history), and
//!   each exec request's command;
//! - `output`: the text shown (escape sequences and control characters removed), gathered per
//!   channel into one entry per second (at most [`WINDOW`] bytes), so a hit seeks to the second
//!   it appeared;
//! - `file`: SCP/SFTP transfers (direction, path, bytes), whose data is not indexed;
//! - `channel`: channels opened (shell, exec, subsystem, forwarding);
//! - `content`: content-rule matches;
//! - `session`: the connection's facts (who, from where, to what account and asset, which
//!   policies) and how it ended.

use std::collections::HashMap;

use portcullis_core::content::{LineEditor, OutputLines};
use portcullis_recording::{Event, EventKind};

/// Output text gathered into one entry at most (bytes).
pub const WINDOW: usize = 8 * 1024;
/// An output entry covers at most this long (µs).
const WINDOW_MICROS: u64 = 1_000_000;

/// What kind of thing an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Session,
    Command,
    Output,
    File,
    Channel,
    Content,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Session, Kind::Command, Kind::Output, Kind::File, Kind::Channel, Kind::Content];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Command => "command",
            Kind::Output => "output",
            Kind::File => "file",
            Kind::Channel => "channel",
            Kind::Content => "content",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One searchable entry: its kind, when in the recording (µs from its start), its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub at: u64,
    pub text: String,
}

#[derive(Default)]
struct Channel {
    /// Shell channels reconstruct typed lines.
    shell: Option<LineEditor>,
    /// SCP/SFTP: the data is a file's, not text.
    transfer: bool,
    lines: OutputLines,
    window: String,
    window_at: u64,
}

/// Turns one session's events into entries.
pub struct Feed {
    /// Terminal text is indexed (not RDP, whose streams are pictures).
    text: bool,
    channels: HashMap<u32, Channel>,
    facts: String,
}

impl Feed {
    /// `facts`: the session's facts as text (the `session` entry).
    pub fn new(facts: String, protocol: &str) -> Feed {
        Feed { text: protocol != "rdp", channels: HashMap::new(), facts }
    }

    /// The entries `e` completes, appended to `out`.
    pub fn event(&mut self, e: &Event, out: &mut Vec<Entry>) {
        let text = self.text;
        match e.kind {
            EventKind::Meta => {
                let mut t = self.facts.clone();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e.data) {
                    for k in ["connection_policy", "access_policy"] {
                        if let Some(s) = v[k].as_str() {
                            t.push_str(&format!(" {}: {s}", k.replace('_', " ")));
                        }
                    }
                }
                out.push(Entry { kind: Kind::Session, at: e.at, text: t });
            }
            EventKind::Output | EventKind::Stderr if text => {
                let ch = self.channels.entry(e.channel).or_default();
                if ch.transfer {
                    return;
                }
                if let Some(le) = &mut ch.shell {
                    le.output(&e.data);
                }
                if !ch.window.is_empty() && e.at.saturating_sub(ch.window_at) >= WINDOW_MICROS {
                    flush(ch, out);
                }
                let at = e.at;
                let Channel { lines, window, window_at, .. } = ch;
                let mut full = false;
                lines.feed(&e.data, |line| {
                    if window.is_empty() {
                        *window_at = at;
                    }
                    if window.len() + line.len() < WINDOW * 2 {
                        window.push_str(line);
                        window.push('\n');
                    }
                    full |= window.len() >= WINDOW;
                });
                if full {
                    flush(ch, out);
                }
            }
            EventKind::Input if text => {
                let ch = self.channels.entry(e.channel).or_default();
                if let Some(le) = &mut ch.shell {
                    for line in le.input(&e.data) {
                        out.push(Entry { kind: Kind::Command, at: e.at, text: line });
                    }
                }
            }
            EventKind::Shell => {
                self.channels.entry(e.channel).or_default().shell = Some(LineEditor::default());
                out.push(Entry { kind: Kind::Channel, at: e.at, text: "shell".into() });
            }
            EventKind::Exec => {
                let cmd = String::from_utf8_lossy(&e.data).into_owned();
                let ch = self.channels.entry(e.channel).or_default();
                let first = cmd.split_whitespace().next().unwrap_or("");
                ch.transfer = first == "scp" || first.ends_with("/scp") || first.ends_with("sftp-server");
                out.push(Entry { kind: Kind::Command, at: e.at, text: cmd });
            }
            EventKind::Subsystem => {
                let name = String::from_utf8_lossy(&e.data).into_owned();
                self.channels.entry(e.channel).or_default().transfer = true;
                out.push(Entry { kind: Kind::Channel, at: e.at, text: format!("subsystem {name}") });
            }
            EventKind::ChannelOpen => {
                let what = String::from_utf8_lossy(&e.data);
                if what != "session" {
                    out.push(Entry { kind: Kind::Channel, at: e.at, text: format!("channel {what}") });
                }
            }
            EventKind::ChannelClose => {
                if let Some(mut ch) = self.channels.remove(&e.channel) {
                    flush(&mut ch, out);
                }
            }
            EventKind::File => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e.data) {
                    let (dir, path, bytes) = (v["direction"].as_str(), v["path"].as_str(), v["bytes"].as_u64());
                    if let (Some(dir), Some(path)) = (dir, path) {
                        let proto = v["protocol"].as_str().unwrap_or("file");
                        let size = bytes.map(|b| format!(" ({b} bytes)")).unwrap_or_default();
                        out.push(Entry { kind: Kind::File, at: e.at, text: format!("{proto} {dir} {path}{size}") });
                    }
                }
            }
            EventKind::Content => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e.data) {
                    let t = format!(
                        "content rule {} ({} on {}): {}",
                        v["rule"].as_str().unwrap_or("?"),
                        v["action"].as_str().unwrap_or("?"),
                        v["on"].as_str().unwrap_or("?"),
                        v["text"].as_str().unwrap_or("")
                    );
                    out.push(Entry { kind: Kind::Content, at: e.at, text: t });
                }
            }
            EventKind::End => {
                self.finish(out);
                let reason = String::from_utf8_lossy(&e.data);
                out.push(Entry { kind: Kind::Session, at: e.at, text: format!("session ended: {reason}") });
            }
            _ => {}
        }
    }

    /// Output gathered but not yet emitted (the session ended).
    pub fn finish(&mut self, out: &mut Vec<Entry>) {
        let mut ids: Vec<u32> = self.channels.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(ch) = self.channels.get_mut(&id) {
                flush(ch, out);
            }
        }
    }
}

fn flush(ch: &mut Channel, out: &mut Vec<Entry>) {
    if ch.window.trim().is_empty() {
        ch.window.clear();
        return;
    }
    out.push(Entry { kind: Kind::Output, at: ch.window_at, text: std::mem::take(&mut ch.window) });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: u64, kind: EventKind, ch: u32, data: &[u8]) -> Event {
        Event::new(at, kind, ch, data.to_vec())
    }

    #[test]
    fn typed_lines_output_seconds_and_transfers() {
        let mut f = Feed::new("user alice".into(), "ssh");
        let mut out = Vec::new();
        for e in [
            ev(0, EventKind::Meta, 0, br#"{"connection_policy":"prod"}"#),
            ev(10, EventKind::Shell, 1, b""),
            ev(2_000_000, EventKind::Input, 1, b"systemctl stpo\x7f\x7fop nginx\r"),
            ev(2_100_000, EventKind::Output, 1, b"\x1b[1mStopped\x1b[0m nginx.service\r\n"),
            ev(4_500_000, EventKind::Output, 1, b"later line\r\n"),
            ev(5_000_000, EventKind::Exec, 2, b"scp -t /tmp"),
            ev(5_100_000, EventKind::Output, 2, b"\x00binary secret data\n"),
            ev(
                5_200_000,
                EventKind::File,
                2,
                br#"{"protocol":"scp","direction":"upload","path":"/tmp/x.tar","bytes":12}"#,
            ),
            ev(6_000_000, EventKind::End, 0, b"the client closed the connection"),
        ] {
            f.event(&e, &mut out);
        }
        let find = |k: Kind| out.iter().filter(|e| e.kind == k).collect::<Vec<_>>();
        assert_eq!(find(Kind::Command)[0].text, "systemctl stop nginx");
        assert_eq!(find(Kind::Command)[0].at, 2_000_000);
        assert_eq!(find(Kind::Command)[1].text, "scp -t /tmp");
        let outputs = find(Kind::Output);
        assert_eq!(outputs.len(), 2, "{outputs:?}");
        assert_eq!((outputs[0].at, outputs[0].text.as_str()), (2_100_000, "Stopped nginx.service\n"));
        assert_eq!(outputs[1].at, 4_500_000);
        assert!(!out.iter().any(|e| e.text.contains("binary secret")));
        assert_eq!(find(Kind::File)[0].text, "scp upload /tmp/x.tar (12 bytes)");
        assert!(find(Kind::Session)[0].text.contains("connection policy: prod"));
        assert!(find(Kind::Session)[1].text.contains("the client closed"));
    }

    #[test]
    fn rdp_streams_are_not_text() {
        let mut f = Feed::new("user bob".into(), "rdp");
        let mut out = Vec::new();
        f.event(&ev(0, EventKind::Output, 0, b"looks like text\n"), &mut out);
        f.finish(&mut out);
        assert!(out.is_empty());
    }
}
