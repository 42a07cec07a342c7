//! A started RDP session's relay: every PDU of either leg recorded (`Input` from the client,
//! `Output` from the target, one event per PDU, on channel 0) and passed on, except the PDUs of
//! static virtual channels the connection policy refuses (dropped both ways, audited once) and
//! the client's input until the target reports the logon (so nobody types into a target's own
//! login screen, and a target that refuses the vaulted credential ends the session). When the
//! proxy ends a session the client gets a Set Error Info PDU its user sees, then a disconnect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use portcullis_app::App as AppState;
use portcullis_core::gateway::{ChannelAsk, ChannelKind, ConnectionPolicy};
use portcullis_recording::{Event, EventKind, Recorder};
use portcullis_store::{Actor, NewEvent, Outcome};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadHalf, WriteHalf};

use super::frames::FrameReader;
use super::signin::{Channels, ClientTls, TargetTls};
use super::wire;
use crate::serve::Shared;

const CLIENT_LEFT: &str = "the client disconnected";
const TARGET_LEFT: &str = "the target closed the connection";

/// Until the session is told to stop.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The connection policy's channel kind of a static virtual channel (none: always refused).
fn kind_of(name: &str) -> Option<ChannelKind> {
    Some(match name {
        "cliprdr" => ChannelKind::Clipboard,
        "rdpdr" => ChannelKind::Drive,
        "rdpsnd" => ChannelKind::Audio,
        "drdynvc" => ChannelKind::Dynamic,
        _ => return None,
    })
}

/// The static channels the policy refuses now: id → (name, why).
pub(super) fn refused_channels(
    state: &AppState,
    policy: &ConnectionPolicy,
    groups: &[String],
    channels: &Channels,
) -> HashMap<u16, (String, String)> {
    let mut refused = HashMap::new();
    for (name, id) in channels.names.iter().zip(&channels.ids) {
        let why = match kind_of(name) {
            Some(kind) => {
                let ask = ChannelAsk { kind, groups, at: state.now(), command: None, destination: None };
                match policy.channel(&ask) {
                    Ok(()) => continue,
                    Err(why) => why,
                }
            }
            None => format!("the RDP proxy does not relay the '{name}' channel"),
        };
        refused.insert(*id, (name.clone(), why));
    }
    refused
}

pub(super) struct Relay {
    pub state: AppState,
    pub shared: Arc<Shared>,
    pub recorder: Recorder,
    pub channels: Channels,
    pub refused: HashMap<u16, (String, String)>,
    pub target_name: String,
    pub actor: Actor,
    pub session_id: String,
    /// Time the target has, after the Client Info PDU, to report the logon.
    pub logon_timeout: Duration,
    /// Only a logon notification shows the logon (Windows targets), not channel traffic.
    pub logon_notice_only: bool,
    /// The target accepted the credential already (NLA): the input flows at once.
    pub logged_on: bool,
}

/// What the downlink learns for the parting PDUs.
#[derive(Default)]
struct Learned {
    logged_on: AtomicBool,
    activated: AtomicBool,
    share_id: AtomicU32,
    server_user: AtomicU16,
    /// The desktop's size (width << 16 | height), from the last activation.
    size: AtomicU32,
}

