//! E-mail: each recipient of a notification gets a mail in their time zone (plain text and
//! HTML; never a secret), sent over SMTP. The channel is driven by the [`crate::notifier`],
//! which claims, retries and gives up; a notification's mail channel is done once every
//! recipient's mail was accepted by the SMTP server.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portcullis_app::App;
use portcullis_store::{AccessRequest, Delivery};

use crate::notifier::Subject;

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
    pub(crate) config: MailConfig,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Mailer {
    pub fn new(app: App, config: MailConfig) -> Result<Mailer, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
            .map_err(|e| MailError::Url(e.to_string()))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from: Mailbox = config.from.parse().map_err(|_| MailError::From(config.from.clone()))?;
        Ok(Mailer { app, config, from, transport })
    }

    /// Sends every recipient their mail; the first failure is the answer.
    pub(crate) async fn send_all(&self, d: &Delivery, subject: &Subject) -> Result<(), String> {
        let store = &self.app.store;
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
            let letter = compose(
                &d.event,
                subject.request.as_ref(),
                &subject.names,
                subject.account.as_deref(),
                &user.time_zone,
                &self.config.web_url,
            );
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

fn when(time_zone: &str, micros: i64) -> String {
    let zone = jiff::tz::TimeZone::get(time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
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
    time_zone: &str,
    web_url: &str,
) -> Letter {
    let web = web_url.trim_end_matches('/');
    if event == "test" {
        return Letter {
            subject: "Portcullis: test notification".into(),
            text: format!(
                "This is a test notification, sent because an administrator asked for one.\n\
                 Notifications reach you here; the web UI is at {web}/\n"
            ),
        };
    }
    let Some(r) = r else {
        let what = account.unwrap_or("an account");
        return Letter {
            subject: format!("Portcullis: a credential change of {what} failed"),
            text: format!(
                "The automatic credential change of {what} failed after its last attempt.\n\
                 The account's page (Administration, Assets, then the account) shows the error and lets you \
                 check or change the credential:\n{web}/admin/assets\n"
            ),
        };
    };
    let name = |n: &Option<String>| n.clone().unwrap_or_else(|| "?".into());
    let requester = name(&names.requester);
    let target = format!("{}@{}", name(&names.account), name(&names.asset));
    let window = format!("{} – {}", when(time_zone, r.start_at), when(time_zone, r.end_at));
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
        text: format!("{lead}\n\n{details}\n\nOpen the request: {link}\n\nTimes are in your time zone, {time_zone}.\n"),
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

#[cfg(test)]
mod tests {
    use portcullis_core::policy::AccessType;
    use portcullis_core::request::RequestState;
    use portcullis_store::{AccessRequest, RequestNames};

    use super::compose;

    fn request(emergency: bool) -> AccessRequest {
        AccessRequest {
            id: "r1".into(),
            batch_id: "b1".into(),
            requester_id: "u1".into(),
            account_id: "a1".into(),
            asset_id: "s1".into(),
            access_type: AccessType::Ssh,
            policy_id: "p1".into(),
            state: RequestState::PendingApproval,
            emergency,
            // 2025-12-01 08:00 UTC to 10:00 UTC.
            start_at: 1_764_576_000_000_000,
            end_at: 1_764_583_200_000_000,
            ticket: Some("CHG-1".into()),
            reason_code: Some("maintenance".into()),
            comment: Some("patch night".into()),
            current_level: 0,
            review_required: false,
            removed: false,
            created_at: 0,
            updated_at: 0,
            ended_by: None,
        }
    }

    fn names() -> RequestNames {
        RequestNames {
            requester: Some("alice".into()),
            account: Some("root".into()),
            asset: Some("web".into()),
            policy: Some("p".into()),
        }
    }

    #[test]
    fn an_approver_gets_the_details_in_their_zone_and_a_link() {
        let l =
            compose("pending_approval", Some(&request(false)), &names(), None, "Asia/Tokyo", "https://pam.example/");
        assert_eq!(l.subject, "Approval needed: root@web for alice");
        assert!(l.text.contains("2025-12-01 17:00 JST – 2025-12-01 19:00 JST"), "{}", l.text);
        assert!(l.text.contains("CHG-1") && l.text.contains("maintenance") && l.text.contains("patch night"));
        assert!(l.text.contains("https://pam.example/requests/r1") && l.text.contains("Asia/Tokyo"), "{}", l.text);
        let e = compose("pending_approval", Some(&request(true)), &names(), None, "UTC", "https://pam.example");
        assert!(e.subject.starts_with("EMERGENCY ACCESS: "), "{}", e.subject);
    }

    #[test]
    fn a_failed_change_points_to_the_assets_pages() {
        let l = compose(
            "credential_change_failed",
            None,
            &RequestNames::default(),
            Some("root"),
            "UTC",
            "https://pam.example",
        );
        assert!(l.subject.contains("credential change of root failed"), "{}", l.subject);
        assert!(l.text.contains("https://pam.example/admin/assets"), "{}", l.text);
    }
}
