//! A started Telnet session's relay: the client's keystrokes to the target and the target's
//! output back, each direction recorded, watched by the content rules and counted for
//! idleness, until either side leaves or the session is ended (revocation, expiry, idleness,
//! termination, content rule, recording failure), when the client is told why.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use portcullis_app::App as AppState;
use portcullis_recording::{Event, EventKind, Recorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::ClientLeg;
use super::codec::{self, IAC};
use super::target::TargetLeg;
use crate::content::{SharedLines, Watch};
use crate::serve::Shared;

/// The one channel of a Telnet session in its recording.
pub(super) const CHANNEL: u32 = 0;

/// Why the relay stopped, as far as it knows.
const CLIENT_LEFT: &str = "the client disconnected";
const TARGET_LEFT: &str = "the target closed the connection";

pub(super) struct Relay {
    pub state: AppState,
    pub shared: Arc<Shared>,
    pub recorder: Recorder,
    pub watch: Option<Arc<Watch>>,
    pub lines: SharedLines,
    /// A content rule is ending the session: nothing more is passed either way.
    pub muted: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    /// Runs the session until it ends; the client is told why when the proxy ended it.
    pub async fn run(self, mut client: ClientLeg, target: TargetLeg) {
        let (resize_tx, resize_rx) = tokio::sync::mpsc::channel(8);
        let client_write = client.write.clone();
        let target_write = target.write.clone();
        let down = tokio::spawn(self.clone_parts().downlink(target, client_write.clone(), resize_rx));
        // Typed ahead during the login dialogue: the target gets it first.
        let ahead = std::mem::take(&mut client.pending);
        if !ahead.is_empty() && !self.up(&ahead, &target_write).await {
            self.shared.stop();
        }
        self.uplink(&mut client, &target_write, &resize_tx).await;
        self.shared.stop();
        let _ = down.await;
        let reason = self.shared.end_reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut w = client_write.lock().await;
        if let Some(reason) = reason.filter(|r| r != CLIENT_LEFT && r != TARGET_LEFT) {
            let message = format!("\r\nPortcullis: session ended: {reason}\r\n");
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), w.write_all(message.as_bytes())).await;
        }
        let _ = w.shutdown().await;
        let _ = target_write.lock().await.shutdown().await;
    }

    fn clone_parts(&self) -> Relay {
        Relay {
            state: self.state.clone(),
            shared: self.shared.clone(),
            recorder: self.recorder.clone(),
            watch: self.watch.clone(),
            lines: self.lines.clone(),
            muted: self.muted.clone(),
        }
    }

    fn touch(&self) {
        self.shared.last_activity.store(self.state.now(), Ordering::Relaxed);
    }

    /// Records the event; a recording that fails ends the session.
    async fn record(&self, e: Event) -> bool {
        if self.recorder.event(e).await.is_err() {
            self.shared.set_end_reason("recording storage failed");
            self.shared.stop();
            return false;
        }
        true
    }

    /// Sends bytes to one side, giving up when the session is being ended.
    async fn send(&self, to: &tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>, bytes: &[u8]) -> bool {
        let mut stop = self.shared.stop.subscribe();
        tokio::select! {
            r = async { to.lock().await.write_all(bytes).await } => r.is_ok(),
            _ = stop.wait_for(|v| *v) => false,
        }
    }

    /// The client's keystrokes: recorded, checked by the content rules, passed on; `false`
    /// when the session cannot go on.
    async fn up(&self, data: &[u8], target: &tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>) -> bool {
        if self.muted.load(Ordering::Relaxed) {
            return true;
        }
        self.shared.bytes_up.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.touch();
        let bytes = bytes::Bytes::copy_from_slice(data);
        if !self.record(Event::new(self.recorder.now(), EventKind::Input, CHANNEL, bytes)).await {
            return false;
        }
        if let Some(w) = &self.watch {
            // A Telnet Enter is CR LF or CR NUL: one line end for the line editor.
            let typed = enter_as_cr(data);
            if let Some(hit) = w.typed(&self.lines, &typed) {
                if w.act(&self.state, &self.recorder, CHANNEL, &hit).await {
                    // The line that matched never reaches the target; the session ends (the
                    // supervisor says why).
                    self.muted.store(true, Ordering::Relaxed);
                    return true;
                }
            }
        }
        self.send(target, &codec::escape(data)).await
    }

    async fn uplink(
        &self,
        client: &mut ClientLeg,
        target: &tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
        resize: &tokio::sync::mpsc::Sender<(u16, u16)>,
    ) {
        let mut stop = self.shared.stop.subscribe();
        loop {
            let read = tokio::select! {
                r = client.read.read(&mut client.buf) => r,
                _ = stop.wait_for(|v| *v) => return,
            };
            let n = match read {
                Ok(0) | Err(_) => {
                    self.shared.set_end_reason(CLIENT_LEFT);
                    return;
                }
                Ok(n) => n,
            };
            let Ok(input) = client.absorb(n).await else {
                self.shared.set_end_reason(CLIENT_LEFT);
                return;
            };
            if let Some((cols, rows)) = input.resized {
                if !self.record(Event::resize(self.recorder.now(), CHANNEL, cols.into(), rows.into())).await {
                    return;
                }
                let _ = resize.try_send((cols, rows));
            }
            if !input.data.is_empty() && !self.up(&input.data, target).await {
                return;
            }
            for c in input.commands {
                // Interrupt, break, erase and the like go to the target as they came.
                if !self.send(target, &[IAC, c]).await {
                    return;
                }
            }
        }
    }

    /// The target's output: recorded, checked by the content rules, shown.
    async fn downlink(
        self,
        mut target: TargetLeg,
        client: Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>,
        mut resize: tokio::sync::mpsc::Receiver<(u16, u16)>,
    ) {
        let mut stop = self.shared.stop.subscribe();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            enum Next {
                Read(std::io::Result<usize>),
                Resize(u16, u16),
                Stop,
            }
            let next = tokio::select! {
                r = target.read.read(&mut buf) => Next::Read(r),
                Some((c, r)) = resize.recv() => Next::Resize(c, r),
                _ = stop.wait_for(|v| *v) => Next::Stop,
            };
            let n = match next {
                Next::Stop => return,
                Next::Resize(c, r) => {
                    if target.resize(c, r).await.is_err() {
                        break;
                    }
                    continue;
                }
                Next::Read(Ok(0) | Err(_)) => break,
                Next::Read(Ok(n)) => n,
            };
            let Ok(data) = target.absorb(&buf[..n]).await else { break };
            if data.is_empty() || self.muted.load(Ordering::Relaxed) {
                continue;
            }
            self.shared.bytes_down.fetch_add(data.len() as u64, Ordering::Relaxed);
            self.touch();
            let bytes = bytes::Bytes::from(data);
            if !self.record(Event::new(self.recorder.now(), EventKind::Output, CHANNEL, bytes.clone())).await {
                return;
            }
            if let Some(w) = &self.watch {
                if let Some(hit) = w.shown(&self.lines, &bytes) {
                    if w.act(&self.state, &self.recorder, CHANNEL, &hit).await {
                        // Matching output is not shown; the session ends.
                        self.muted.store(true, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            if !self.send(&client, &codec::escape(&bytes)).await {
                return;
            }
        }
        self.shared.set_end_reason(TARGET_LEFT);
        self.shared.stop();
    }
}

/// CR LF and CR NUL as a lone CR (Telnet's Enter), for the line editor.
fn enter_as_cr(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !data.windows(2).any(|w| w[0] == b'\r' && (w[1] == b'\n' || w[1] == 0)) {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len());
    let mut after_cr = false;
    for &b in data {
        if after_cr && (b == b'\n' || b == 0) {
            after_cr = false;
            continue;
        }
        after_cr = b == b'\r';
        out.push(b);
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn telnet_enter_is_one_line_end() {
        assert_eq!(&*super::enter_as_cr(b"ls\r\n"), b"ls\r");
        assert_eq!(&*super::enter_as_cr(b"ls\r\0pwd\r\n"), b"ls\rpwd\r");
        assert_eq!(&*super::enter_as_cr(b"abc"), b"abc");
    }
}
