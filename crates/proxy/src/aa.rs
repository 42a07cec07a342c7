//! The AA plugin (R-SES-4): an external authentication and authorization step a connection
//! policy may name, consulted after the Portcullis sign-in and the connection policy, before
//! the request check. A plugin is configured on the server (`[aa_plugins.NAME]`): a program
//! that reads one JSON document on its standard input and writes one on its standard output,
//! or an HTTPS webhook that answers a JSON POST with JSON. Each call has a time limit; a
//! plugin that times out, fails, or answers anything but a valid document refuses the
//! connection (fail closed).
//!
//! The plugin allows (optionally mapping the connection to another account of the asset:
//! usermapping, which the connection policy must allow), denies with a reason, or asks the
//! client questions (a ticket number, a code): the proxy asks them (SSH: keyboard-interactive;
//! Telnet: prompts) and calls again with the answers, at most [`MAX_ROUNDS`] times. The
//! answers and the plugin's metadata go into the session's recording metadata and the audit
//! (answers to questions asked without echo are masked).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Calls of one plugin for one connection (the first, then one per round of questions).
pub const MAX_ROUNDS: u32 = 3;
/// Questions in one round.
const MAX_QUESTIONS: usize = 5;
/// The largest answer a plugin may give, in bytes.
const MAX_REPLY: usize = 64 * 1024;
const MAX_PROMPT: usize = 200;

/// How a plugin is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AaTransport {
    /// A program and its arguments (no shell).
    Command(Vec<String>),
    /// An `https://` URL (`http://` only to a loopback address).
    Webhook(String),
}

/// One configured plugin.
#[derive(Debug, Clone)]
pub struct AaPlugin {
    pub transport: AaTransport,
    pub timeout: Duration,
}

/// The server's plugins by name.
pub type AaPlugins = HashMap<String, AaPlugin>;

/// A question for the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The answer's name in the next call's `answers`.
    pub key: String,
    pub prompt: String,
    /// Whether the answer is shown as typed (false: like a password).
    #[serde(default = "yes")]
    pub echo: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    verdict: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    questions: Vec<Question>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// What the connection is, as the plugin is told.
#[derive(Debug, Serialize)]
pub(crate) struct Facts<'a> {
    pub protocol: &'a str,
    pub user: &'a str,
    pub user_id: &'a str,
    pub client: &'a str,
    pub account: &'a str,
    pub asset: &'a str,
    pub connection_policy: &'a str,
}

/// Where a conversation with a plugin stands after a call.
#[derive(Debug)]
pub(crate) enum Step {
    /// Ask the client these, then call [`Conversation::answer`].
    Ask(Vec<Question>),
    /// Allowed; the account to use instead of the one named, if the plugin mapped it.
    Allowed { account: Option<String> },
}

/// One connection's conversation with its plugin.
#[derive(Debug)]
pub(crate) struct Conversation {
    pub plugin: String,
    round: u32,
    answers: BTreeMap<String, String>,
    hidden: Vec<String>,
    asked: Vec<Question>,
    metadata: Option<Value>,
    mapped: Option<String>,
}

impl Conversation {
    pub fn new(plugin: &str) -> Conversation {
        Conversation {
            plugin: plugin.into(),
            round: 0,
            answers: BTreeMap::new(),
            hidden: Vec::new(),
            asked: Vec::new(),
            metadata: None,
            mapped: None,
        }
    }

    /// The questions waiting for answers.
    pub fn questions(&self) -> &[Question] {
        &self.asked
    }

    /// The first call.
    pub async fn start(&mut self, plugins: &AaPlugins, facts: &Facts<'_>) -> Result<Step, String> {
        self.call(plugins, facts).await
    }

    /// The client's answers to the questions, in order; the next call.
    pub async fn answer(
        &mut self,
        plugins: &AaPlugins,
        facts: &Facts<'_>,
        answers: Vec<String>,
    ) -> Result<Step, String> {
        for (q, a) in std::mem::take(&mut self.asked).into_iter().zip(answers) {
            if !q.echo {
                self.hidden.push(q.key.clone());
            }
            self.answers.insert(q.key, a.chars().take(256).collect());
        }
        self.call(plugins, facts).await
    }

