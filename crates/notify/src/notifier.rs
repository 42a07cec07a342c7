//! The outbox worker. Claims due notifications (oldest first; a recipient's in order: none
//! passes an older one of theirs that waits for a retry), delivers each on every
//! configured channel (e-mail, webhook) that has not delivered it yet, and marks it delivered
//! when all have; a failure is retried with back-off, and after the last attempt the
//! notification is given up, audited (`notification.failed`) and listed for administrators.
//!
//! At least once: a channel is marked done only after its receiver accepted the notification;
//! a crash in between sends it again on that channel. The claim is a lease in the store
//! (`next_at`), taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so with several nodes each
//! notification is sent by one of them. The worker only reads what the workflow has committed:
//! the workflow never waits for delivery.

use std::time::Duration;

use portcullis_app::App;
use portcullis_store::{AccessRequest, Channel, Delivery, RequestNames};

use crate::mail::Mailer;
use crate::webhook::Webhook;

/// Retries and giving up.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// The first retry's delay; each next one doubles (at most an hour).
    pub retry_seconds: u64,
    /// Attempts before giving up.
    pub attempts: i64,
}

/// What a notification is about, loaded once for every channel.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub request: Option<AccessRequest>,
    pub names: RequestNames,
    /// The account's name (credential change notifications).
    pub account: Option<String>,
}

/// Claimed at a time.
const BATCH: i64 = 20;
/// How long a claim holds while a batch is sent.
const LEASE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(500);

pub struct Notifier {
    app: App,
    mail: Option<Mailer>,
    hook: Option<Webhook>,
    config: NotifierConfig,
}

impl Notifier {
    pub fn new(app: App, mail: Option<Mailer>, hook: Option<Webhook>, config: NotifierConfig) -> Notifier {
        Notifier { app, mail, hook, config }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let now = self.app.now();
            let lease = now + LEASE.as_micros() as i64;
            let batch = match self.app.store.claim_deliveries(now, lease, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "the notifier cannot read the outbox; retrying");
                    Vec::new()
                }
            };
            let full = batch.len() as i64 == BATCH;
            // A recipient whose notification failed in this batch gets nothing newer before
            // that one: the rest of theirs go back unsent, to wait behind it.
            let mut failed: std::collections::HashSet<String> = std::collections::HashSet::new();
            for d in batch {
                if d.recipients.iter().any(|r| failed.contains(r)) {
                    failed.extend(d.recipients.iter().cloned());
                    let _ = self.app.store.delivery_release(&d.id, self.app.now()).await;
                    continue;
                }
                let recipients = d.recipients.clone();
                if !self.deliver(d).await {
                    failed.extend(recipients);
                }
            }
            if !full {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }

    async fn subject(&self, d: &Delivery) -> Subject {
        let store = &self.app.store;
        if d.event == "test" || d.event == "password_reset" {
            return Subject::default();
        }
        if d.event == "credential_change_failed" {
            return Subject { account: store.account(&d.subject_id).await.ok().map(|a| a.name), ..Subject::default() };
        }
        let request = store.request(&d.subject_id).await.ok();
        let names = match &request {
            Some(r) => portcullis_app::requests::names_of(&self.app, std::slice::from_ref(&r.id))
                .await
                .ok()
                .and_then(|mut n| n.pop())
                .unwrap_or_default(),
            None => RequestNames::default(),
        };
        Subject { request, names, account: None }
    }

    /// Sends one notification on its channels; `false` if it must be tried again later.
    async fn deliver(&self, d: Delivery) -> bool {
        let store = &self.app.store;
        let subject = self.subject(&d).await;
        let mut errors = Vec::new();
        let mut done = Vec::new();
        if let (Some(mail), false) = (&self.mail, d.mail_done) {
            match mail.send_all(&d, &subject).await {
                Ok(()) => done.push(Channel::Mail),
                Err(e) => errors.push(e),
            }
        }
        if let (Some(hook), false) = (&self.hook, d.hook_done) {
            match hook.send(&d, &subject).await {
                Ok(()) => done.push(Channel::Webhook),
                Err(e) => errors.push(e),
            }
        }
        // When some channel failed, the others' success is kept so a retry skips them.
        if !errors.is_empty() {
            for c in done {
                let _ = store.channel_delivered(&d.id, c, self.app.now()).await;
            }
        }
        let now = self.app.now();
        if errors.is_empty() {
            if let Err(e) = store.delivered(&d.id, now).await {
                tracing::warn!(error = %e, notification = %d.id, "sent, but cannot mark it delivered (it may be sent again)");
            }
            return true;
        }
        let why = errors.join("; ");
        let attempt = d.attempts + 1;
        if attempt >= self.config.attempts {
            tracing::warn!(notification = %d.id, event = %d.event, error = %why, "giving up on a notification");
            let _ = store.delivery_failed(&d.id, now, &why).await;
        } else {
            let delay = self.config.retry_seconds.saturating_mul(1u64 << (attempt - 1).clamp(0, 16) as u32).min(3600);
            tracing::info!(notification = %d.id, attempt, retry_in_s = delay, error = %why, "notification not delivered; will retry");
            let _ = store.delivery_retry(&d.id, now + delay as i64 * 1_000_000, &why).await;
        }
        false
    }
}
