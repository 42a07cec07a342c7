//! Webhooks: each notification POSTed as a JSON document, signed with HMAC-SHA256 over the
//! timestamp and the body (`X-Portcullis-Signature: sha256=HEX`, `X-Portcullis-Timestamp`),
//! with the notification's id for de-duplication (`X-Portcullis-Delivery`); or, as an option,
//! a Slack-compatible message (`{"text": …}`). A 2xx answer is delivery; anything else is
//! retried by the [`crate::notifier`].

use std::time::Duration;

use hmac::{Hmac, Mac};
use portcullis_app::App;
use portcullis_store::Delivery;
use serde_json::json;
use sha2::Sha256;

use crate::mail::compose;
use crate::notifier::Subject;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookFormat {
    /// The notification as a JSON document.
    Json,
    /// `{"text": …}`, for Slack and compatible chat incoming webhooks.
    Slack,
}

impl std::str::FromStr for HookFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<HookFormat, String> {
        match s {
            "json" => Ok(HookFormat::Json),
            "slack" => Ok(HookFormat::Slack),
            other => Err(format!("'{other}' is not a webhook format; use json or slack")),
        }
    }
}

#[derive(Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// The HMAC key receivers verify the signature with.
    pub secret: zeroize::Zeroizing<String>,
    pub format: HookFormat,
    /// The web UI's address (links in the document).
    pub web_url: String,
}

pub struct Webhook {
    app: App,
    config: WebhookConfig,
    client: reqwest::Client,
}

/// `sha256=HEX` of HMAC-SHA256(secret, "TIMESTAMP.BODY").
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn rfc3339(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_default()
}

impl Webhook {
    pub fn new(app: App, config: WebhookConfig) -> Result<Webhook, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        Ok(Webhook { app, config, client })
    }

    pub(crate) async fn send(&self, d: &Delivery, subject: &Subject) -> Result<(), String> {
        // Answers to an approver's mailed reply, and set-password links, are for one mailbox
        // only (a reset is audited, and so reaches the SIEM).
        if d.event.starts_with("mail_reply") || d.event == "password_reset" {
            return Ok(());
        }
        let web = self.config.web_url.trim_end_matches('/');
        let recipients = self
            .app
            .store
            .names_for(portcullis_store::Named::User, &d.recipients)
            .await
            .map(|names| {
                d.recipients.iter().map(|r| names.get(r).cloned().unwrap_or_else(|| r.clone())).collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let facts = crate::mail::Facts {
            request: subject.request.as_ref(),
            names: &subject.names,
            account: subject.account.as_deref(),
            time_zone: "UTC",
            web_url: web,
            details: None,
            approval: None,
            reset_token: None,
        };
        let letter = compose(&d.event, &facts);
        let body = match self.config.format {
            HookFormat::Slack => json!({ "text": format!("{}\n{}", letter.subject, letter.text) }),
            HookFormat::Json => {
                let request = subject.request.as_ref().map(|r| {
                    json!({
                        "id": r.id, "state": r.state.as_str(), "access_type": r.access_type.as_str(),
                        "account": subject.names.account, "asset": subject.names.asset,
                        "requester": subject.names.requester, "policy": subject.names.policy,
                        "start_at": rfc3339(r.start_at), "end_at": rfc3339(r.end_at),
                        "ticket": r.ticket, "reason_code": r.reason_code, "comment": r.comment,
                        "emergency": r.emergency, "link": format!("{web}/requests/{}", r.id),
                    })
                });
                json!({
                    "id": d.id, "event": d.event, "created_at": rfc3339(d.created_at), "subject": letter.subject,
                    "recipients": recipients, "request": request, "account": subject.account,
                })
            }
        }
        .to_string();
        let timestamp = jiff::Timestamp::now().as_second();
        let signature = sign(self.config.secret.as_bytes(), timestamp, body.as_bytes());
        let answer = self
            .client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("x-portcullis-delivery", &d.id)
            .header("x-portcullis-event", &d.event)
            .header("x-portcullis-timestamp", timestamp.to_string())
            .header("x-portcullis-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("webhook: {}", e.without_url()))?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook: the receiver answered {}", answer.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // The expected value computed independently, with Python's hmac module.
        assert_eq!(sign(b"key", 1, b"{}"), "sha256=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224");
        assert_ne!(sign(b"key", 2, b"{}"), sign(b"key", 1, b"{}"));
        assert_ne!(sign(b"other", 1, b"{}"), sign(b"key", 1, b"{}"));
    }
}
