//! Approving by e-mail reply: Portcullis's own inbound SMTP listener.
//!
//! Why a listener and not an IMAP mailbox: nothing to poll, no mailbox password to keep, and a
//! mail is refused or taken while its sender is still connected. The organisation's mail
//! server (which checks SPF, DKIM and DMARC) routes the reply domain to this port; the
//! listener takes mail only for the reply address tagged with a token
//! (`approvals+TOKEN@domain`), and everything it reads is bounded: connections, line length,
//! recipients, message size, and time.
//!
//! A reply counts only when: its token is known, unused and unexpired; the envelope sender and
//! the `From:` header are both the address of the approver the token was issued to; the
//! approver's own text (not the quoted original) starts with APPROVE or DISAPPROVE and does
//! not say both; and the request still waits at the level the token was issued for. The
//! decision is then taken through the same use case as the API, as that approver (their
//! current rights). Anything else is refused, audited (`request.mail_reply`), and explained by
//! mail to the approver the token belongs to (or, without a token, to the registered user the
//! mail claims to be from; never to a stranger).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_app::auth::Caller;
use portcullis_app::requests::Decision;
use portcullis_app::App;
use portcullis_core::request::RequestState;
use portcullis_store::{Actor, NewEvent, Outcome, User};
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::reply::{decision, own_text, token_hash, token_of};

/// The listener's settings.
#[derive(Debug, Clone)]
pub struct ReplyConfig {
    /// The address replies go to (`approvals@pam.example.com`); mails carry it tagged with
    /// their token.
    pub address: String,
    /// The largest mail taken, in bytes.
    pub max_bytes: usize,
    /// How long an approval mail's token can be answered, in hours.
    pub token_hours: i64,
}

/// Connections served at once; more are told to come back later.
const MAX_CONNECTIONS: usize = 32;
/// The longest command line (RFC 5321 allows 512; this is generous).
const MAX_COMMAND: usize = 1000;
/// The longest line of a mail kept whole.
const MAX_DATA_LINE: usize = 64 * 1024;
/// Recipients per mail.
const MAX_RECIPIENTS: usize = 5;
/// Waiting for one command or one line of a mail.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);
/// A whole connection.
const SESSION_TIMEOUT: Duration = Duration::from_secs(600);
/// What an oversized mail may send before the connection is closed instead of read to its end.
const DISCARD_LIMIT: usize = 64 * 1024 * 1024;

/// Why a reply did not count, as the approver is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable, for the audit log: `unknown_token`, `used_token`, `expired_token`,
    /// `forged_sender`, `unclear`, `decided`, `oversized`, `malformed`, `refused`.
    pub code: &'static str,
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// What the listener received in one mail transaction.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub sender: String,
    /// Tokens of the tagged reply addresses it was sent to.
    pub tokens: Vec<String>,
    pub peer: Option<SocketAddr>,
}

pub struct Inbound {
    app: App,
    config: ReplyConfig,
    hostname: String,
}

impl Inbound {
    pub fn new(app: App, config: ReplyConfig) -> Inbound {
        let hostname =
            config.address.rsplit_once('@').map(|(_, d)| d.to_owned()).unwrap_or_else(|| "portcullis".into());
        Inbound { app, config, hostname }
    }

