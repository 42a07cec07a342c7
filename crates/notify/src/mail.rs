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
    /// Answering approval mails by reply (the inbound listener's address); none: approvers
    /// decide in the web UI (the mail's personal link).
    pub reply: Option<crate::inbound::ReplyConfig>,
    /// How long an approval mail's reply and link tokens hold, in hours.
    pub token_hours: i64,
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
            // An approver's mail for a request waiting at a level carries their personal link
            // and reply address.
            let mut approval = None;
            if let (Some(r), "pending_approval") = (&subject.request, d.event.as_str()) {
                let tokens = portcullis_app::approval_mail::issue(
                    &self.app,
                    &r.id,
                    r.current_level,
                    &user.id,
                    self.config.token_hours,
                )
                .await
                .map_err(|e| format!("cannot issue the approval mail's tokens: {}", e.message))?;
                approval = Some(Approval {
                    link_token: tokens.link,
                    reply_to: self.config.reply.as_ref().map(|c| crate::reply::tagged(&c.address, &tokens.reply)),
                });
            }
            // A set-password mail carries a new link, made now: it exists only in this mail.
            let mut reset_link = None;
            if d.event == "password_reset" {
                let token = portcullis_app::password_reset::issue_link(&self.app, &user.id)
                    .await
                    .map_err(|e| format!("cannot issue the set-password link: {}", e.message))?;
                reset_link = Some(token);
            }
            let facts = Facts {
                reset_token: reset_link.as_deref().map(String::as_str),
                request: subject.request.as_ref(),
                names: &subject.names,
                account: subject.account.as_deref(),
                time_zone: &user.time_zone,
                web_url: &self.config.web_url,
                details: d.details.as_ref(),
                approval: approval.as_ref(),
            };
            let letter = compose(&d.event, &facts);
            let html = html_of(&letter);
            let mut message = Message::builder().from(self.from.clone()).to(to);
            if let Some(reply_to) = approval.as_ref().and_then(|a| a.reply_to.as_deref()) {
                let mailbox: Mailbox =
                    reply_to.parse().map_err(|_| format!("the reply address {reply_to} is not valid"))?;
                message = message.reply_to(mailbox);
            }
            let message = message
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

/// What an approval mail offers its approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Their personal link token for the web UI's approval page.
    pub link_token: String,
    /// The address their reply goes to (tagged with the reply token), if replies are on.
    pub reply_to: Option<String>,
}

/// What a mail is composed from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub request: Option<&'a AccessRequest>,
    pub names: &'a portcullis_store::RequestNames,
    /// The account's name (credential change notifications).
    pub account: Option<&'a str>,
    /// The recipient's.
    pub time_zone: &'a str,
    pub web_url: &'a str,
    /// The notification's details (why a mailed reply was refused …).
    pub details: Option<&'a serde_json::Value>,
    pub approval: Option<&'a Approval>,
    /// A set-password link's token (password resets and invitations).
    pub reset_token: Option<&'a str>,
}

