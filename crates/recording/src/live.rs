//! Watching a session as it happens: the recorder publishes each event it records to the
//! session's tap, and a watcher gets the recent terminal output (to draw the screen as it is)
//! and then every event after it, with no gap and nothing twice (both are taken under one
//! lock). The tap is fed by the recorder with the events it takes, in the recording's order: a
//! watcher sees nothing the recording does not hold.
//!
//! A watcher that falls behind is told so ([`LiveFrame`] stream lags) and starts again from a
//! fresh view; the session never waits for a watcher.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::{Event, EventKind};

/// How much recent output a new watcher is given to draw the screen from.
const BACKLOG: usize = 256 * 1024;
/// Frames a watcher may fall behind before it must start again.
const QUEUE: usize = 1024;

/// What a watcher receives after its first view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveFrame {
    /// Terminal output (stdout or stderr of any channel), `at` µs since the session started.
    Output { at: u64, data: bytes::Bytes },
    /// The terminal's size changed.
    Resize { at: u64, cols: u32, rows: u32 },
    /// The session ended, with the reason the recording holds.
    End { reason: String },
}

/// The screen as a new watcher first draws it, and the frames after it.
pub struct LiveView {
    pub cols: u32,
    pub rows: u32,
    /// µs since the session started, of the last event recorded.
    pub at: u64,
    /// The recent output, oldest first (at most 256 KiB; cut at a line start when it was
    /// longer, so the screen does not start inside an escape sequence more than it must).
    pub backlog: Vec<u8>,
    /// The session had already ended: nothing more will come.
    pub ended: Option<String>,
    pub frames: broadcast::Receiver<LiveFrame>,
}

struct TapState {
    cols: u32,
    rows: u32,
    at: u64,
    backlog: VecDeque<u8>,
    ended: Option<String>,
    /// An RDP session: its screen, decoded only while someone looks.
    rdp: Option<RdpLive>,
}

/// A watched RDP session's screen. Kept: how to read the stream and the last activation (a
/// few hundred bytes); decoded: only from the first look until [`RDP_LOOK`] after the last.
struct RdpLive {
    setup: Event,
    demand: Option<Event>,
    screen: Option<crate::screen::RdpScreen>,
    last_look: Option<std::time::Instant>,
}

/// How long a watched RDP screen is decoded after the last look at it.
const RDP_LOOK: std::time::Duration = std::time::Duration::from_secs(30);

