//! The pump from the target back to the client, one task per channel. Output is recorded
//! (through the recorder's bounded queue) and then written to the client with its window
//! respected, so a slow client slows the target instead of filling memory. Exit status, EOF
//! and close are forwarded in the target's order, so a download ends when the target ends it.
//! Every wait also watches the session's stop signal, so an ending session never hangs on a
//! peer that stopped reading.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use portcullis_app::App as AppState;
use portcullis_recording::{Event, EventKind, Recorder};
use russh::server::{Handle, Msg};
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect};

use crate::content::Tracks;
use crate::serve::Shared;

enum Next {
    Go,
    End,
    RecordingFailed,
}

struct Pump {
    client: ChannelWriteHalf<Msg>,
    handle: Handle,
    id: ChannelId,
    number: u32,
    recorder: Recorder,
    shared: Arc<Shared>,
    state: AppState,
    tracks: Tracks,
    /// Set when a content rule ended the session: nothing more is passed on.
    muted: std::sync::atomic::AtomicBool,
    /// A session channel (shell, exec, subsystem), as opposed to a forwarded connection.
    session: bool,
    /// The target's EOF on a session channel, held until its exit status is forwarded:
    /// some clients (PuTTY) close the channel once both sides sent EOF, and an exit status
    /// arriving after that would be lost.
    held_eof: std::sync::atomic::AtomicBool,
    exited: std::sync::atomic::AtomicBool,
}

impl Pump {
    async fn release_eof(&self) -> bool {
        if self.held_eof.swap(false, Ordering::Relaxed) {
            return self.client.eof().await.is_ok();
        }
        true
    }

    async fn output(&self, data: bytes::Bytes, ext: Option<u32>) -> Next {
        self.shared.bytes_down.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.shared.last_activity.store(self.state.now(), Ordering::Relaxed);
        let kind = if ext.is_some() { EventKind::Stderr } else { EventKind::Output };
        if self.recorder.event(Event::new(self.recorder.now(), kind, self.number, data.clone())).await.is_err() {
            return Next::RecordingFailed;
        }
        if self.muted.load(Ordering::Relaxed) {
            return Next::Go;
        }
        let ops = self
            .tracks
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map(|t| t.server(&data))
            .unwrap_or_default();
        for op in &ops {
            let _ = self.recorder.record(EventKind::File, self.number, op.to_string().into_bytes()).await;
        }
        if let Some(w) = &self.tracks.watch {
            let hit =
                [w.shown(&self.tracks.lines, &data), w.files(&ops)].into_iter().flatten().max_by_key(|h| h.action);
            if let Some(hit) = hit {
                if w.act(&self.state, &self.recorder, self.number, &hit).await {
                    // What matched is not shown; the session is ending.
                    self.muted.store(true, Ordering::Relaxed);
                    return Next::Go;
                }
            }
        }
        let sent = match ext {
            Some(ext) => self.client.extended_data_bytes(ext, data).await,
            None => self.client.data_bytes(data).await,
        };
        if sent.is_ok() {
            Next::Go
        } else {
            Next::End
        }
    }

    async fn step(&self, msg: ChannelMsg) -> Next {
        let ok = match msg {
            ChannelMsg::Data { data } => return self.output(data, None).await,
            ChannelMsg::ExtendedData { data, ext } => return self.output(data, Some(ext)).await,
            ChannelMsg::Eof if self.session && !self.exited.load(Ordering::Relaxed) => {
                self.held_eof.store(true, Ordering::Relaxed);
                true
            }
            ChannelMsg::Eof => self.client.eof().await.is_ok(),
            ChannelMsg::ExitStatus { exit_status } => {
                let _ =
                    self.recorder.record(EventKind::ExitStatus, self.number, exit_status.to_be_bytes().to_vec()).await;
                self.exited.store(true, Ordering::Relaxed);
                self.client.exit_status(exit_status).await.is_ok() && self.release_eof().await
            }
            ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag } => {
                let text = format!("exit {signal_name:?}").into_bytes();
                let _ = self.recorder.record(EventKind::Signal, self.number, text).await;
                self.exited.store(true, Ordering::Relaxed);
                self.handle
                    .exit_signal_request(self.id, signal_name, core_dumped, error_message, lang_tag)
                    .await
                    .is_ok()
                    && self.release_eof().await
            }
            ChannelMsg::Success => self.handle.channel_success(self.id).await.is_ok(),
            ChannelMsg::Failure => self.handle.channel_failure(self.id).await.is_ok(),
            ChannelMsg::Close => {
                self.release_eof().await;
                false
            }
            _ => true,
        };
        if ok {
            Next::Go
        } else {
            Next::End
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn pump(
    mut up: ChannelReadHalf,
    client: ChannelWriteHalf<Msg>,
    handle: Handle,
    id: ChannelId,
    number: u32,
    recorder: Recorder,
    shared: Arc<Shared>,
    state: AppState,
    tracks: Tracks,
    session: bool,
) {
    let p = Pump {
        client,
        handle,
        id,
        number,
        recorder,
        shared,
        state,
        tracks,
        muted: Default::default(),
        session,
        held_eof: Default::default(),
        exited: Default::default(),
    };
    let mut stop = p.shared.stop.subscribe();
    let mut failed = false;
    loop {
        let msg = tokio::select! {
            m = up.wait() => m,
            _ = stop.wait_for(|v| *v) => None,
        };
        let Some(msg) = msg else { break };
        let next = tokio::select! {
            n = p.step(msg) => n,
            _ = stop.wait_for(|v| *v) => Next::End,
        };
        match next {
            Next::Go => {}
            Next::End => break,
            Next::RecordingFailed => {
                failed = true;
                break;
            }
        }
    }
    if failed {
        p.shared.set_end_reason("recording storage failed");
        let _ = p
            .handle
            .disconnect(
                Disconnect::ByApplication,
                "Portcullis: the session recording failed; the session was ended".into(),
                "en".into(),
            )
            .await;
        p.shared.stop();
    }
    let _ = p.recorder.record(EventKind::ChannelClose, number, Vec::new()).await;
    p.shared.channels.lock().unwrap_or_else(|x| x.into_inner()).remove(&id);
    if !*stop.borrow() {
        let _ = p.client.close().await;
    }
}
