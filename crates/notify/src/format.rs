//! Audit events as syslog messages: RFC 5424 with the event in structured data and as JSON,
//! or ArcSight CEF carried in the same RFC 5424 frame. Pure functions.

use portcullis_store::AuditEvent;
use serde_json::json;

/// How an event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 5424: `[portcullis@32473 seq=… …]` and the event as JSON.
    Rfc5424,
    /// CEF 0 inside the RFC 5424 frame.
    Cef,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "rfc5424" => Ok(Format::Rfc5424),
            "cef" => Ok(Format::Cef),
            other => Err(format!("'{other}' is not a syslog format; use rfc5424 or cef")),
        }
    }
}

/// Who writes: the HOSTNAME and APP-NAME fields, and the process id.
#[derive(Debug, Clone)]
pub struct Origin {
    pub hostname: String,
    pub app_name: String,
    pub procid: u32,
}

impl Origin {
    /// This machine and process.
    pub fn here(app_name: &str) -> Origin {
        let hostname =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        Origin { hostname, app_name: app_name.to_owned(), procid: std::process::id() }
    }
}

/// The private enterprise number in the structured data's name. 32473 is the number RFC 5612
/// sets aside for documentation and examples; a deployment with its own may change it.
const SD_ID: &str = "portcullis@32473";
/// Syslog facility 13: log audit.
const FACILITY: u8 = 13;

/// A field of the syslog header: printable US-ASCII without spaces, at most `max`, or `-`.
fn header_field(s: &str, max: usize) -> String {
    let clean: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

/// A structured-data parameter value: `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn sd_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A CEF header field: `\` and `|` escaped.
fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

/// A CEF extension value: `\` and `=` escaped, line breaks as `\n`/`\r`.
fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('=', "\\=").replace('\n', "\\n").replace('\r', "\\r")
}

fn severity(outcome: &str) -> u8 {
    // informational for successes, warning for failures and refusals.
    if outcome == "success" {
        6
    } else {
        4
    }
}

fn timestamp(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_else(|_| "-".into())
}

/// One event as a syslog message (without transport framing).
pub fn message(e: &AuditEvent, origin: &Origin, format: Format) -> String {
    let pri = FACILITY * 8 + severity(&e.outcome);
    let header = format!(
        "<{pri}>1 {} {} {} {} {}",
        timestamp(e.at),
        header_field(&origin.hostname, 255),
        header_field(&origin.app_name, 48),
        origin.procid,
        header_field(&e.action, 32),
    );
    let sd = format!(
        "[{SD_ID} seq=\"{}\" actor=\"{}\" actor_id=\"{}\" object_type=\"{}\" object_id=\"{}\" source=\"{}\" outcome=\"{}\" link=\"{}\"]",
        e.seq,
        sd_value(&e.actor_name),
        sd_value(&e.actor_id),
        sd_value(&e.object_type),
        sd_value(&e.object_id),
        sd_value(&e.source),
        sd_value(&e.outcome),
        sd_value(&e.link),
    );
    let details: serde_json::Value = serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null);
    let body = match format {
        Format::Rfc5424 => json!({
            "seq": e.seq, "at": timestamp(e.at), "actor": e.actor_name, "actor_id": e.actor_id,
            "action": e.action, "object_type": e.object_type, "object_id": e.object_id,
            "source": e.source, "outcome": e.outcome, "details": details,
        })
        .to_string(),
        Format::Cef => {
            let cef_severity = if e.outcome == "success" { 3 } else { 7 };
            format!(
                "CEF:0|Portcullis|Portcullis|{}|{}|{}|{cef_severity}|rt={} suser={} suid={} outcome={} externalId={} \
                 cs1Label=objectType cs1={} cs2Label=objectId cs2={} cs3Label=source cs3={} msg={}",
                cef_header(env!("CARGO_PKG_VERSION")),
                cef_header(&e.action),
                cef_header(&e.action),
                e.at / 1000,
                cef_value(&e.actor_name),
                cef_value(&e.actor_id),
                cef_value(&e.outcome),
                e.seq,
                cef_value(&e.object_type),
                cef_value(&e.object_id),
                cef_value(&e.source),
                cef_value(&details.to_string()),
            )
        }
    };
    format!("{header} {sd} {body}")
}

/// A message framed for TCP and TLS by octet counting (RFC 6587 §3.4.1): `LEN SP MSG`.
pub fn octet_counted(msg: &str) -> String {
    format!("{} {msg}", msg.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(outcome: &str, details: &str) -> AuditEvent {
        AuditEvent {
            seq: 42,
            at: 1_764_385_200_123_456,
            actor_id: "u1".into(),
            actor_name: "ali\"ce]".into(),
            action: "request.approve".into(),
            object_type: "request".into(),
            object_id: "r1".into(),
            source: "192.0.2.7".into(),
            outcome: outcome.into(),
            details: details.into(),
            prev_link: String::new(),
            link: "abc".into(),
        }
    }

    fn origin() -> Origin {
        Origin { hostname: "pam 1".into(), app_name: "portcullis".into(), procid: 7 }
    }

    #[test]
    fn rfc5424_has_the_header_the_structured_data_and_the_event() {
        let m = message(&event("success", r#"{"comment":"ok"}"#), &origin(), Format::Rfc5424);
        assert!(m.starts_with("<110>1 2025-11-29T03:00:00.123456Z pam1 portcullis 7 request.approve [portcullis@32473 seq=\"42\" actor=\"ali\\\"ce\\]\""), "{m}");
        let json_part = &m[m.find("] {").unwrap() + 2..];
        let v: serde_json::Value = serde_json::from_str(json_part).unwrap();
        assert_eq!(v["details"]["comment"], "ok");
        assert_eq!(v["seq"], 42);
    }

    #[test]
    fn refusals_are_warnings_and_cef_escapes() {
        let m = message(&event("denied", r#"{"why":"a=b|c"}"#), &origin(), Format::Cef);
        assert!(m.starts_with("<108>1 "), "{m}");
        assert!(m.contains("CEF:0|Portcullis|Portcullis|"), "{m}");
        assert!(m.contains("suser=ali\"ce]") && m.contains("externalId=42") && m.contains("a\\=b|c"), "{m}");
    }

    #[test]
    fn octet_counting_counts_bytes() {
        assert_eq!(octet_counted("é"), "2 é");
    }
}
