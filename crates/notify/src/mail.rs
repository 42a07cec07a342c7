//! E-mail: the outbox worker. Claims due notifications (oldest first), writes each recipient
//! a mail in their time zone (plain text and HTML; never a secret), sends it over SMTP, and
//! marks the notification delivered; a failure is retried with back-off, and after the last
//! attempt given up on, audited (`notification.failed`) and listed for administrators.
//!
//! At least once: a notification is marked delivered only after every recipient's mail was
//! accepted by the SMTP server; a crash in between sends it again. The claim is a lease in the
//! store (`next_at`), taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so with several nodes
//! each notification is sent by one of them. The worker only reads what the workflow has
//! committed: the workflow never waits for mail.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portcullis_app::App;
use portcullis_store::{AccessRequest, Delivery, User};

/// How mail is sent.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// lettre's SMTP URL: `smtp://HOST:PORT` (plain), `smtp://HOST:587?tls=required`
    /// (STARTTLS), `smtps://USER:PASSWORD@HOST:465` (TLS).
    pub smtp_url: String,
    /// The sender, e.g. `Portcullis <pam@example.com>`.
    pub from: String,
    /// The web UI's address as people reach it, for links in mails.
    pub web_url: String,
    /// The first retry's delay; each next one doubles (at most an hour).
    pub retry_seconds: u64,
    /// Attempts before giving up.
    pub attempts: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail.smtp: {0}")]
    Url(String),
    #[error("mail.from: '{0}' is not a mailbox; write e.g. Portcullis <pam@example.com>")]
    From(String),
}

/// What one mail says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub subject: String,
    pub text: String,
}

pub struct Mailer {
    app: App,
    config: MailConfig,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// Claimed at a time.
const BATCH: i64 = 20;
/// How long a claim holds while a batch is sent.
const LEASE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(500);

impl Mailer {
    pub fn new(app: App, config: MailConfig) -> Result<Mailer, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
            .map_err(|e| MailError::Url(e.to_string()))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from: Mailbox = config.from.parse().map_err(|_| MailError::From(config.from.clone()))?;
        Ok(Mailer { app, config, from, transport })
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
                    tracing::warn!(error = %e, "the mail worker cannot read the outbox; retrying");
                    Vec::new()
                }
            };
            let full = batch.len() as i64 == BATCH;
            for d in batch {
                self.deliver(d).await;
            }
            if !full {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }

    async fn deliver(&self, d: Delivery) {
        let store = &self.app.store;
        let now = self.app.now();
        match self.send_all(&d).await {
            Ok(()) => {
                if let Err(e) = store.delivered(&d.id, now).await {
                    tracing::warn!(error = %e, notification = %d.id, "sent, but cannot mark it delivered (it may be sent again)");
                }
            }
            Err(why) => {
                let attempt = d.attempts + 1;
                if attempt >= self.config.attempts {
                    tracing::warn!(notification = %d.id, event = %d.event, error = %why, "giving up on a notification");
                    let _ = store.delivery_failed(&d.id, now, &why).await;
                } else {
                    let delay =
                        self.config.retry_seconds.saturating_mul(1u64 << (attempt - 1).clamp(0, 16) as u32).min(3600);
                    tracing::info!(notification = %d.id, attempt, retry_in_s = delay, error = %why, "mail not sent; will retry");
                    let _ = store.delivery_retry(&d.id, now + delay as i64 * 1_000_000, &why).await;
                }
            }
        }
    }

    /// Sends every recipient their mail; the first failure is the answer.
    async fn send_all(&self, d: &Delivery) -> Result<(), String> {
        let store = &self.app.store;
        let request = if is_request_event(&d.event) { store.request(&d.subject_id).await.ok() } else { None };
        let names = match &request {
            Some(r) => portcullis_app::requests::names_of(&self.app, std::slice::from_ref(&r.id))
                .await
                .ok()
                .and_then(|mut n| n.pop())
                .unwrap_or_default(),
            None => Default::default(),
        };
        let account = if d.event == "credential_change_failed" {
            store.account(&d.subject_id).await.ok().map(|a| a.name)
        } else {
            None
        };
        for user_id in &d.recipients {
            let Ok(user) = store.user(user_id).await else { continue };
            let Some(address) = user.email.clone() else { continue };
            let to: Mailbox = match address.parse() {
                Ok(m) => m,
                Err(_) => {
                    tracing::warn!(user = %user.username, "the user's e-mail address cannot be used; skipped");
                    continue;
                }
            };
            let letter = compose(&d.event, request.as_ref(), &names, account.as_deref(), &user, &self.config.web_url);
            let html = html_of(&letter);
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(&letter.subject)
                .multipart(
                    MultiPart::alternative()
                        .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(letter.text.clone()))
                        .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
                )
                .map_err(|e| format!("cannot build the mail: {e}"))?;
            self.transport.send(message).await.map_err(|e| format!("SMTP: {e}"))?;
        }
        Ok(())
    }
}