    async fn call(&mut self, plugins: &AaPlugins, facts: &Facts<'_>) -> Result<Step, String> {
        let name = &self.plugin;
        let plugin = plugins.get(name).ok_or_else(|| {
            tracing::error!(plugin = %name, "a connection policy names an AA plugin this server does not configure");
            format!("the AA plugin '{name}' is not configured on this server; the connection is refused")
        })?;
        self.round += 1;
        let ask = json!({ "version": 1, "round": self.round, "connection": facts, "answers": self.answers });
        let reply = run(plugin, &ask).await.map_err(|why| {
            tracing::warn!(plugin = %name, error = %why, "AA plugin failed; connection refused");
            format!("the AA plugin '{name}' {why}; the connection is refused")
        })?;
        let reply: Reply = serde_json::from_slice(&reply).map_err(|e| {
            tracing::warn!(plugin = %name, error = %e, "AA plugin answered with an invalid document");
            format!("the AA plugin '{name}' gave an invalid answer; the connection is refused")
        })?;
        if let Some(m) = reply.metadata {
            self.metadata = Some(m);
        }
        let reason = || {
            let r = reply.reason.as_deref().unwrap_or("no reason given");
            r.chars().filter(|c| !c.is_control()).take(300).collect::<String>()
        };
        match reply.verdict.as_str() {
            "allow" => {
                self.mapped = reply.account.clone().filter(|a| a != facts.account);
                Ok(Step::Allowed { account: self.mapped.clone() })
            }
            "deny" => Err(format!("the AA plugin '{name}' refused the connection: {}", reason())),
            "ask" if self.round >= MAX_ROUNDS => Err(format!(
                "the AA plugin '{name}' asked more than {} times; the connection is refused",
                MAX_ROUNDS - 1
            )),
            "ask" => {
                let ok = !reply.questions.is_empty()
                    && reply.questions.len() <= MAX_QUESTIONS
                    && reply.questions.iter().all(|q| {
                        !q.key.is_empty()
                            && q.key.len() <= 64
                            && q.prompt.len() <= MAX_PROMPT
                            && !q.prompt.chars().any(|c| c.is_control())
                    });
                if !ok {
                    return Err(format!("the AA plugin '{name}' asked invalid questions; the connection is refused"));
                }
                self.asked = reply.questions;
                Ok(Step::Ask(self.asked.clone()))
            }
            other => {
                tracing::warn!(plugin = %name, verdict = other, "AA plugin gave an unknown verdict");
                Err(format!("the AA plugin '{name}' gave an invalid answer; the connection is refused"))
            }
        }
    }

    /// What the session's metadata and the audit keep: the plugin, its answers (hidden ones
    /// masked), the mapping and the plugin's metadata.
    pub fn record(&self) -> Value {
        let answers: BTreeMap<&str, &str> = self
            .answers
            .iter()
            .map(|(k, v)| (k.as_str(), if self.hidden.contains(k) { "[hidden]" } else { v.as_str() }))
            .collect();
        json!({ "plugin": self.plugin, "answers": answers, "mapped_account": self.mapped, "metadata": self.metadata })
    }
}

/// One call: the document in, the plugin's answer out (bounded), within the time limit.
async fn run(plugin: &AaPlugin, ask: &Value) -> Result<Vec<u8>, String> {
    let body = serde_json::to_vec(ask).map_err(|e| e.to_string())?;
    let call = async {
        match &plugin.transport {
            AaTransport::Command(argv) => command(argv, &body).await,
            AaTransport::Webhook(url) => webhook(url, body, plugin.timeout).await,
        }
    };
    tokio::time::timeout(plugin.timeout, call).await.map_err(|_| "did not answer in time".to_owned())?
}

