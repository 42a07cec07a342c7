//! The pump from the target back to the client, one task per channel. Output is recorded
//! (through the recorder's bounded queue) and then written to the client with its window
//! respected, so a slow client slows the target instead of filling memory. Exit status, EOF
//! and close are forwarded in the target's order, so a download ends when the target ends it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use portcullis_api::AppState;
use portcullis_recording::{Event, EventKind, Recorder};
use russh::server::{Handle, Msg};
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect};

use crate::serve::Shared;

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
    files: crate::files::SharedTracker,
) {
    let touch = |shared: &Shared| shared.last_activity.store(state.now(), Ordering::Relaxed);
    let mut failed = false;
    while let Some(msg) = up.wait().await {
        let ok = match msg {
            ChannelMsg::Data { data } => {
                shared.bytes_down.fetch_add(data.len() as u64, Ordering::Relaxed);
                touch(&shared);
                if recorder.event(Event::new(recorder.now(), EventKind::Output, number, data.to_vec())).await.is_err() {
                    failed = true;
                    break;
                }
                let ops = files
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                    .map(|t| t.server(&data))
                    .unwrap_or_default();
                for op in ops {
                    let _ = recorder.record(EventKind::File, number, op.to_string().into_bytes()).await;
                }
                client.data_bytes(data).await.is_ok()
            }
            ChannelMsg::ExtendedData { data, ext } => {
                shared.bytes_down.fetch_add(data.len() as u64, Ordering::Relaxed);
                touch(&shared);
                if recorder.event(Event::new(recorder.now(), EventKind::Stderr, number, data.to_vec())).await.is_err() {
                    failed = true;
                    break;
                }
                client.extended_data_bytes(ext, data).await.is_ok()
            }
            ChannelMsg::Eof => client.eof().await.is_ok(),
            ChannelMsg::ExitStatus { exit_status } => {
                let _ = recorder.record(EventKind::ExitStatus, number, exit_status.to_be_bytes().to_vec()).await;
                client.exit_status(exit_status).await.is_ok()
            }
            ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag } => {
                let _ = recorder.record(EventKind::Signal, number, format!("exit {signal_name:?}").into_bytes()).await;
                handle.exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag).await.is_ok()
            }
            ChannelMsg::Success => handle.channel_success(id).await.is_ok(),
            ChannelMsg::Failure => handle.channel_failure(id).await.is_ok(),
            ChannelMsg::Close => break,
            _ => true,
        };
        if !ok {
            break;
        }
    }
    if failed {
        shared.set_end_reason("recording storage failed");
        let _ = handle
            .disconnect(
                Disconnect::ByApplication,
                "Portcullis: the session recording failed; the session was ended".into(),
                "en".into(),
            )
            .await;
    }
    let _ = recorder.record(EventKind::ChannelClose, number, Vec::new()).await;
    shared.channels.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    let _ = client.close().await;
}