fn is_request_event(event: &str) -> bool {
    event != "credential_change_failed"
}

fn when(user: &User, micros: i64) -> String {
    let zone = jiff::tz::TimeZone::get(&user.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.to_zoned(zone).strftime("%Y-%m-%d %H:%M %Z").to_string())
        .unwrap_or_default()
}

/// The mail one recipient gets for one notification. Pure: what the request holds, named.
pub fn compose(
    event: &str,
    r: Option<&AccessRequest>,
    names: &portcullis_store::RequestNames,
    account: Option<&str>,
    to: &User,
    web_url: &str,
) -> Letter {
    let web = web_url.trim_end_matches('/');
    let Some(r) = r else {
        let what = account.unwrap_or("an account");
        return Letter {
            subject: format!("Portcullis: a credential change of {what} failed"),
            text: format!(
                "The automatic credential change of {what} failed after its last attempt.\n\
                 The account's page shows the error and lets you check or change the credential:\n{web}/admin/accounts/\n"
            ),
        };
    };
    let name = |n: &Option<String>| n.clone().unwrap_or_else(|| "?".into());
    let requester = name(&names.requester);
    let target = format!("{}@{}", name(&names.account), name(&names.asset));
    let window = format!("{} – {}", when(to, r.start_at), when(to, r.end_at));
    let mut details = vec![
        format!("Account:   {target} ({})", r.access_type.as_str()),
        format!("Requester: {}", requester),
        format!("When:      {window}"),
    ];
    if let Some(t) = &r.ticket {
        details.push(format!("Ticket:    {t}"));
    }
    if let Some(c) = &r.reason_code {
        details.push(format!("Reason:    {c}"));
    }
    if let Some(c) = &r.comment {
        details.push(format!("Comment:   {c}"));
    }
    let details = details.join("\n");
    let link = format!("{web}/requests/{}", r.id);
    let emergency = if r.emergency { "EMERGENCY ACCESS: " } else { "" };
    let (subject, lead) = match event {
        "pending_approval" => (
            format!("{emergency}Approval needed: {target} for {}", requester),
            format!("{} asks for access and waits for your decision.", requester),
        ),
        "emergency" => (
            format!("EMERGENCY ACCESS: {target} by {}", requester),
            format!("{} took emergency access; it is approved at once and will be reviewed.", requester),
        ),
        "approved" => (format!("Approved: {target}"), "Your request was approved.".to_owned()),
        "denied" => (format!("Denied: {target}"), "Your request was denied.".to_owned()),
        "revoked" => (format!("Revoked: {target}"), "Your access was revoked.".to_owned()),
        "expired" => (format!("Expired: {target}"), "Your access has expired.".to_owned()),
        "review_due" => (
            format!("Review needed: {target} used by {}", requester),
            "A request you review was used and waits for your review.".to_owned(),
        ),
        "account_taken" => (
            format!("Not available: {target}"),
            "The account was given to someone else for the time you asked; ask for another time.".to_owned(),
        ),
        other => (format!("Portcullis: {target} ({})", other.replace('_', " ")), "Your request changed.".to_owned()),
    };
    Letter {
        subject,
        text: format!(
            "{lead}\n\n{details}\n\nOpen the request: {link}\n\nTimes are in your time zone, {}.\n",
            to.time_zone
        ),
    }
}

/// The same text as HTML (escaped; links clickable).
fn html_of(letter: &Letter) -> String {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let body: Vec<String> = letter
        .text
        .lines()
        .map(|l| {
            let e = escape(l);
            match e.find("https://").or_else(|| e.find("http://")) {
                Some(i) => format!("{}<a href=\"{}\">{}</a>", &e[..i], &e[i..], &e[i..]),
                None => e,
            }
        })
        .collect();
    format!(
        "<!doctype html><html><body><pre style=\"font-family:sans-serif;white-space:pre-wrap\">{}</pre></body></html>",
        body.join("\n")
    )
}

/// Whether `s` is a mailbox mail can be sent from or to (`Name <user@host>` or `user@host`).
pub fn valid_mailbox(s: &str) -> bool {
    s.parse::<Mailbox>().is_ok()
}
