//! The Telnet leg to the target: the TCP connection (from the connection policy's source
//! address), the proxy's side of option negotiation as a Telnet client, and the login with
//! the vaulted credential, typed into the target's login and password prompts as the
//! platform's prompt patterns recognize them.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use super::codec::{self, opt, Decoder, Item, Options, TTYPE_IS, TTYPE_SEND};

/// What the proxy performs for the target, and lets the target perform.
const US: &[u8] = &[opt::TTYPE, opt::NAWS, opt::SGA];
const HIM: &[u8] = &[opt::ECHO, opt::SGA];

/// The text a login dialogue matches against: the last this many bytes.
const SCREEN: usize = 4096;
/// Output kept between the password and the shell prompt (shown to the user after login).
const MAX_AFTER: usize = 64 * 1024;

/// The prompt patterns of a platform, as configured (regular expressions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPatterns {
    /// The target asks for the username (matched at the end of its output).
    pub login: String,
    /// The target asks for the password (at the end).
    pub password: String,
    /// The target refused the login (anywhere after the password).
    pub failure: String,
    /// The target's shell is ready (at the end).
    pub shell: String,
}

impl Default for PromptPatterns {
    fn default() -> Self {
        PromptPatterns {
            login: r"(?i)(login|user ?name)\s*:\s*$".into(),
            password: r"(?i)pass(word|code)?\s*:\s*$".into(),
            failure: r"(?i)(login incorrect|incorrect password|authentication fail|access denied|permission denied|bad password)".into(),
            shell: r"[$#>%]\s*$".into(),
        }
    }
}

/// Compiled prompt patterns.
#[derive(Debug, Clone)]
pub struct Prompts {
    login: Regex,
    password: Regex,
    failure: Regex,
    shell: Regex,
}

impl Prompts {
    /// Compiles the patterns; an error names the pattern (`login`, `password`, `failure`,
    /// `shell`) and what is wrong with it.
    pub fn compile(p: &PromptPatterns) -> Result<Prompts, (&'static str, String)> {
        let one = |name: &'static str, text: &str| {
            regex::RegexBuilder::new(text)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| (name, format!("'{text}' is not a valid regular expression: {e}")))
        };
        Ok(Prompts {
            login: one("login", &p.login)?,
            password: one("password", &p.password)?,
            failure: one("failure", &p.failure)?,
            shell: one("shell", &p.shell)?,
        })
    }
}

impl Default for Prompts {
    fn default() -> Self {
        Prompts::compile(&PromptPatterns::default()).unwrap_or_else(|_| unreachable!("the default patterns compile"))
    }
}