/// The mail one recipient gets for one notification. Pure: what the request holds, named.
pub fn compose(event: &str, f: &Facts<'_>) -> Letter {
    let web = f.web_url.trim_end_matches('/');
    let time_zone = f.time_zone;
    let detail = |k: &str| f.details.and_then(|d| d.get(k)).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    if event == "test" {
        return Letter {
            subject: "Portcullis: test notification".into(),
            text: format!(
                "This is a test notification, sent because an administrator asked for one.\n\
                 Notifications reach you here; the web UI is at {web}/\n"
            ),
        };
    }
    if event == "password_reset" {
        let by = detail("by");
        let link = format!("{web}/set-password/{}", f.reset_token.unwrap_or_default());
        let hours = f.details.and_then(|d| d.get("link_hours")).and_then(|v| v.as_i64()).unwrap_or(24);
        let invitation = f.details.and_then(|d| d.get("invitation")).and_then(|v| v.as_bool()).unwrap_or(false);
        return if invitation {
            Letter {
                subject: "Portcullis: set your password".into(),
                text: format!(
                    "{by} created a Portcullis account for you (user name: {}).\n\n\
                     Choose your password here (the link works once, for {hours} hours):\n{link}\n\n\
                     Then sign in at {web}/\n",
                    detail("username")
                ),
            }
        } else {
            Letter {
                subject: "Portcullis: your password was reset".into(),
                text: format!(
                    "{by}, a User Administrator, reset the Portcullis password of {}. Your old password no longer \
                     works, and your sessions and API tokens were ended.\n\n\
                     Choose a new password here (the link works once, for {hours} hours):\n{link}\n\n\
                     If you did not ask for this, tell your security team: an administrator's reset is audited.\n",
                    detail("username")
                ),
            }
        };
    }
    if event == "session_alert" {
        let session = detail("session_id");
        let ended = detail("action") == "terminate";
        return Letter {
            subject: format!(
                "Portcullis alert: {} {} in a session of {} on {}",
                detail("rule"),
                if ended { "ended" } else { "matched" },
                detail("user"),
                detail("target")
            ),
            text: format!(
                "The content rule '{}' of the connection policy '{}' matched the {} of {}'s session on {}:\n\n  {}\n\n{}\
                 Watch the session live or replay it:\n{web}/sessions/{session}/watch\n",
                detail("rule"),
                detail("connection_policy"),
                match detail("on").as_str() {
                    "command" => "typed command",
                    "file" => "file transfer",
                    _ => "output",
                },
                detail("user"),
                detail("target"),
                detail("text"),
                if ended { "The session was ended and the user told why.\n" } else { "" }
            ),
        };
    }
    if event == "credential_change_failed" || (f.request.is_none() && !event.starts_with("mail_reply")) {
        let what = f.account.unwrap_or("an account");
        return Letter {
            subject: format!("Portcullis: a credential change of {what} failed"),
            text: format!(
                "The automatic credential change of {what} failed after its last attempt.\n\
                 The account's page (Administration, Assets, then the account) shows the error and lets you \
                 check or change the credential:\n{web}/admin/assets\n"
            ),
        };
    }
    let Some(r) = f.request else {
        return Letter {
            subject: "Not counted: your reply to Portcullis".into(),
            text: format!(
                "Your mail to Portcullis was not counted: {}.\n\nNothing was decided. The requests waiting for \
                 you are under Approvals:\n{web}/approvals\n",
                detail("reason")
            ),
        };
    };
    let names = f.names;
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
    if event == "mail_reply_refused" {
        return Letter {
            subject: format!("Not counted: your reply about {target} for {requester}"),
            text: format!(
                "Your reply was not counted: {}.\n\nNothing was decided by it.\n\n{details}\n\n\
                 Open the request to decide there: {link}\n\nTimes are in your time zone, {time_zone}.\n",
                detail("reason")
            ),
        };
    }
    if event == "mail_reply_counted" {
        let comment = detail("comment");
        let comment = if comment.is_empty() { String::new() } else { format!("Your comment: {comment}\n") };
        return Letter {
            subject: format!("Recorded: your {} of {target} for {requester}", detail("decision")),
            text: format!(
                "Your reply was counted as your {} of this request.\n{comment}\n{details}\n\n\
                 Open the request: {link}\n\nTimes are in your time zone, {time_zone}.\n",
                detail("decision")
            ),
        };
    }
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
    let (top, decide) = match f.approval {
        Some(a) => {
            let mut decide = format!("Decide (you will be asked to sign in): {web}/approve/{}\n", a.link_token);
            let mut top = String::new();
            if a.reply_to.is_some() {
                top = format!("{}\n\n", crate::reply::MARKER);
                decide += "Or reply to this mail with APPROVE or DISAPPROVE as the first word; a comment may follow.\n";
            }
            (top, decide)
        }
        None => (String::new(), format!("Open the request: {link}\n")),
    };
    Letter {
        subject,
        text: format!("{top}{lead}\n\n{details}\n\n{decide}\nTimes are in your time zone, {time_zone}.\n"),
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

/// The address of a mailbox (`Name <user@host>` → `user@host`).
pub fn address_of(mailbox: &str) -> Option<String> {
    mailbox.parse::<Mailbox>().ok().map(|m| m.email.to_string())
}

/// Whether `s` is a bare address with no `+` tag (one that can be tagged with a token).
pub fn plain_address(s: &str) -> bool {
    s.parse::<lettre::Address>().is_ok() && !s.contains('+') && !s.contains('<')
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

    use super::{compose, Approval, Facts};

    fn facts<'a>(r: Option<&'a AccessRequest>, n: &'a RequestNames, zone: &'a str) -> Facts<'a> {
        Facts {
            request: r,
            names: n,
            account: None,
            time_zone: zone,
            web_url: "https://pam.example/",
            details: None,
            approval: None,
            reset_token: None,
        }
    }

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
        let (r, n) = (request(false), names());
        let l = compose("pending_approval", &facts(Some(&r), &n, "Asia/Tokyo"));
        assert_eq!(l.subject, "Approval needed: root@web for alice");
        assert!(l.text.contains("2025-12-01 17:00 JST – 2025-12-01 19:00 JST"), "{}", l.text);
        assert!(l.text.contains("CHG-1") && l.text.contains("maintenance") && l.text.contains("patch night"));
        assert!(l.text.contains("https://pam.example/requests/r1") && l.text.contains("Asia/Tokyo"), "{}", l.text);
        let e = request(true);
        let e = compose("pending_approval", &facts(Some(&e), &n, "UTC"));
        assert!(e.subject.starts_with("EMERGENCY ACCESS: "), "{}", e.subject);
        // With replies on: the marker first, the personal link, how to reply.
        let approval = Approval { link_token: "tok".into(), reply_to: Some("approvals+x@pam.example".into()) };
        let l = compose("pending_approval", &Facts { approval: Some(&approval), ..facts(Some(&r), &n, "UTC") });
        assert!(l.text.starts_with(crate::reply::MARKER), "{}", l.text);
        assert!(
            l.text.contains("https://pam.example/approve/tok") && l.text.contains("reply to this mail with APPROVE")
        );
    }

    #[test]
    fn a_replying_approver_is_told_what_counted_and_why_not() {
        let (r, n) = (request(false), names());
        let why = serde_json::json!({ "reason": "the reply did not come from the approver's address" });
        let l = compose("mail_reply_refused", &Facts { details: Some(&why), ..facts(Some(&r), &n, "UTC") });
        assert_eq!(l.subject, "Not counted: your reply about root@web for alice");
        assert!(l.text.contains("not counted: the reply did not come from") && l.text.contains("/requests/r1"));
        let l = compose("mail_reply_refused", &Facts { details: Some(&why), ..facts(None, &n, "UTC") });
        assert!(l.text.contains("/approvals") && l.text.contains("not counted"), "{}", l.text);
        let ok = serde_json::json!({ "decision": "approval", "comment": "go ahead" });
        let l = compose("mail_reply_counted", &Facts { details: Some(&ok), ..facts(Some(&r), &n, "UTC") });
        assert_eq!(l.subject, "Recorded: your approval of root@web for alice");
        assert!(l.text.contains("Your comment: go ahead"), "{}", l.text);
    }

    #[test]
    fn a_content_alert_says_what_matched_and_where_to_watch() {
        let n = RequestNames::default();
        let d = serde_json::json!({ "session_id": "s1", "rule": "wipe", "connection_policy": "lab", "on": "command",
            "action": "terminate", "text": "rm -rf /", "user": "alice", "target": "root@db1" });
        let l = compose("session_alert", &Facts { details: Some(&d), ..facts(None, &n, "UTC") });
        assert_eq!(l.subject, "Portcullis alert: wipe ended in a session of alice on root@db1");
        assert!(l.text.contains("typed command") && l.text.contains("rm -rf /"), "{}", l.text);
        assert!(l.text.contains("https://pam.example/sessions/s1/watch"), "{}", l.text);
    }

    #[test]
    fn a_failed_change_points_to_the_assets_pages() {
        let n = RequestNames::default();
        let l = compose("credential_change_failed", &Facts { account: Some("root"), ..facts(None, &n, "UTC") });
        assert!(l.subject.contains("credential change of root failed"), "{}", l.subject);
        assert!(l.text.contains("https://pam.example/admin/assets"), "{}", l.text);
    }

    #[test]
    fn a_reset_mail_carries_the_link_and_who_reset() {
        let n = RequestNames::default();
        let d = serde_json::json!({ "username": "bob", "by": "carol", "link_hours": 24, "invitation": false });
        let f = Facts { details: Some(&d), reset_token: Some("abc"), ..facts(None, &n, "UTC") };
        let l = compose("password_reset", &f);
        assert!(l.subject.contains("your password was reset"), "{}", l.subject);
        assert!(
            l.text.contains("carol, a User Administrator") && l.text.contains("https://pam.example/set-password/abc")
        );
        let d = serde_json::json!({ "username": "bob", "by": "carol", "link_hours": 24, "invitation": true });
        let l = compose("password_reset", &Facts { details: Some(&d), ..f });
        assert!(l.subject.contains("set your password") && l.text.contains("user name: bob"), "{}", l.text);
    }
}
