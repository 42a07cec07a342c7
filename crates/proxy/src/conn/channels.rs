//! The channel policy on a live connection (R-SES-6): each channel request is checked against
//! the connection policy that admitted the connection. A refused one is refused on its own
//! (the session goes on), told to the client, recorded and audited.

use portcullis_core::gateway::{ChannelAsk, ChannelKind};
use portcullis_recording::{Event, EventKind};
use portcullis_store::{NewEvent, Outcome};
use russh::server::Session;
use russh::ChannelId;
use serde_json::json;

use super::*;

impl Conn {
    /// What the connection policy says of a channel of `kind` now.
    pub(super) fn channel_verdict(
        &self,
        kind: ChannelKind,
        command: Option<&str>,
        destination: Option<(&str, u16)>,
    ) -> Result<(), String> {
        let Some(policy) = &self.gateway else { return Err("no connection policy admitted this connection".into()) };
        let ask = ChannelAsk { kind, groups: &self.groups, at: self.state.now(), command, destination };
        policy.channel(&ask)
    }

    /// Checks a request on an open channel (shell, exec, SCP, SFTP). Refused: the request is
    /// answered like a command that failed — the reason on the channel's error stream, exit
    /// status 1, end of data — so every client shows the reason (OpenSSH drops what arrives
    /// with a failed request); the target's side of the channel is closed. `Ok(false)`.
    pub(super) async fn channel_allowed(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        kind: ChannelKind,
        command: Option<&str>,
        destination: Option<(&str, u16)>,
    ) -> Result<bool, russh::Error> {
        let Err(why) = self.channel_verdict(kind, command, destination) else { return Ok(true) };
        let shown = match command {
            Some(c) => format!("{why} (command: {})", c.chars().take(200).collect::<String>()),
            None => why.clone(),
        };
        self.channel_refused(Some(channel), kind, &shown).await?;
        let text = format!("Portcullis: {why}\r\n");
        session.channel_success(channel)?;
        session.extended_data(channel, 1, text.into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        // Closed here: russh does not report the target's answer to a close it was sent, so
        // the relay would never close the client's side of a channel the proxy closed.
        session.close(channel)?;
        self.up(channel, super::upstream::Up::Close).await?;
        Ok(false)
    }

    /// Records and audits a refused channel.
    pub(super) async fn channel_refused(
        &mut self,
        channel: Option<ChannelId>,
        kind: ChannelKind,
        why: &str,
    ) -> Result<(), russh::Error> {
        let number = channel.and_then(|c| self.channels.get(&c)).map_or(self.next_number, |c| c.number);
        let text = format!("refused {}: {why}", kind.as_str());
        self.record(Event::new(self.now_rec(), EventKind::ChannelOpen, number, text)).await?;
        let session_id = self.shared.session_id().unwrap_or_default();
        let details = json!({
            "session_id": session_id,
            "channel": kind.as_str(),
            "reason": why,
            "connection_policy": self.gateway.as_ref().map(|p| p.name.clone()),
            "client": self.source(),
        });
        let event = NewEvent::success("session.channel_refused", "session", &session_id)
            .with_outcome(Outcome::Denied)
            .with_details(details);
        if let Err(e) = self.state.store.record(&self.actor(), self.state.now(), event).await {
            tracing::error!(error = %e, "cannot audit a refused channel");
        }
        Ok(())
    }
}

impl Conn {
    /// The session's content watch, when its connection policy has content rules.
    pub(super) fn content_watch(&self, user: &User, access: &Access) -> Option<std::sync::Arc<crate::content::Watch>> {
        let session_id = self.shared.session_id().unwrap_or_default();
        crate::pipeline::content_watch(self.gateway.as_ref()?, user, access, &session_id, &self.source())
    }

    /// Acts on a content rule's hit; `true` when the session is being ended (nothing more is
    /// passed to the target).
    pub(super) async fn content_hit(&mut self, number: u32, hit: &portcullis_core::content::Hit) -> bool {
        let (Some(w), Some(r)) = (self.watch.clone(), self.recorder.clone()) else { return false };
        let ended = w.act(&self.state, &r, number, hit).await;
        self.muted |= ended;
        ended
    }
}
