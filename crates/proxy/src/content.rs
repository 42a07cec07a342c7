//! The content policy on a live session (R-SES-10): typed command lines, exec commands, output
//! lines and transferred file names are matched against the connection policy's content rules
//! as they pass, inline (one regex set per kind), so the relay never waits on anything else.
//!
//! A hit is recorded in the recording (a `content` event) and audited (`session.content`);
//! `alert` and `terminate` are alerts: mailed to Security Policy Administrators and forwarded
//! to the SIEM with the audit log. `terminate` ends the session at once and tells the user
//! why; the typed line or output chunk that matched is not passed on.

use std::sync::{Arc, Mutex};

use portcullis_app::App as AppState;
use portcullis_core::content::{Action, ContentRules, Hit, LineEditor, On, OutputLines};
use portcullis_core::role::Role;
use portcullis_recording::{Event, EventKind, Recorder};
use portcullis_store::{Actor, NewEvent, Outcome};
use serde_json::json;

/// What one session's content policy watches with, shared by its channels (behind an `Arc`:
/// every packet's relay step takes a handle).
pub(crate) struct Watch {
    pub rules: Arc<ContentRules>,
    pub policy: Arc<str>,
    pub actor: Actor,
    pub session_id: Arc<str>,
    /// ACCOUNT@ASSET, for alerts.
    pub target: Arc<str>,
}

/// One channel's line state: keystrokes and echo for command lines, output for output lines.
#[derive(Default)]
pub(crate) struct Lines {
    pub editor: LineEditor,
    pub output: OutputLines,
    /// A shell (typed lines are commands); other channels carry data, not keystrokes.
    pub interactive: bool,
}

pub(crate) type SharedLines = Arc<Mutex<Lines>>;

impl Watch {
    /// Typed command lines completed by `data` (interactive channels only); the most severe hit.
    pub fn typed(&self, lines: &SharedLines, data: &[u8]) -> Option<Hit> {
        if !self.rules.watches(On::Command) {
            return None;
        }
        let mut l = lines.lock().unwrap_or_else(|p| p.into_inner());
        if !l.interactive {
            return None;
        }
        let done = l.editor.input(data);
        drop(l);
        done.iter().filter_map(|line| self.rules.check(On::Command, line)).max_by_key(|h| h.action)
    }

    /// Output lines completed by `data` (and the echo, for recalled command lines).
    pub fn shown(&self, lines: &SharedLines, data: &[u8]) -> Option<Hit> {
        let watch_output = self.rules.watches(On::Output);
        let watch_echo = self.rules.watches(On::Command);
        if !watch_output && !watch_echo {
            return None;
        }
        let mut l = lines.lock().unwrap_or_else(|p| p.into_inner());
        if watch_echo && l.interactive {
            l.editor.output(data);
        }
        if !watch_output {
            return None;
        }
        // The chunk's completed lines, tested in one pass (plain text without a copy).
        let mut hit = None;
        l.output.feed_lines(data, |text| {
            let found = self.rules.check_lines(On::Output, text);
            hit = [hit.take(), found].into_iter().flatten().max_by_key(|h: &Hit| h.action);
        });
        hit
    }

    pub fn command(&self, command: &str) -> Option<Hit> {
        self.rules.check(On::Command, command)
    }

    /// The file names in file operations (`path`, and `to` of a rename).
    pub fn files(&self, ops: &[serde_json::Value]) -> Option<Hit> {
        if !self.rules.watches(On::File) {
            return None;
        }
        ops.iter()
            .flat_map(|op| [op.get("path"), op.get("to")])
            .flatten()
            .filter_map(|p| p.as_str())
            .filter_map(|p| self.rules.check(On::File, p))
            .max_by_key(|h| h.action)
    }

    /// Records, audits and (for alerts) notifies; for `terminate`, asks the session to end.
    /// Returns whether the session is being ended.
    pub async fn act(&self, state: &AppState, recorder: &Recorder, number: u32, hit: &Hit) -> bool {
        let text: String = hit.text.chars().take(500).collect();
        let what = json!({ "rule": hit.rule, "on": hit.on.as_str(), "action": hit.action.as_str(), "text": text });
        let _ = recorder.event(Event::new(recorder.now(), EventKind::Content, number, what.to_string())).await;
        let alert = hit.action >= Action::Alert;
        let details = json!({
            "session_id": &*self.session_id,
            "connection_policy": &*self.policy,
            "rule": hit.rule,
            "on": hit.on.as_str(),
            "action": hit.action.as_str(),
            "text": text,
            "alert": alert,
            "user": self.actor.name,
            "target": &*self.target,
        });
        let outcome = if hit.action == Action::Terminate { Outcome::Denied } else { Outcome::Success };
        let event = NewEvent::success("session.content", "session", &*self.session_id)
            .with_outcome(outcome)
            .with_details(details.clone());
        if let Err(e) = state.store.record(&self.actor, state.now(), event).await {
            tracing::error!(error = %e, "cannot audit a content policy hit");
        }
        if alert {
            match state.store.users_with_any_role(&[Role::SecurityPolicyAdmin]).await {
                Ok(admins) => {
                    let sent = state.store.notify_with(
                        state.now(),
                        "session_alert",
                        &self.session_id,
                        &admins,
                        Some(&details),
                    );
                    if let Err(e) = sent.await {
                        tracing::error!(error = %e, "cannot queue a content alert");
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot find whom to alert"),
            }
        }
        if hit.action == Action::Terminate {
            let reason = format!("the content policy of '{}' matched ({})", self.policy, hit.rule);
            state.live.terminate(&self.session_id, &reason);
            return true;
        }
        false
    }
}

/// What a channel's relays watch: its file operations and its lines (both directions share
/// them), and the session's content rules.
#[derive(Clone, Default)]
pub(crate) struct Tracks {
    pub files: crate::files::SharedTracker,
    pub lines: SharedLines,
    pub watch: Option<Arc<Watch>>,
}