    /// Serves until `stop` turns true.
    pub async fn run(self, listener: TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
        let me = Arc::new(self);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "mail reply listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                let mut stream = stream;
                let _ = stream.write_all(b"421 4.3.2 Too many connections; try again later\r\n").await;
                continue;
            };
            let me = me.clone();
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(SESSION_TIMEOUT, me.session(stream, peer)).await {
                    Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "mail reply connection ended"),
                    Err(_) => tracing::debug!(peer = %peer, "mail reply connection took too long; closed"),
                    Ok(Ok(())) => {}
                }
            });
        }
    }

    async fn session(&self, stream: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut line = Vec::new();
        let max = self.config.max_bytes;
        let host = &self.hostname;
        write.write_all(format!("220 {host} Portcullis ESMTP; replies to approval mails only\r\n").as_bytes()).await?;
        let mut greeted = false;
        let mut envelope: Option<Envelope> = None;
        loop {
            let (got, too_long) = read_line(&mut read, &mut line, MAX_COMMAND).await?;
            if !got {
                return Ok(());
            }
            if too_long {
                write.write_all(b"500 5.5.2 Line too long\r\n").await?;
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
            let answer: String = match verb.to_ascii_uppercase().as_str() {
                "EHLO" => {
                    greeted = true;
                    envelope = None;
                    format!("250-{host}\r\n250-SIZE {max}\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES")
                }
                "HELO" => {
                    greeted = true;
                    envelope = None;
                    format!("250 {host}")
                }
                "MAIL" if !greeted => "503 5.5.1 Say EHLO first".into(),
                "MAIL" => match parse_path(arg, "FROM:") {
                    None => "501 5.5.4 Write MAIL FROM:<address>".into(),
                    Some((sender, params)) => {
                        let size = params.split_whitespace().find_map(|p| {
                            let (k, v) = p.split_once('=')?;
                            k.eq_ignore_ascii_case("SIZE").then(|| v.parse::<usize>().ok()).flatten()
                        });
                        if size.is_some_and(|s| s > max) {
                            let env = Envelope { sender, tokens: Vec::new(), peer: Some(peer) };
                            self.refuse_with_from(&env, &[], &oversized(max)).await;
                            format!("552 5.3.4 Too big: replies are limited to {max} bytes")
                        } else {
                            envelope = Some(Envelope { sender, tokens: Vec::new(), peer: Some(peer) });
                            "250 2.1.0 OK".into()
                        }
                    }
                },
                "RCPT" => match (&mut envelope, parse_path(arg, "TO:")) {
                    (None, _) => "503 5.5.1 MAIL first".into(),
                    (_, None) => "501 5.5.4 Write RCPT TO:<address>".into(),
                    (Some(env), Some((to, _))) => match token_of(&to, &self.config.address) {
                        None => format!(
                            "550 5.1.1 <{}>: this server takes only replies to Portcullis approval mails",
                            to.chars().take(200).collect::<String>()
                        ),
                        Some(_) if env.tokens.len() >= MAX_RECIPIENTS => "452 4.5.3 Too many recipients".into(),
                        Some(token) => {
                            if !env.tokens.contains(&token) {
                                env.tokens.push(token);
                            }
                            "250 2.1.5 OK".into()
                        }
                    },
                },
                "DATA" => match envelope.take() {
                    Some(env) if !env.tokens.is_empty() => {
                        write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                        match read_data(&mut read, max).await? {
                            Data::Complete(mail) => {
                                let outcome = self.handle(&env, &mail).await;
                                tracing::info!(peer = %peer, outcome = %outcome.map(|_| "counted").unwrap_or_else(|r| r.code), "reply to an approval mail");
                                "250 2.0.0 Received; the approver is answered by mail".into()
                            }
                            Data::TooBig => {
                                self.refuse_by_token(&env, &oversized(max)).await;
                                format!("552 5.3.4 Too big: replies are limited to {max} bytes")
                            }
                            Data::Abandoned => {
                                self.refuse_by_token(&env, &oversized(max)).await;
                                write
                                    .write_all(
                                        format!("552 5.3.4 Too big: replies are limited to {max} bytes\r\n").as_bytes(),
                                    )
                                    .await?;
                                return Ok(());
                            }
                            Data::Eof => return Ok(()),
                        }
                    }
                    other => {
                        envelope = other;
                        "503 5.5.1 RCPT first".into()
                    }
                },
                "RSET" => {
                    envelope = None;
                    "250 2.0.0 OK".into()
                }
                "NOOP" => "250 2.0.0 OK".into(),
                "VRFY" => "252 2.5.0 Cannot verify".into(),
                "QUIT" => {
                    write.write_all(b"221 2.0.0 Bye\r\n").await?;
                    return Ok(());
                }
                _ => "502 5.5.2 Command not implemented".into(),
            };
            write.write_all(answer.as_bytes()).await?;
            write.write_all(b"\r\n").await?;
        }
    }

    /// Takes one received mail: counts its decision or refuses it (audited and answered).
    pub async fn handle(&self, env: &Envelope, raw: &[u8]) -> Result<(), Refusal> {
        match self.judge(env, raw).await {
            Ok(()) => Ok(()),
            Err((r, Whom::Approver(user, request_id))) => {
                self.refuse(env, Some(&Context { approver: &user, request_id: &request_id }), &r).await;
                Err(r)
            }
            Err((r, Whom::Claimed(from))) => {
                self.refuse_with_from(env, &from, &r).await;
                Err(r)
            }
            Err((r, Whom::Told)) => Err(r),
        }
    }

    async fn judge(&self, env: &Envelope, raw: &[u8]) -> Result<(), (Refusal, Whom)> {
        let store = &self.app.store;
        let now = self.app.now();
        let Some(mail) = mail_parser::MessageParser::default().parse(raw) else {
            return Err((refused("malformed", "the mail could not be read as a mail"), Whom::Claimed(Vec::new())));
        };
        let from: Vec<String> =
            mail.from().map(|a| a.iter().filter_map(|a| a.address().map(str::to_owned)).collect()).unwrap_or_default();
        let [token] = env.tokens.as_slice() else {
            let r = refused(
                "unclear",
                "the reply was sent to several approval addresses; answer each approval mail on its own",
            );
            return Err((r, Whom::Claimed(from)));
        };
        let hash = token_hash(token);
        let record = match store.mail_token(&hash).await {
            Ok(Some(t)) if t.kind == "reply" => t,
            Ok(_) => {
                let r = refused("unknown_token", "the address the reply was sent to is not one Portcullis gave out");
                return Err((r, Whom::Claimed(from)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a mail reply's token");
                return Err((
                    refused("refused", "Portcullis could not read its records; reply again later"),
                    Whom::Told,
                ));
            }
        };
        let Ok(approver) = store.user(&record.user_id).await else {
            return Err((
                refused("refused", "the approver this mail was sent to no longer exists"),
                Whom::Claimed(from),
            ));
        };
        let fail = |code, message: String| {
            Err((refused(code, message), Whom::Approver(Box::new(approver.clone()), record.request_id.clone())))
        };
        if record.used_at.is_some() {
            return fail("used_token", "this approval mail was already answered; each can be answered once".into());
        }
        if record.expires_at <= now {
            return fail("expired_token", "this approval mail is too old to answer; decide in the web UI".into());
        }
        let address = approver.email.clone().unwrap_or_default();
        let same = |a: &str| !address.is_empty() && a.trim().eq_ignore_ascii_case(address.trim());
        if !same(&env.sender) || from.len() != 1 || !same(&from[0]) {
            return fail(
                "forged_sender",
                format!(
                    "the reply did not come from the approver's address {} (sender {}, From: {})",
                    shown(&address),
                    shown(&env.sender),
                    shown(&from.join(", "))
                ),
            );
        }
        let body = mail.body_text(0).map(|b| b.into_owned()).unwrap_or_default();
        let (approve, comment) = match decision(&own_text(&body)) {
            Ok(d) => d,
            Err(u) => return fail("unclear", u.explain().into()),
        };
        let waiting = store
            .request(&record.request_id)
            .await
            .is_ok_and(|r| r.state == RequestState::PendingApproval && r.current_level == record.level);
        if !waiting {
            return fail(
                "decided",
                "the request was decided (or moved to another approval level) since this mail was sent".into(),
            );
        }
        if !store.use_mail_token(&hash, now).await.unwrap_or(false) {
            return fail("used_token", "this approval mail was already answered; each can be answered once".into());
        }
        let comment = comment.map(|c| c.chars().take(portcullis_app::requests::COMMENT_MAX).collect::<String>());
        let caller =
            Caller { user: approver.clone(), token_hash: String::new(), api_token_id: None, source: source(env) };
        let d = Decision { approve, comment: comment.clone(), ..Default::default() };
        let id = &record.request_id;
        if let Err(e) = portcullis_app::requests::decide(&self.app, &caller, id, d).await {
            // The use case audited its refusal; the approver is told.
            self.answer(&approver.id, id, "mail_reply_refused", json!({ "reason": e.message })).await;
            return Err((refused("refused", e.message), Whom::Told));
        }
        let word = if approve { "approval" } else { "disapproval" };
        self.answer(&approver.id, id, "mail_reply_counted", json!({ "decision": word, "comment": comment })).await;
        Ok(())
    }

    /// A refusal of a mail not read (too big): answered to the approver of its token, if it
    /// names one that exists, else as [`Inbound::refuse_with_from`].
    async fn refuse_by_token(&self, env: &Envelope, r: &Refusal) {
        if let [token] = env.tokens.as_slice() {
            if let Ok(Some(record)) =
                self.app.store.mail_token(&token_hash(token)).await.map(|t| t.filter(|t| t.kind == "reply"))
            {
                if let Ok(user) = self.app.store.user(&record.user_id).await {
                    let ctx = Context { approver: &user, request_id: &record.request_id };
                    return self.refuse(env, Some(&ctx), r).await;
                }
            }
        }
        self.refuse_with_from(env, &[], r).await
    }

    /// A refusal without a token's approver: answered to the registered user the mail claims
    /// to be from, if there is exactly one.
    async fn refuse_with_from(&self, env: &Envelope, from: &[String], r: &Refusal) {
        let mut claimed = None;
        if let Some(address) = from.first().or(Some(&env.sender)).filter(|a| !a.is_empty()) {
            if let Ok(mut users) = self.app.store.users_by_email(address).await {
                if users.len() == 1 {
                    claimed = users.pop();
                }
            }
        }
        match claimed {
            Some(user) => self.refuse(env, Some(&Context { approver: &user, request_id: "" }), r).await,
            None => self.refuse(env, None, r).await,
        }
    }

    /// Audits a refused reply and explains it by mail to the approver concerned.
    async fn refuse(&self, env: &Envelope, ctx: Option<&Context<'_>>, r: &Refusal) {
        let actor = match ctx {
            Some(c) => Actor { id: c.approver.id.clone(), name: c.approver.username.clone(), source: source(env) },
            None => Actor { id: String::new(), name: "mail".into(), source: source(env) },
        };
        let (object_type, object_id) = match ctx {
            Some(c) if !c.request_id.is_empty() => ("request", c.request_id.to_owned()),
            _ => ("mail", String::new()),
        };
        let event = NewEvent::success("request.mail_reply", object_type, object_id)
            .with_outcome(Outcome::Denied)
            .with_details(json!({ "code": r.code, "reason": r.message, "sender": shown(&env.sender) }));
        if let Err(e) = self.app.store.record(&actor, self.app.now(), event).await {
            tracing::error!(error = %e, "could not audit a refused mail reply");
        }
        if let Some(c) = ctx {
            self.answer(&c.approver.id, c.request_id, "mail_reply_refused", json!({ "reason": r.message })).await;
        }
    }

    async fn answer(&self, user_id: &str, request_id: &str, event: &str, details: serde_json::Value) {
        let recipients = [user_id.to_owned()];
        if let Err(e) = self.app.store.notify_with(self.app.now(), event, request_id, &recipients, Some(&details)).await
        {
            tracing::warn!(error = %e, "cannot queue the answer to a mail reply");
        }
    }
}

/// Who hears of a refused reply.
enum Whom {
    /// The approver the reply's token was sent to (whoever sent the reply).
    Approver(Box<User>, String),
    /// The registered user the mail claims to be from, if exactly one.
    Claimed(Vec<String>),
    /// Already told (or nobody can be).
    Told,
}

struct Context<'a> {
    approver: &'a User,
    request_id: &'a str,
}

fn oversized(max: usize) -> Refusal {
    refused("oversized", format!("the reply was larger than {max} bytes; send it without attachments"))
}

/// The audit source of a mail: where it came from.
fn source(env: &Envelope) -> String {
    match env.peer {
        Some(p) => format!("mail via {}", p.ip()),
        None => "mail".into(),
    }
}

/// An address as shown in messages: bounded, printable.
fn shown(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
    if s.is_empty() {
        "(none)".into()
    } else {
        s
    }
}

/// `FROM:<a@b> PARAMS` → (`a@b`, `PARAMS`).
fn parse_path(arg: &str, keyword: &str) -> Option<(String, String)> {
    let arg = arg.trim_start();
    if arg.len() < keyword.len() || !arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let (path, params) = rest.split_once('>')?;
    Some((path.trim().to_owned(), params.trim().to_owned()))
}

/// Reads one line (up to `\n`) into `out`, keeping at most `max` bytes of it. Returns whether
/// a line was read (false: the peer closed) and whether it was longer than `max`.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, out: &mut Vec<u8>, max: usize) -> std::io::Result<(bool, bool)> {
    out.clear();
    let mut too_long = false;
    loop {
        let buf = tokio::time::timeout(LINE_TIMEOUT, r.fill_buf())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no line in time"))??;
        if buf.is_empty() {
            return Ok((!out.is_empty(), too_long));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = max.saturating_sub(out.len());
        if take > room {
            too_long = true;
        }
        out.extend_from_slice(&buf[..take.min(room)]);
        r.consume(take);
        if done {
            return Ok((true, too_long));
        }
    }
}

enum Data {
    Complete(Vec<u8>),
    /// Larger than allowed, read to its end.
    TooBig,
    /// Far larger than allowed: not read to its end.
    Abandoned,
    Eof,
}

/// Reads a mail after DATA up to the lone dot, undoing dot-stuffing, keeping at most `max`
/// bytes.
async fn read_data<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Data> {
    let mut mail = Vec::new();
    let mut line = Vec::new();
    let mut seen = 0usize;
    let mut too_big = false;
    loop {
        let (got, long) = read_line(r, &mut line, MAX_DATA_LINE).await?;
        if !got {
            return Ok(Data::Eof);
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(if too_big { Data::TooBig } else { Data::Complete(mail) });
        }
        seen += line.len();
        if long || seen > max {
            too_big = true;
            mail = Vec::new();
            if seen > DISCARD_LIMIT {
                return Ok(Data::Abandoned);
            }
            continue;
        }
        let l = if line.first() == Some(&b'.') { &line[1..] } else { &line[..] };
        mail.extend_from_slice(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(parse_path("FROM:<bob@x.test> SIZE=10", "FROM:"), Some(("bob@x.test".into(), "SIZE=10".into())));
        assert_eq!(parse_path("from: <>", "FROM:"), Some((String::new(), String::new())));
        assert_eq!(parse_path("TO:bob@x.test", "TO:"), None);
        assert_eq!(parse_path("", "FROM:"), None);
    }

    #[tokio::test]
    async fn a_mail_is_read_to_its_dot_and_bounded() {
        let mut r = BufReader::new(&b"Subject: x\r\n\r\n..APPROVE\r\n.\r\nQUIT\r\n"[..]);
        match read_data(&mut r, 1000).await.unwrap() {
            Data::Complete(m) => assert_eq!(m, b"Subject: x\r\n\r\n.APPROVE\r\n"),
            _ => panic!("not complete"),
        }
        let big = format!("{}\r\n.\r\n", "a".repeat(5000));
        let mut r = BufReader::new(big.as_bytes());
        assert!(matches!(read_data(&mut r, 1000).await.unwrap(), Data::TooBig));
        let mut r = BufReader::new(&b"no end"[..]);
        assert!(matches!(read_data(&mut r, 1000).await.unwrap(), Data::Eof));
        let mut line = Vec::new();
        let mut r = BufReader::new(&b"EHLO aaaaaaaaaa\r\nNOOP\r\n"[..]);
        assert_eq!(read_line(&mut r, &mut line, 5).await.unwrap(), (true, true));
        assert_eq!(read_line(&mut r, &mut line, 50).await.unwrap(), (true, false));
        assert_eq!(line, b"NOOP\r\n");
    }
}
