//! A small SSH client over russh for connectors (and, later, the proxy's server-side leg):
//! connect with a pinned or first-seen host key, authenticate, run commands with bounded
//! output.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Preferred};

use crate::{ConnectError, Credential, Login, Target};

/// Output of a command beyond this is dropped (connectors read short answers only).
const MAX_OUTPUT: usize = 64 * 1024;

/// The russh client handler of connector and proxy connections: checks the host key.
pub struct HostKeyCheck {
    expected: Option<PublicKey>,
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, presented: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = presented else {
            return Ok(false);
        };
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(key.clone());
        Ok(match &self.expected {
            Some(expected) => expected.key_data() == key.key_data(),
            None => true,
        })
    }
}

/// An authenticated (or about to be) SSH connection to a target.
pub struct SshClient {
    handle: Handle<HostKeyCheck>,
    host_key: String,
    timeout: Duration,
}

fn openssh(key: &PublicKey) -> String {
    // Without the comment: the pinned form is "algorithm base64".
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().unwrap_or_default().trim().to_owned()
}

/// Parses a pinned host key ("ssh-ed25519 AAAA… [comment]").
pub fn parse_host_key(text: &str) -> Result<PublicKey, ConnectError> {
    PublicKey::from_openssh(text.trim())
        .map_err(|_| ConnectError::Protocol("the pinned host key is not an OpenSSH public key".into()))
}

async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    tokio::time::timeout(limit, f).await.map_err(|_| ConnectError::Timeout(limit.as_secs().max(1)))?
}

/// Connects to `target` and checks its host key; does not authenticate. The connection is
/// dropped after twice the target's timeout without traffic (connectors' short work).
pub async fn connect(target: &Target) -> Result<SshClient, ConnectError> {
    connect_with(target, Some(target.timeout.max(Duration::from_secs(5)) * 2), None, &Leg::default()).await
}

/// Like [`connect`], for a long-lived interactive session (the proxy's leg to the target): no
/// inactivity limit of its own (the proxy enforces the policy's idle timeout), keepalives every
/// 30 seconds to notice a dead target.
pub async fn connect_session(target: &Target) -> Result<SshClient, ConnectError> {
    connect_session_via(target, &Leg::default()).await
}

/// [`connect_session`] made the way a connection policy says: from a chosen source address,
/// with only the allowed algorithms.
pub async fn connect_session_via(target: &Target, leg: &Leg) -> Result<SshClient, ConnectError> {
    connect_with(target, None, Some(Duration::from_secs(30)), leg).await
}

/// How a leg to a target is made: the local source address (SNAT) and the algorithms it may
/// negotiate (empty lists: the library's defaults), by their SSH names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leg {
    pub source: Option<std::net::IpAddr>,
    pub kex: Vec<String>,
    pub ciphers: Vec<String>,
    pub macs: Vec<String>,
    pub host_keys: Vec<String>,
}

/// Checks algorithm names against what the SSH library implements; `Err((list, name))` names
/// the first unknown one (`list` is `kex`, `ciphers`, `macs` or `host_keys`).
pub fn check_algorithms(leg: &Leg) -> Result<(), (&'static str, String)> {
    let unknown = |list: &'static str, names: &[String], known: &dyn Fn(&str) -> bool| {
        names.iter().find(|n| !known(n)).map(|n| Err((list, n.clone()))).unwrap_or(Ok(()))
    };
    unknown("kex", &leg.kex, &|n| russh::kex::Name::try_from(n).is_ok())?;
    unknown("ciphers", &leg.ciphers, &|n| russh::cipher::Name::try_from(n).is_ok())?;
    unknown("macs", &leg.macs, &|n| russh::mac::Name::try_from(n).is_ok())?;
    unknown("host_keys", &leg.host_keys, &|n| n.parse::<russh::keys::Algorithm>().is_ok())?;
    Ok(())
}

/// The algorithm lists a leg allows, over russh's defaults.
fn preferred_for(leg: &Leg, mut preferred: Preferred) -> Result<Preferred, ConnectError> {
    let bad = |what: &str, n: &str| ConnectError::Unsupported(format!("the {what} algorithm '{n}' is not supported"));
    if !leg.kex.is_empty() {
        let names = leg.kex.iter().map(|n| russh::kex::Name::try_from(n.as_str()).map_err(|_| bad("key exchange", n)));
        preferred.kex = Cow::Owned(names.collect::<Result<Vec<_>, _>>()?);
    }
    if !leg.ciphers.is_empty() {
        let names = leg.ciphers.iter().map(|n| russh::cipher::Name::try_from(n.as_str()).map_err(|_| bad("cipher", n)));
        preferred.cipher = Cow::Owned(names.collect::<Result<Vec<_>, _>>()?);
    }
    if !leg.macs.is_empty() {
        let names = leg.macs.iter().map(|n| russh::mac::Name::try_from(n.as_str()).map_err(|_| bad("MAC", n)));
        preferred.mac = Cow::Owned(names.collect::<Result<Vec<_>, _>>()?);
    }
    if !leg.host_keys.is_empty() {
        let allowed = leg
            .host_keys
            .iter()
            .map(|n| n.parse::<russh::keys::Algorithm>().map_err(|_| bad("host key", n)))
            .collect::<Result<Vec<_>, _>>()?;
        let kept: Vec<_> = preferred.key.iter().filter(|a| allowed.contains(a)).cloned().collect();
        if kept.is_empty() {
            return Err(ConnectError::Unsupported(
                "the pinned host key's algorithm is not among the host key algorithms the connection policy allows"
                    .into(),
            ));
        }
        preferred.key = Cow::Owned(kept);
    }
    Ok(preferred)
}