/// Why the login to the target failed.
#[derive(Debug)]
pub(super) enum LoginError {
    /// The target refused the credential.
    Refused,
    /// No expected prompt came in time: what was awaited, and the end of what was seen.
    NoPrompt { awaited: &'static str, seen: String },
    /// The target closed the connection (or the socket failed).
    Closed,
}

/// The connection to the target.
pub(super) struct TargetLeg {
    pub read: OwnedReadHalf,
    pub write: Arc<Mutex<OwnedWriteHalf>>,
    decoder: Decoder,
    pub options: Options,
    /// The client's terminal type and size, told to the target when it asks.
    pub term: String,
    pub size: (u16, u16),
    buf: Vec<u8>,
}

impl TargetLeg {
    pub async fn connect(
        host: &str,
        port: u16,
        source: Option<std::net::IpAddr>,
        term: String,
        size: (u16, u16),
    ) -> std::io::Result<TargetLeg> {
        let stream = tokio::time::timeout(Duration::from_secs(15), portcullis_connect::tcp(host, port, source))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 15 seconds"))??;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Ok(TargetLeg {
            read,
            write: Arc::new(Mutex::new(write)),
            decoder: Decoder::default(),
            options: Options::new(US, HIM),
            term,
            size,
            buf: vec![0; 16 * 1024],
        })
    }

    pub async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.lock().await.write_all(bytes).await
    }

    /// Reads once: the data it carried (possibly none), negotiations answered on the way;
    /// `None` when the target closed the connection.
    pub async fn read(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let n = self.read.read(&mut self.buf).await?;
        if n == 0 {
            return Ok(None);
        }
        let chunk = self.buf[..n].to_vec();
        self.absorb(&chunk).await.map(Some)
    }

    /// Decodes bytes read from the target: negotiations answered, data returned.
    pub async fn absorb(&mut self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut items = Vec::new();
        self.decoder.feed(bytes, &mut items);
        let mut data = Vec::new();
        let mut reply = Vec::new();
        for item in items {
            match item {
                Item::Data(d) => data.extend(d),
                Item::Negotiate(verb, option) => {
                    let was = self.options.us(opt::NAWS);
                    if let Some(answer) = self.options.receive(verb, option) {
                        reply.extend_from_slice(&answer);
                    }
                    if !was && self.options.us(opt::NAWS) {
                        reply.extend(codec::naws(self.size.0, self.size.1));
                    }
                }
                Item::Sub(opt::TTYPE, p) if p.first() == Some(&TTYPE_SEND) && self.options.us(opt::TTYPE) => {
                    let mut payload = vec![TTYPE_IS];
                    payload.extend_from_slice(self.term.as_bytes());
                    reply.extend(codec::subnegotiation(opt::TTYPE, &payload));
                }
                Item::Sub(..) | Item::Command(_) => {}
            }
        }
        if !reply.is_empty() {
            self.send(&reply).await?;
        }
        Ok(data)
    }

    /// Tells the target the client's new window size (when it asked for sizes).
    pub async fn resize(&mut self, cols: u16, rows: u16) -> std::io::Result<()> {
        self.size = (cols, rows);
        if self.options.us(opt::NAWS) {
            self.send(&codec::naws(cols, rows)).await?;
        }
        Ok(())
    }

    /// Logs in: the username at the login prompt (skipped when the target asks for a password
    /// straight away), the password at the password prompt, then waits for the shell prompt.
    /// Returns what the target showed after the password (its banner and prompt), for the user.
    pub async fn login(
        &mut self,
        prompts: &Prompts,
        username: &str,
        password: &[u8],
        limit: Duration,
    ) -> Result<Vec<u8>, LoginError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut screen = String::new();
        let asks_password = self.until(&mut screen, deadline, "a login prompt", |s| {
            if prompts.password.is_match(s) {
                Some(true)
            } else {
                prompts.login.is_match(s).then_some(false)
            }
        });
        if !asks_password.await?.0 {
            self.send(&codec::escape(format!("{username}\r\n").as_bytes())).await.map_err(|_| LoginError::Closed)?;
            screen.clear();
            self.until(&mut screen, deadline, "a password prompt", |s| prompts.password.is_match(s).then_some(()))
                .await?;
        }
        let mut line = Zeroizing::new(codec::escape(password).into_owned());
        line.extend_from_slice(b"\r\n");
        self.send(&line).await.map_err(|_| LoginError::Closed)?;
        screen.clear();
        let (refused, after) = self
            .until(&mut screen, deadline, "the shell prompt after the login", |s| {
                if prompts.failure.is_match(s) || prompts.login.is_match(s) || prompts.password.is_match(s) {
                    Some(true)
                } else {
                    prompts.shell.is_match(s).then_some(false)
                }
            })
            .await?;
        if refused {
            return Err(LoginError::Refused);
        }
        Ok(after)
    }

    /// Reads until `done` says something of the screen (the output since the last step),
    /// returning it and the raw output read meanwhile.
    async fn until<T>(
        &mut self,
        screen: &mut String,
        deadline: tokio::time::Instant,
        awaited: &'static str,
        done: impl Fn(&str) -> Option<T>,
    ) -> Result<(T, Vec<u8>), LoginError> {
        let mut raw = Vec::new();
        loop {
            let read = tokio::time::timeout_at(deadline, self.read()).await;
            let data = match read {
                Err(_) => {
                    let seen: String = screen.chars().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
                    return Err(LoginError::NoPrompt { awaited, seen: seen.trim().to_owned() });
                }
                Ok(Err(_) | Ok(None)) => return Err(LoginError::Closed),
                Ok(Ok(Some(d))) => d,
            };
            if raw.len() + data.len() <= MAX_AFTER {
                raw.extend_from_slice(&data);
            }
            screen.extend(String::from_utf8_lossy(&data).chars().filter(|c| *c != '\0'));
            if screen.len() > SCREEN {
                let mut cut = screen.len() - SCREEN;
                while !screen.is_char_boundary(cut) {
                    cut += 1;
                }
                screen.drain(..cut);
            }
            if let Some(v) = done(screen) {
                return Ok((v, raw));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_patterns_recognize_common_prompts() {
        let p = Prompts::default();
        assert!(p.login.is_match("\r\nvm login: "));
        assert!(p.login.is_match("Username:"));
        assert!(p.password.is_match("Password: "));
        assert!(!p.password.is_match("Password: x\r\n"));
        assert!(p.failure.is_match("\r\nLogin incorrect\r\n"));
        assert!(p.shell.is_match("permitted by applicable law.\r\n$ "));
        assert!(p.shell.is_match("router1#"));
        assert!(!p.shell.is_match("Last login: today\r\n"));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let bad = PromptPatterns { shell: "([".into(), ..PromptPatterns::default() };
        let (name, message) = Prompts::compile(&bad).unwrap_err();
        assert_eq!(name, "shell");
        assert!(message.contains("not a valid regular expression"), "{message}");
    }
}