/// A session's live tap. Cloning shares it.
#[derive(Clone)]
pub struct LiveTap {
    state: Arc<Mutex<TapState>>,
    tx: broadcast::Sender<LiveFrame>,
    /// Counts the times an RDP watcher started looking: the proxy asks the target to redraw.
    refresh: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for LiveTap {
    fn default() -> Self {
        LiveTap::new()
    }
}

impl LiveTap {
    pub fn new() -> LiveTap {
        let state = TapState { cols: 80, rows: 24, at: 0, backlog: VecDeque::new(), ended: None, rdp: None };
        LiveTap {
            state: Arc::new(Mutex::new(state)),
            tx: broadcast::channel(QUEUE).0,
            refresh: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one recorded event (the recorder calls this for each, in order).
    pub fn publish(&self, e: &Event) {
        if self.publish_rdp(e) {
            return;
        }
        let frame = match e.kind {
            EventKind::Output | EventKind::Stderr => LiveFrame::Output { at: e.at, data: e.data.clone() },
            // A client without a terminal asks for 0x0: the screen keeps the size it has.
            EventKind::Pty | EventKind::Resize => match e.size() {
                Some((cols, rows)) if cols > 0 && rows > 0 => LiveFrame::Resize { at: e.at, cols, rows },
                _ => return,
            },
            EventKind::End => LiveFrame::End { reason: String::from_utf8_lossy(&e.data).into_owned() },
            _ => return,
        };
        let mut s = self.lock();
        s.at = s.at.max(e.at);
        match &frame {
            LiveFrame::Output { data, .. } => {
                s.backlog.extend(data.iter());
                if s.backlog.len() > BACKLOG {
                    let excess = s.backlog.len() - BACKLOG;
                    s.backlog.drain(..excess);
                }
            }
            LiveFrame::Resize { cols, rows, .. } => (s.cols, s.rows) = (*cols, *rows),
            LiveFrame::End { reason } => s.ended = Some(reason.clone()),
        }
        // No watcher is not an error.
        let _ = self.tx.send(frame);
    }

    /// RDP sessions: their events feed the screen while it is watched, never the terminal
    /// backlog. `true` when the event was taken here.
    fn publish_rdp(&self, e: &Event) -> bool {
        let mut s = self.lock();
        if e.kind == EventKind::Setup && e.data.windows(5).any(|w| w == b"\"rdp\"") {
            s.rdp = Some(RdpLive { setup: e.clone(), demand: None, screen: None, last_look: None });
            return true;
        }
        let Some(rdp) = s.rdp.as_mut() else { return false };
        match e.kind {
            EventKind::Output => {
                if e.data.first() == Some(&0x03) && crate::screen::demand_active(&e.data).is_some() {
                    rdp.demand = Some(e.clone());
                }
                if rdp.last_look.is_some_and(|t| t.elapsed() > RDP_LOOK) {
                    // Nobody looked for a while: the screen is dropped (its memory with it).
                    rdp.screen = None;
                    rdp.last_look = None;
                }
                if let Some(screen) = rdp.screen.as_mut() {
                    screen.feed(e);
                }
                s.at = s.at.max(e.at);
                true
            }
            EventKind::End => {
                drop(s);
                false
            }
            _ => true,
        }
    }

    /// An RDP session's screen now (PNG), for a watcher; `None` for other sessions. The first
    /// look starts decoding and asks the proxy for a redraw (see [`LiveTap::refreshes`]), so
    /// the screen is whole a moment later.
    pub fn rdp_screen(&self) -> Option<Option<Vec<u8>>> {
        let mut s = self.lock();
        let rdp = s.rdp.as_mut()?;
        if rdp.screen.is_none() {
            let mut screen = crate::screen::RdpScreen::new();
            screen.feed(&rdp.setup);
            if let Some(d) = &rdp.demand {
                screen.feed(d);
            }
            rdp.screen = Some(screen);
            self.refresh.send_modify(|n| *n += 1);
        }
        rdp.last_look = Some(std::time::Instant::now());
        Some(rdp.screen.as_ref().and_then(|s| s.png()))
    }

    /// Changes each time an RDP watcher starts looking: the proxy then asks the target to
    /// redraw the whole screen.
    pub fn refreshes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.refresh.subscribe()
    }

    /// The recorder stopped without an `End` event (storage failed): watchers are told.
    pub fn close(&self, reason: &str) {
        let mut s = self.lock();
        if s.ended.is_none() {
            s.ended = Some(reason.to_owned());
            let _ = self.tx.send(LiveFrame::End { reason: reason.to_owned() });
        }
    }

    /// A new watcher's first view and its frames from then on.
    pub fn watch(&self) -> LiveView {
        let s = self.lock();
        let frames = self.tx.subscribe();
        let mut backlog: Vec<u8> = s.backlog.iter().copied().collect();
        if backlog.len() >= BACKLOG {
            if let Some(nl) = backlog.iter().position(|b| *b == b'\n') {
                backlog.drain(..=nl);
            }
        }
        LiveView { cols: s.cols, rows: s.rows, at: s.at, backlog, ended: s.ended.clone(), frames }
    }

    /// How many are watching.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_sees_the_screen_so_far_then_every_event_after_it_once() {
        let tap = LiveTap::new();
        tap.publish(&Event::pty(1, 0, 120, 40, "xterm"));
        tap.publish(&Event::new(2, EventKind::Output, 0, &b"before\r\n"[..]));
        tap.publish(&Event::new(3, EventKind::Input, 0, &b"typed secret"[..]));
        let mut view = tap.watch();
        assert_eq!((view.cols, view.rows, view.at), (120, 40, 2));
        assert_eq!(view.backlog, b"before\r\n");
        tap.publish(&Event::new(4, EventKind::Stderr, 0, &b"after"[..]));
        tap.publish(&Event::resize(5, 0, 0, 0));
        tap.publish(&Event::resize(5, 0, 100, 30));
        tap.publish(&Event::new(6, EventKind::End, 0, &b"the request was revoked"[..]));
        assert_eq!(
            view.frames.try_recv().unwrap(),
            LiveFrame::Output { at: 4, data: bytes::Bytes::from_static(b"after") }
        );
        assert_eq!(view.frames.try_recv().unwrap(), LiveFrame::Resize { at: 5, cols: 100, rows: 30 });
        assert_eq!(view.frames.try_recv().unwrap(), LiveFrame::End { reason: "the request was revoked".into() });
        assert!(view.frames.try_recv().is_err(), "nothing twice");
        let late = tap.watch();
        assert_eq!(late.ended.as_deref(), Some("the request was revoked"));
        assert_eq!(late.backlog, b"before\r\nafter");
    }

    #[test]
    fn the_backlog_is_bounded_and_starts_at_a_line() {
        let tap = LiveTap::new();
        let line = vec![b'x'; 1023].into_iter().chain([b'\n']).collect::<Vec<u8>>();
        for i in 0..400u64 {
            tap.publish(&Event::new(i, EventKind::Output, 0, line.clone()));
        }
        tap.publish(&Event::new(401, EventKind::Output, 0, &b"partial"[..]));
        let view = tap.watch();
        assert!(view.backlog.len() <= BACKLOG);
        assert!(view.backlog.len() > BACKLOG - 1024 - 8);
        assert_eq!(view.backlog[0], b'x');
        assert!(view.backlog.ends_with(b"\npartial"));
    }

    #[test]
    fn an_rdp_screen_is_decoded_only_once_looked_at_and_asks_for_a_redraw() {
        let tap = LiveTap::new();
        assert!(tap.rdp_screen().is_none(), "not an RDP session");
        tap.publish(&Event::new(1, EventKind::Setup, 0, &br#"{"rdp":{"io_channel":1003}}"#[..]));
        tap.publish(&Event::new(2, EventKind::Output, 0, &b"\x03\x00\x00\x07\x02\xf0\x80"[..]));
        let view = tap.watch();
        assert!(view.backlog.is_empty(), "RDP PDUs are not terminal output");
        let refreshes = tap.refreshes();
        assert_eq!(*refreshes.borrow(), 0);
        assert_eq!(tap.rdp_screen(), Some(None), "nothing activated yet: no screen");
        assert_eq!(*refreshes.borrow(), 1, "the first look asks for a redraw");
        tap.rdp_screen();
        assert_eq!(*refreshes.borrow(), 1, "later looks do not");
    }

    #[test]
    fn a_closed_tap_ends_its_watchers_once() {
        let tap = LiveTap::new();
        let mut view = tap.watch();
        tap.close("recording storage failed");
        tap.close("again");
        assert_eq!(view.frames.try_recv().unwrap(), LiveFrame::End { reason: "recording storage failed".into() });
        assert!(view.frames.try_recv().is_err());
    }
}