/// The TCP connection to a target, from `source` when given (the connection policy's source
/// address); every proxy's target leg opens it.
pub async fn tcp(host: &str, port: u16, source: Option<std::net::IpAddr>) -> std::io::Result<tokio::net::TcpStream> {
    let Some(source) = source else { return tokio::net::TcpStream::connect((host, port)).await };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        if addr.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{host} has no address of the source address's family"),
        )
    }))
}

async fn connect_with(
    target: &Target,
    inactivity_timeout: Option<Duration>,
    keepalive_interval: Option<Duration>,
    leg: &Leg,
) -> Result<SshClient, ConnectError> {
    let expected = target.host_key.as_deref().map(parse_host_key).transpose()?;
    let mut preferred = Preferred::default();
    if let Some(key) = &expected {
        // Ask for the pinned key's algorithm so a server with several host keys shows that one.
        let alg = key.algorithm();
        let algs: Vec<_> = match alg {
            russh::keys::Algorithm::Rsa { .. } => vec![
                russh::keys::Algorithm::Rsa { hash: Some(russh::keys::HashAlg::Sha512) },
                russh::keys::Algorithm::Rsa { hash: Some(russh::keys::HashAlg::Sha256) },
            ],
            other => vec![other],
        };
        preferred.key = Cow::Owned(algs);
    }
    let preferred = preferred_for(leg, preferred)?;
    let config = Arc::new(client::Config {
        inactivity_timeout,
        keepalive_interval,
        preferred,
        nodelay: true,
        ..Default::default()
    });
    let seen = Arc::new(Mutex::new(None));
    let handler = HostKeyCheck { expected: expected.clone(), seen: seen.clone() };
    let source = leg.source;
    let leg_to = async move {
        let stream = tcp(&target.host, target.port, source).await.map_err(russh::Error::IO)?;
        let _ = stream.set_nodelay(true);
        client::connect_stream(config, stream, handler).await
    };
    let result = tokio::time::timeout(target.timeout, leg_to).await;
    let seen_key = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let handle = match result {
        Err(_) => return Err(ConnectError::Timeout(target.timeout.as_secs().max(1))),
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            if let (Some(expected), Some(presented)) = (&expected, &seen_key) {
                if expected.key_data() != presented.key_data() {
                    return Err(ConnectError::HostKeyMismatch {
                        expected: openssh(expected),
                        presented: openssh(presented),
                    });
                }
            }
            return Err(match e {
                russh::Error::IO(io) => ConnectError::Unreachable(io.to_string()),
                russh::Error::Disconnect | russh::Error::HUP => {
                    ConnectError::Unreachable("the connection was closed during the handshake".into())
                }
                other => ConnectError::Protocol(other.to_string()),
            });
        }
    };
    let host_key = seen_key.as_ref().map(openssh).unwrap_or_default();
    Ok(SshClient { handle, host_key, timeout: target.timeout })
}

/// Connects for a session and signs in with a password: the proxy's own test clients and
/// load generators use it.
pub async fn session_with_password(target: &Target, username: &str, password: &str) -> Result<SshClient, ConnectError> {
    let mut client = connect_session(target).await?;
    let secret = crate::Plaintext::new(password.as_bytes().to_vec());
    client.authenticate(Login { username, credential: Credential::Password(&secret) }).await?;
    Ok(client)
}

/// The exit status and (bounded) output of a command.
#[derive(Debug)]
pub struct Output {
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stderr_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let text = text.trim();
        if text.is_empty() {
            String::from_utf8_lossy(&self.stdout).trim().chars().take(300).collect()
        } else {
            text.chars().take(300).collect()
        }
    }
}

