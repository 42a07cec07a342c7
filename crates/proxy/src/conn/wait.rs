//! Gateway authentication and four-eyes on the SSH proxy (R-SES-8, R-SES-9): after the
//! Portcullis sign-in and the request check, the connection waits — inside the
//! keyboard-interactive conversation, which shows the client what it waits for and for how
//! long — until the user confirms it out of band, then until an authorizer permits it. A
//! denial or the end of the wait refuses the connection with the reason.

use std::sync::atomic::Ordering;

use portcullis_app::waiting::{self, Verdict, WaitKind};
use russh::server::Auth;

use super::*;

impl Conn {
    /// The waits this connection must pass, from its connection policy.
    pub(super) fn plan_waits(&mut self) {
        self.waits = self.gateway.as_ref().map(crate::pipeline::planned_waits).unwrap_or_default();
    }

    pub(super) fn must_wait(&self) -> bool {
        matches!(&self.access, Some(Ok(_))) && (!self.waits.is_empty() || self.waiting.is_some())
    }

    /// One step of the waiting conversation: `answered` is false when the client asks for the
    /// first prompt, true when it answered the (prompt-less) notice.
    pub(super) async fn wait_step(&mut self, answered: bool) -> Auth {
        if let (true, Some((id, mut rx, until))) = (answered, self.waiting.take()) {
            let left = u64::try_from(until - self.state.now()).unwrap_or(0);
            let verdict = tokio::time::timeout(std::time::Duration::from_micros(left), rx.wait_for(|v| v.is_some()))
                .await
                .ok()
                .and_then(|r| r.ok().and_then(|v| v.clone()));
            waiting::leave(&self.state, &id).await;
            match verdict {
                Some(Verdict::Permitted { by }) => {
                    if self.current_wait == Some(WaitKind::FourEyes) {
                        self.authorizers.push(by);
                    }
                }
                Some(Verdict::Denied { reason, .. }) => return self.stop_waiting(reason),
                None => {
                    let kind = self.current_wait.unwrap_or(WaitKind::FourEyes);
                    return self.stop_waiting(crate::pipeline::wait_timed_out(kind));
                }
            }
        }
        if self.waiting.is_none() {
            if self.waits.is_empty() {
                self.shared.waiting.store(false, Ordering::Relaxed);
                return Auth::Accept;
            }
            let kind = self.waits.remove(0);
            return self.start_wait(kind).await;
        }
        // Asked again for the notice while a wait runs (a client restarting the method).
        self.notice()
    }

    fn stop_waiting(&mut self, reason: String) -> Auth {
        self.waits.clear();
        self.shared.waiting.store(false, Ordering::Relaxed);
        // Accepted, then refused with the reason as the disconnect message the client prints.
        self.access = Some(Err(reason));
        Auth::Accept
    }

    async fn start_wait(&mut self, kind: WaitKind) -> Auth {
        let (Some(Ok(access)), Some(user), Some(policy)) = (&self.access, &self.user, &self.gateway) else {
            return reject();
        };
        let wait = crate::pipeline::new_wait(&self.state, kind, user, access, policy, &self.source());
        // Signed in: the pre-authentication bounds no longer apply while the person decides.
        self.shared.waiting.store(true, Ordering::Relaxed);
        self.shared.authenticated.send_replace(true);
        let id = wait.id.clone();
        let until = wait.until;
        let rx = waiting::enter(&self.state, &self.actor(), wait).await;
        self.current_wait = Some(kind);
        self.waiting = Some((id, rx, until));
        self.notice()
    }

    /// The notice the client shows while waiting (no prompt: clients answer at once).
    fn notice(&self) -> Auth {
        let Some((id, _, until)) = &self.waiting else { return reject() };
        let minutes = ((until - self.state.now()) / 60_000_000).max(1);
        let instructions = crate::pipeline::wait_notice(self.current_wait.unwrap_or(WaitKind::FourEyes), id, minutes);
        Auth::Partial { name: "Portcullis".into(), instructions: instructions.into(), prompts: vec![].into() }
    }
}