async fn command(argv: &[String], body: &[u8]) -> Result<Vec<u8>, String> {
    let (program, args) = argv.split_first().ok_or("has no program")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        // A plugin that outlives its time limit is killed with the future that waits on it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not be started ({e})"))?;
    let mut stdin = child.stdin.take().ok_or("has no standard input")?;
    let mut stdout = child.stdout.take().ok_or("has no standard output")?;
    let write = async {
        let _ = stdin.write_all(body).await;
        drop(stdin);
    };
    let read = async {
        let mut out = Vec::new();
        let mut limited = (&mut stdout).take(MAX_REPLY as u64 + 1);
        limited.read_to_end(&mut out).await.map(|_| out)
    };
    let ((), out) = tokio::join!(write, read);
    let out = out.map_err(|e| format!("could not be read ({e})"))?;
    if out.len() > MAX_REPLY {
        return Err(format!("answered more than {MAX_REPLY} bytes"));
    }
    let status = child.wait().await.map_err(|e| format!("failed ({e})"))?;
    if !status.success() {
        return Err(format!("failed ({status})"));
    }
    Ok(out)
}

async fn webhook(url: &str, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("could not be called ({e})"))?;
    let mut resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("could not be reached ({})", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("answered HTTP {}", resp.status().as_u16()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("could not be read ({})", e.without_url()))? {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_REPLY {
            return Err(format!("answered more than {MAX_REPLY} bytes"));
        }
    }
    Ok(out)
}

/// Checks a plugin's settings: the program or the URL. An error says what to fix.
pub fn check_transport(t: &AaTransport) -> Result<(), String> {
    match t {
        AaTransport::Command(argv) => match argv.first() {
            Some(p) if std::path::Path::new(p).is_absolute() => Ok(()),
            Some(p) => Err(format!("'{p}' is not an absolute path to a program")),
            None => Err("name the program (command = [\"/path/to/program\", \"arg\" ...])".into()),
        },
        AaTransport::Webhook(url) => {
            let loopback = ["http://127.0.0.1", "http://[::1]", "http://localhost"]
                .iter()
                .any(|p| url.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])));
            if url.starts_with("https://") || loopback {
                Ok(())
            } else {
                Err(format!("'{url}' must be an https:// URL (http:// only to a loopback address)"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &std::path::Path, body: &str) -> AaPlugins {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("plugin.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plugin = AaPlugin {
            transport: AaTransport::Command(vec![path.display().to_string()]),
            timeout: Duration::from_millis(1500),
        };
        HashMap::from([("p".to_owned(), plugin)])
    }

    fn facts() -> Facts<'static> {
        Facts {
            protocol: "ssh",
            user: "alice",
            user_id: "u1",
            client: "127.0.0.1:5000",
            account: "ops",
            asset: "db1",
            connection_policy: "c",
        }
    }

    #[tokio::test]
    async fn asks_then_allows_with_a_mapping_and_masks_hidden_answers() {
        let dir = tempfile::tempdir().unwrap();
        // Round 1 asks; round 2 allows, mapping to root, if the ticket came back.
        let plugins = script(
            dir.path(),
            r#"in=$(cat)
case "$in" in
  *'"round":1'*) echo '{"verdict":"ask","questions":[{"key":"ticket","prompt":"Ticket: "},{"key":"pin","prompt":"PIN: ","echo":false}]}' ;;
  *'"ticket":"INC-7"'*) echo '{"verdict":"allow","account":"root","metadata":{"ticket_state":"open"}}' ;;
  *) echo '{"verdict":"deny","reason":"unknown ticket"}' ;;