fn push_bounded(buf: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_OUTPUT.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

impl SshClient {
    /// The russh handle, for opening channels (the proxy's server-side leg).
    pub fn handle(&self) -> &Handle<HostKeyCheck> {
        &self.handle
    }

    /// The handle alone, for a session that outlives this wrapper (the proxy).
    pub fn into_handle(self) -> Handle<HostKeyCheck> {
        self.handle
    }

    /// The target's host key as presented (OpenSSH format, no comment).
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// Authenticates; `Err(AuthenticationFailed)` if the target refuses the credential.
    pub async fn authenticate(&mut self, login: Login<'_>) -> Result<(), ConnectError> {
        let limit = self.timeout;
        let user = login.username.to_owned();
        let ok = match login.credential {
            Credential::Password(p) => {
                let password = std::str::from_utf8(p.expose())
                    .map_err(|_| ConnectError::BadCredential("the password is not UTF-8".into()))?;
                let password = zeroize::Zeroizing::new(password.to_owned());
                within(limit, async {
                    self.handle
                        .authenticate_password(user, password.as_str())
                        .await
                        .map_err(|e| ConnectError::Protocol(e.to_string()))
                })
                .await?
                .success()
            }
            Credential::PrivateKey(k) => {
                let text = std::str::from_utf8(k.expose())
                    .map_err(|_| ConnectError::BadCredential("the private key is not text".into()))?;
                let key = russh::keys::decode_secret_key(text, None)
                    .map_err(|_| ConnectError::BadCredential("the private key cannot be read".into()))?;
                within(limit, async {
                    let hash = self
                        .handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?
                        .flatten();
                    self.handle
                        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                        .await
                        .map_err(|e| ConnectError::Protocol(e.to_string()))
                })
                .await?
                .success()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ConnectError::AuthenticationFailed(login.username.to_owned()))
        }
    }

    /// Runs `command`, writes `stdin` (then EOF), and collects the exit status and output.
    pub async fn exec(&self, command: &str, stdin: &[u8]) -> Result<Output, ConnectError> {
        within(self.timeout, async {
            let mut channel = self.handle.channel_open_session().await.map_err(protocol)?;
            channel.exec(true, command).await.map_err(protocol)?;
            if !stdin.is_empty() {
                channel.data(stdin).await.map_err(protocol)?;
            }
            channel.eof().await.map_err(protocol)?;
            let mut out = Output { status: None, stdout: Vec::new(), stderr: Vec::new() };
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => push_bounded(&mut out.stdout, &data),
                    ChannelMsg::ExtendedData { data, .. } => push_bounded(&mut out.stderr, &data),
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    ChannelMsg::Failure => {
                        return Err(ConnectError::Refused(format!("the target refused to run {command:?}")))
                    }
                    _ => {}
                }
            }
            Ok(out)
        })
        .await
    }

    /// Runs `command` on a pseudo-terminal and answers its prompts: whenever the output so far
    /// ends with one of `answers`' prompts (case-insensitive), the answer is typed. Each
    /// prompt is answered at most `max_each` times. Returns the exit status and the output
    /// (which holds no answer: the programs this is for turn echo off).
    pub async fn converse(
        &self,
        command: &str,
        answers: &[(&str, &[u8])],
        max_each: usize,
    ) -> Result<Output, ConnectError> {
        within(self.timeout, async {
            let mut channel = self.handle.channel_open_session().await.map_err(protocol)?;
            channel.request_pty(true, "dumb", 200, 24, 0, 0, &[]).await.map_err(protocol)?;
            channel.exec(true, command).await.map_err(protocol)?;
            let mut out = Output { status: None, stdout: Vec::new(), stderr: Vec::new() };
            let mut pending = String::new();
            let mut used = vec![0usize; answers.len()];
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                        push_bounded(&mut out.stdout, &data);
                        pending.push_str(&String::from_utf8_lossy(&data).to_lowercase());
                        let tail = pending.trim_end();
                        // The longest matching prompt wins ("retype new password:" over "new password:").
                        let hit = answers
                            .iter()
                            .enumerate()
                            .filter(|(_, (prompt, _))| tail.ends_with(&prompt.to_lowercase()))
                            .max_by_key(|(_, (prompt, _))| prompt.len())
                            .map(|(i, _)| i);
                        if let Some(i) = hit {
                            used[i] += 1;
                            if used[i] > max_each {
                                let _ = channel.close().await;
                                return Err(ConnectError::Refused(last_line(&out.stdout)));
                            }
                            let mut line = zeroize::Zeroizing::new(answers[i].1.to_vec());
                            line.push(b'\n');
                            channel.data(&line[..]).await.map_err(protocol)?;
                            pending.clear();
                        } else if pending.len() > 4096 {
                            let cut = pending.len() - 256;
                            let cut = (cut..pending.len()).find(|i| pending.is_char_boundary(*i)).unwrap_or(0);
                            pending.drain(..cut);
                        }
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    ChannelMsg::Failure => {
                        return Err(ConnectError::Refused(format!("the target refused to run {command:?}")))
                    }
                    _ => {}
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

/// The last non-empty line of program output, for an error message.
pub(crate) fn last_line(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").chars().take(300).collect()
}

fn protocol(e: russh::Error) -> ConnectError {
    ConnectError::Protocol(e.to_string())
}