impl Relay {
    pub async fn run(self, client: ClientTls, target: TargetTls, rest: (BytesMut, BytesMut)) {
        let me = Arc::new(self);
        me.announce_channels().await;
        let (client_read, mut client_write) = tokio::io::split(client);
        let (target_read, mut target_write) = tokio::io::split(target);
        let learned = Arc::new(Learned::default());
        learned.server_user.store(1002, Ordering::Relaxed);
        learned.logged_on.store(me.logged_on, Ordering::Relaxed);
        let (to_client_tx, mut to_client_rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let down = tokio::spawn(me.clone().downlink(target_read, rest.1, to_client_tx, learned.clone()));
        let up = {
            let me = me.clone();
            let learned = learned.clone();
            async move {
                me.uplink(client_read, &mut target_write, FrameReader::with(rest.0), &learned).await;
                let _ = target_write.shutdown().await;
            }
        };
        let writer = async {
            while let Some(pdu) = to_client_rx.recv().await {
                if client_write.write_all(&pdu).await.is_err() {
                    me.shared.set_end_reason(CLIENT_LEFT);
                    me.shared.stop();
                    break;
                }
            }
        };
        let logon = async {
            tokio::time::sleep(me.logon_timeout).await;
            if !learned.logged_on.load(Ordering::Relaxed) {
                me.shared.set_end_reason(&format!(
                    "Portcullis could not log in to {}: the target did not accept the vaulted credential within {} seconds; ask an administrator to check it",
                    me.target_name,
                    me.logon_timeout.as_secs()
                ));
                me.shared.stop();
            }
            std::future::pending::<()>().await
        };
        let mut stop = me.shared.stop.subscribe();
        tokio::select! {
            _ = up => me.shared.set_end_reason(CLIENT_LEFT),
            _ = writer => {}
            _ = logon => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        me.shared.stop();
        down.abort();
        let _ = down.await;
        let reason = me.shared.end_reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(reason) = reason.filter(|r| r != CLIENT_LEFT && r != TARGET_LEFT) {
            let pdus = wire::error_and_disconnect(
                me.channels.io,
                learned.server_user.load(Ordering::Relaxed),
                learned.share_id.load(Ordering::Relaxed),
                super::code_for(&reason),
                false,
            );
            let _ = tokio::time::timeout(Duration::from_secs(2), client_write.write_all(&pdus)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), client_write.shutdown()).await;
    }

    /// Records how to read the stream back, each static channel (refused ones with why), and
    /// audits the refusals.
    async fn announce_channels(&self) {
        let c = &self.channels;
        let setup = json!({ "rdp": {
            "io_channel": c.io, "user_channel": c.user, "compression": c.compression,
            "channels": c.names.iter().zip(&c.ids).map(|(n, id)| json!({ "name": n, "id": id, "refused": self.refused.contains_key(id) })).collect::<Vec<_>>(),
        }});
        let _ = self
            .recorder
            .event(Event::new(self.recorder.now(), EventKind::Setup, 0, setup.to_string().into_bytes()))
            .await;
        for (name, id) in self.channels.names.iter().zip(&self.channels.ids) {
            let text = match self.refused.get(id) {
                Some((_, why)) => format!("refused {name}: {why}"),
                None => format!("rdp channel {name}"),
            };
            let _ = self
                .recorder
                .event(Event::new(self.recorder.now(), EventKind::ChannelOpen, u32::from(*id), text))
                .await;
            if let Some((_, why)) = self.refused.get(id) {
                let details = json!({
                    "session_id": self.session_id, "channel": name,
                    "kind": kind_of(name).map(ChannelKind::as_str), "reason": why, "client": self.actor.source,
                    "target": self.target_name,
                });
                let event = NewEvent::success("session.channel_refused", "session", &self.session_id)
                    .with_outcome(Outcome::Denied)
                    .with_details(details);
                if let Err(e) = self.state.store.record(&self.actor, self.state.now(), event).await {
                    tracing::error!(error = %e, "cannot audit a refused channel");
                }
            }
        }
    }

    /// A slow-path PDU's MCS channel is one the policy refuses.
    fn refused_channel(&self, channel: Option<u16>) -> bool {
        channel.is_some_and(|c| self.refused.contains_key(&c))
    }

    async fn record(&self, kind: EventKind, pdu: Bytes) -> bool {
        if self.recorder.event(Event::new(self.recorder.now(), kind, 0, pdu)).await.is_err() {
            self.shared.set_end_reason("recording storage failed");
            self.shared.stop();
            return false;
        }
        true
    }

    async fn uplink<R: AsyncRead + Unpin>(
        &self,
        mut from: R,
        to: &mut WriteHalf<TargetTls>,
        mut reader: FrameReader,
        learned: &Learned,
    ) {
        let mut stop = self.shared.stop.subscribe();
        let mut refreshes = match self.shared.tap() {
            Some(tap) => tap.refreshes(),
            None => tokio::sync::watch::channel(0).1,
        };
        loop {
            let pdu = tokio::select! {
                r = reader.next(&mut from) => match r {
                    Ok(Some(p)) => p,
                    _ => return,
                },
                _ = stopped(&mut stop) => return,
                Ok(()) = refreshes.changed() => {
                    // A watcher started looking: the target redraws the screen for it (and
                    // the client, which draws the same again).
                    let size = learned.size.load(Ordering::Relaxed);
                    if learned.logged_on.load(Ordering::Relaxed) && size != 0 {
                        let share_id = learned.share_id.load(Ordering::Relaxed);
                        let (w, h) = ((size >> 16) as u16, (size & 0xffff) as u16);
                        let pdu = wire::refresh_rect(self.channels.user, self.channels.io, share_id, w, h);
                        if to.write_all(&pdu).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
            };
            // A slow-path PDU is read once: its channel, and on the I/O channel its type.
            let (input, confirm_active) = match wire::is_slow_path(&pdu).then(|| wire::mcs_data(&pdu)) {
                // Fast-path from the client is input.
                None => (true, false),
                Some(None) => (false, false),
                Some(Some((_, channel, data))) => {
                    if self.refused_channel(Some(channel)) {
                        continue;
                    }
                    let io = channel == self.channels.io;
                    let kind = |nibble| data.len() >= 4 && u16::from_le_bytes([data[2], data[3]]) & 0x0F == nibble;
                    let input =
                        io && wire::share_data_type(data, false).is_some_and(|(t, _, _)| t == wire::PDUTYPE2_INPUT);
                    (input, io && kind(0x3))
                }
            };
            // What the recording's player cannot draw is not asked for.
            let pdu = match confirm_active.then(|| wire::decodable_confirm_active(&pdu)).flatten() {
                Some(rewritten) => Bytes::from(rewritten),
                None => pdu,
            };
            if input && !learned.logged_on.load(Ordering::Relaxed) {
                // Nobody types into the target's own login screen.
                continue;
            }
            self.shared.bytes_up.fetch_add(pdu.len() as u64, Ordering::Relaxed);
            if input {
                self.shared.last_activity.store(self.state.now(), Ordering::Relaxed);
            }
            if !self.record(EventKind::Input, pdu.clone()).await {
                return;
            }
            if to.write_all(&pdu).await.is_err() {
                self.shared.set_end_reason(TARGET_LEFT);
                return;
            }
        }
    }

    async fn downlink(
        self: Arc<Self>,
        mut from: ReadHalf<TargetTls>,
        rest: BytesMut,
        to: tokio::sync::mpsc::Sender<Bytes>,
        learned: Arc<Learned>,
    ) {
        let mut reader = FrameReader::with(rest);
        loop {
            let pdu = match reader.next(&mut from).await {
                Ok(Some(p)) => p,
                _ => break,
            };
            let channel = if wire::is_slow_path(&pdu) { self.learn(&pdu, &learned) } else { None };
            if self.refused_channel(channel) {
                continue;
            }
            self.shared.bytes_down.fetch_add(pdu.len() as u64, Ordering::Relaxed);
            if !self.record(EventKind::Output, pdu.clone()).await {
                return;
            }
            if to.send(pdu).await.is_err() {
                return;
            }
        }
        self.shared.set_end_reason(TARGET_LEFT);
        self.shared.stop();
    }

    /// The logon notification, the activation and the ids the parting PDUs need, from a
    /// slow-path PDU of the target; its MCS channel.
    fn learn(&self, pdu: &[u8], learned: &Learned) -> Option<u16> {
        let (initiator, channel, data) = wire::mcs_data(pdu)?;
        if channel != self.channels.io {
            // xrdp sends no logon notification; its channel server, which starts inside the
            // user's session, speaking on the clipboard, device or sound channel shows the
            // logon (xrdp itself answers on the dynamic channel before). Windows talks on
            // channels before the logon: there only the notification counts.
            if !self.logon_notice_only && self.session_channel(channel) {
                self.logged_on(learned);
            }
            return Some(channel);
        }
        learned.server_user.store(initiator, Ordering::Relaxed);
        // Share control header: totalLength, pduType (low nibble 1: Demand Active).
        if data.len() >= 4 && u16::from_le_bytes([data[2], data[3]]) & 0x0F == 0x1 {
            learned.activated.store(true, Ordering::Relaxed);
            if let Some((share_id, width, height)) = portcullis_recording::screen::demand_active(pdu) {
                learned.share_id.store(share_id, Ordering::Relaxed);
                learned.size.store(u32::from(width) << 16 | u32::from(height), Ordering::Relaxed);
            }
            return Some(channel);
        }
        let activated = learned.activated.load(Ordering::Relaxed);
        if let Some((t, share_id, _)) = wire::share_data_type(data, !activated) {
            if share_id != 0 {
                learned.share_id.store(share_id, Ordering::Relaxed);
            }
            if t == wire::PDUTYPE2_SAVE_SESSION_INFO {
                self.logged_on(learned);
            }
        }
        Some(channel)
    }

    /// A channel served from inside the user's session on xrdp.
    fn session_channel(&self, id: u16) -> bool {
        let name = self.channels.ids.iter().position(|c| *c == id).and_then(|i| self.channels.names.get(i));
        name.is_some_and(|n| matches!(n.as_str(), "cliprdr" | "rdpdr" | "rdpsnd"))
    }

    fn logged_on(&self, learned: &Learned) {
        if !learned.logged_on.swap(true, Ordering::Relaxed) {
            tracing::debug!(session = %self.session_id, "rdp: the target reports the logon");
        }
    }
}