esac"#,
        );
        let mut c = Conversation::new("p");
        let Step::Ask(q) = c.start(&plugins, &facts()).await.unwrap() else { panic!("asks first") };
        assert_eq!(q.len(), 2);
        assert!(!q[1].echo);
        let step = c.answer(&plugins, &facts(), vec!["INC-7".into(), "1234".into()]).await.unwrap();
        assert!(matches!(step, Step::Allowed { account: Some(ref a) } if a == "root"), "{step:?}");
        let rec = c.record();
        assert_eq!(rec["answers"]["ticket"], "INC-7");
        assert_eq!(rec["answers"]["pin"], "[hidden]");
        assert_eq!(rec["metadata"]["ticket_state"], "open");

        let mut c = Conversation::new("p");
        c.start(&plugins, &facts()).await.unwrap();
        let e = c.answer(&plugins, &facts(), vec!["INC-8".into(), "1".into()]).await.unwrap_err();
        assert_eq!(e, "the AA plugin 'p' refused the connection: unknown ticket");
    }

    #[tokio::test]
    async fn fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        for (body, said) in [
            ("sleep 5", "did not answer in time"),
            ("exit 3", "failed"),
            ("echo 'not json'", "gave an invalid answer"),
            (r#"echo '{"verdict":"maybe"}'"#, "gave an invalid answer"),
            (r#"echo '{"verdict":"ask","questions":[]}'"#, "asked invalid questions"),
            (r#"head -c 70000 /dev/zero | tr '\0' x"#, "more than"),
        ] {
            let plugins = script(dir.path(), body);
            let e = Conversation::new("p").start(&plugins, &facts()).await.unwrap_err();
            assert!(e.contains(said) && e.ends_with("the connection is refused"), "{body}: {e}");
        }
        let e = Conversation::new("missing").start(&HashMap::new(), &facts()).await.unwrap_err();
        assert!(e.contains("not configured"), "{e}");
        // Asking forever is cut short.
        let plugins = script(dir.path(), r#"echo '{"verdict":"ask","questions":[{"key":"k","prompt":"K: "}]}'"#);
        let mut c = Conversation::new("p");
        c.start(&plugins, &facts()).await.unwrap();
        c.answer(&plugins, &facts(), vec!["a".into()]).await.unwrap();
        let e = c.answer(&plugins, &facts(), vec!["b".into()]).await.unwrap_err();
        assert!(e.contains("asked more than 2 times"), "{e}");
    }

    /// The webhook transport against a real HTTP listener: the document is POSTed, the answer
    /// read; an error status refuses.
    #[tokio::test]
    async fn webhooks_are_posted_the_document() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/aa", listener.local_addr().unwrap().port());
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !String::from_utf8_lossy(&got).contains("\"answers\"") {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                seen.push(String::from_utf8_lossy(&got).into_owned());
                let body = r#"{"verdict":"allow"}"#;
                let reply = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                s.write_all(reply.as_bytes()).await.unwrap();
            }
            seen
        });
        let plugin = AaPlugin { transport: AaTransport::Webhook(url), timeout: Duration::from_secs(5) };
        let plugins = HashMap::from([("hook".to_owned(), plugin)]);
        let step = Conversation::new("hook").start(&plugins, &facts()).await.unwrap();
        assert!(matches!(step, Step::Allowed { account: None }), "{step:?}");
        let e = Conversation::new("hook").start(&plugins, &facts()).await.unwrap_err();
        assert!(e.contains("answered HTTP 500"), "{e}");
        let seen = server.await.unwrap();
        assert!(seen[0].starts_with("POST /aa "), "{}", seen[0]);
        assert!(seen[0].contains(r#""user":"alice""#) && seen[0].contains(r#""round":1"#), "{}", seen[0]);
    }

    #[test]
    fn transports_are_checked() {
        assert!(check_transport(&AaTransport::Command(vec!["/usr/bin/x".into()])).is_ok());
        assert!(check_transport(&AaTransport::Command(vec!["x".into()])).unwrap_err().contains("absolute path"));
        assert!(check_transport(&AaTransport::Webhook("https://aa.example/check".into())).is_ok());
        assert!(check_transport(&AaTransport::Webhook("http://127.0.0.1:8080/aa".into())).is_ok());
        assert!(check_transport(&AaTransport::Webhook("http://aa.example/".into())).is_err());
        assert!(check_transport(&AaTransport::Webhook("http://127.0.0.1.evil.example/".into())).is_err());
    }
}
