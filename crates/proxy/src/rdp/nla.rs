//! NLA (CredSSP over TLS, NTLM inside) on both legs.
//!
//! Client leg: the proxy is the CredSSP server. NTLM proves knowledge of a password the
//! server must hold itself, and Portcullis keeps user passwords only as argon2 hashes, so the
//! NLA password is a one-time **launch token** (sealed in the store for the few minutes it
//! lives); the user name is `USER#ACCOUNT@ASSET` or `USER`. Since the target is known once NLA
//! is done, the target connection starts after the sign-in and the authorization, and the
//! client's connection cookie is not needed (mstsc cuts it to 9 characters).
//!
//! Target leg: when the target selects NLA, the proxy is the CredSSP client with the account's
//! vaulted password, bound to the target's pinned TLS public key.

use std::sync::Arc;

use portcullis_app::App as AppState;
use sspi::credssp::{
    ClientMode, ClientState, CredSspClient, CredSspMode, CredSspServer, CredentialsProxy, NStatusCode, ServerMode,
    ServerState, TsRequest,
};
use sspi::{AuthIdentity, Credentials, Username};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::frames::FrameReader;
use super::signin::{self, ClientTls, Connection, Legs, Signed};
use super::wire::{self, errinfo, Confirm};
use super::Named;

/// The largest CredSSP message accepted (NTLM messages and TSCredentials are a few KiB).
pub const MAX_TS_REQUEST: usize = 64 * 1024;

/// Why an NLA exchange stopped.
#[derive(Debug, thiserror::Error)]
pub enum NlaError {
    #[error("the connection failed during NLA: {0}")]
    Io(#[from] std::io::Error),
    #[error("a CredSSP message is malformed or larger than {MAX_TS_REQUEST} bytes")]
    Malformed,
    #[error("{0}")]
    Refused(String),
}

/// The length of the DER-encoded TSRequest at the start of `buf` (header included), `None`
/// while incomplete; an error for anything that is not a bounded DER SEQUENCE.
pub fn ts_request_len(buf: &[u8]) -> Result<Option<usize>, NlaError> {
    let Some(&tag) = buf.first() else { return Ok(None) };
    if tag != 0x30 {
        return Err(NlaError::Malformed);
    }
    let Some(&first) = buf.get(1) else { return Ok(None) };
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return Err(NlaError::Malformed);
        }
        let Some(bytes) = buf.get(2..2 + n) else { return Ok(None) };
        (2 + n, bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
    };
    let total = header + len;
    if total > MAX_TS_REQUEST {
        return Err(NlaError::Malformed);
    }
    Ok(Some(total))
}

/// Reads one TSRequest (bytes past it stay in `buf`).
async fn read_ts<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<TsRequest, NlaError> {
    loop {
        if let Some(n) = ts_request_len(buf)? {
            if buf.len() >= n {
                let message = TsRequest::from_buffer(&buf[..n]).map_err(|_| NlaError::Malformed);
                buf.drain(..n);
                return message;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(NlaError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn write_ts<W: AsyncWrite + Unpin>(w: &mut W, ts: &TsRequest) -> Result<(), NlaError> {
    let len = usize::from(ts.buffer_len().map_err(|_| NlaError::Malformed)?);
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    ts.encode_ts_request(&mut *out).map_err(|_| NlaError::Malformed)?;
    w.write_all(&out).await?;
    Ok(())
}

/// The subjectPublicKey of a DER certificate: what CredSSP binds the exchange to.
pub fn public_key(certificate: &[u8]) -> Option<Vec<u8>> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(certificate).ok()?;
    Some(cert.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes().to_vec())
}

/// The NLA user name as one text: a UPN whole (`alice#root@ws1`), else the account name.
fn name_of(username: &Username) -> String {
    match username.parts() {
        sspi::UsernameParts::UserPrincipalName(p) => p.upn().to_owned(),
        sspi::UsernameParts::DownLevelLogonName(p) => p.account_name().to_owned(),
    }
}

/// The passwords an NLA user name may prove (its user's pending RDP launch tokens), looked
/// up from the CredSSP server's blocking thread.
struct Candidates {
    state: AppState,
    runtime: tokio::runtime::Handle,
    /// The user name tried (for the audit of a failure).
    tried: Arc<std::sync::Mutex<Option<String>>>,
}

impl CredentialsProxy for Candidates {
    type AuthenticationData = AuthIdentity;

    fn auth_data_by_user(&mut self, username: &Username) -> std::io::Result<AuthIdentity> {
        self.auth_data_candidates_by_user(username)?.into_iter().next().ok_or_else(|| std::io::Error::other("no token"))
    }

    fn auth_data_candidates_by_user(&mut self, username: &Username) -> std::io::Result<Vec<AuthIdentity>> {
        let name = name_of(username);
        *self.tried.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.clone());
        let secrets = self.runtime.block_on(portcullis_app::session_access::nla_secrets(&self.state, &name));
        if secrets.is_empty() {
            return Err(std::io::Error::other("no pending RDP launch token"));
        }
        Ok(secrets
            .iter()
            .map(|t| AuthIdentity { username: username.clone(), password: t.as_str().to_owned().into() })
            .collect())
    }

    fn auth_data(&mut self) -> std::io::Result<Vec<AuthIdentity>> {
        Ok(Vec::new())
    }
}

/// The CredSSP server exchange: the client's delegated credentials (user name, token) once it
/// proved them, and the bytes it sent after them (its MCS Connect Initial may follow at once);
/// on failure, the client is told LOGON_FAILURE.
async fn accept(
    state: &AppState,
    client: &mut ClientTls,
    public_key: Vec<u8>,
    tried: Arc<std::sync::Mutex<Option<String>>>,
) -> Result<(AuthIdentity, Vec<u8>), NlaError> {
    let proxy = Candidates { state: state.clone(), runtime: tokio::runtime::Handle::current(), tried };
    let mode = ServerMode::Ntlm(sspi::ntlm::NtlmConfig::default());
    let mut server = CredSspServer::new(public_key, proxy, mode).map_err(|e| NlaError::Refused(e.to_string()))?;
    let mut buf = Vec::new();
    loop {
        let request = read_ts(client, &mut buf).await?;
        // NTLM needs no network; the candidates' lookup blocks, so the step runs off the runtime.
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = server.process(request).resolve_to_result();
            (server, result)
        })
        .await
        .map_err(|_| NlaError::Refused("the NLA step failed".into()))?;
        server = back;
        match result {
            Ok(ServerState::ReplyNeeded(reply)) => write_ts(client, &reply).await?,
            Ok(ServerState::Finished(identity)) => return Ok((identity, buf)),
            Err(e) => {
                if let Some(mut reply) = e.ts_request.map(|t| *t) {
                    if e.error.error_type == sspi::ErrorKind::LogonDenied {
                        reply.error_code = Some(NStatusCode::LOGON_FAILURE);
                    }
                    let _ = write_ts(client, &reply).await;
                }
                return Err(NlaError::Refused(e.error.description));
            }
        }
    }
}

/// A failed NLA sign-in, audited (guessing shows up like other failed sign-ins).
async fn audit_failed(state: &AppState, name: &str, source: &str) {
    let actor = portcullis_store::Actor { id: String::new(), name: name.to_owned(), source: source.to_owned() };
    let what = if state.auth.rdp_nla_passwords {
        "neither the user's password nor one of their pending RDP launch tokens"
    } else {
        "none of that user's pending RDP launch tokens (NLA signs in with a launch token as the password: portcullis request launch)"
    };
    let event = portcullis_store::NewEvent::success("session.launch_token", "launch_token", "")
        .with_outcome(portcullis_store::Outcome::Denied)
        .with_details(serde_json::json!({ "reason": format!("an RDP NLA sign-in as '{name}' proved {what}") }));
    let _ = state.store.record(&actor, state.now(), event).await;
}

/// The CredSSP client exchange towards a target that selected NLA: the account and its
/// password, bound to the target certificate's public key.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    target: &mut S,
    public_key: Vec<u8>,
    host: &str,
    account: &str,
    password: &str,
) -> Result<(), NlaError> {
    let username = Username::parse(account).map_err(|e| NlaError::Refused(format!("the account name: {e}")))?;
    let identity = AuthIdentity { username, password: password.to_owned().into() };
    let mode = ClientMode::Ntlm(sspi::ntlm::NtlmConfig::default());
    let spn = format!("TERMSRV/{host}");
    let mut client =
        CredSspClient::new(public_key, Credentials::AuthIdentity(identity), CredSspMode::WithCredentials, mode, spn)
            .map_err(|e| NlaError::Refused(e.to_string()))?;
    let mut buf = Vec::new();
    let mut request = TsRequest::default();
    loop {
        let state = client.process(request).resolve_to_result().map_err(|e| NlaError::Refused(e.description))?;
        match state {
            ClientState::ReplyNeeded(ts) => {
                write_ts(target, &ts).await?;
                request = read_ts(target, &mut buf).await?;
                if let Some(code) = request.error_code.filter(|c| c.0 != 0) {
                    return Err(NlaError::Refused(format!("it refused the credential (NTSTATUS {:#010x})", code.0)));
                }
            }
            ClientState::FinalMessage(ts) => {
                write_ts(target, &ts).await?;
                return Ok(());
            }
        }
    }
}

/// A client that selected NLA, after TLS: NLA with a launch token, the authorization, the
/// target leg (NLA there too when the target asks), then as any RDP connection.
pub(super) async fn serve(mut run: Connection<'_>, mut client: ClientTls, listen_port: u16, request: &[u8]) {
    let (state, peer) = (run.state, run.peer);
    let source = peer.to_string();
    let tried = Arc::default();
    let (identity, rest) = match accept(state, &mut client, run.cfg.public_key.clone(), Arc::clone(&tried)).await {
        Ok(i) => i,
        Err(e) => {
            let name = tried.lock().unwrap_or_else(|p| p.into_inner()).take();
            tracing::info!(%peer, user = ?name, error = %e, "rdp: NLA sign-in failed");
            if let (Some(name), NlaError::Refused(_)) = (name, e) {
                if state.auth.rdp_nla_passwords {
                    // The password or a token: a failed sign-in (lockout) either way.
                    let user = portcullis_app::session_access::nla_user(&name);
                    portcullis_app::auth::nla_failed(state, &source, user).await;
                }
                audit_failed(state, &name, &source).await;
            }
            return;
        }
    };
    let name = name_of(&identity.username);
    let secret = Zeroizing::new(identity.password.as_ref().clone());
    drop(identity);
    let ready = match admit_and_connect(&mut run, &name, secret, listen_port).await {
        Ok(r) => r,
        Err(code) => return refuse(&mut client, request, &rest, code).await,
    };
    let Ready { pre, signed, mut target, nla_target } = ready;
    let mut readers = (FrameReader::with(bytes::BytesMut::from(&rest[..])), FrameReader::default());
    let selected = if nla_target { wire::PROTOCOL_HYBRID } else { wire::PROTOCOL_SSL };
    let Some((login, channels)) = signin::mcs(&mut client, &mut target, &mut readers, (run.requested, selected)).await
    else {
        return;
    };
    let legs = Legs { client, target, readers, target_nla: nla_target };
    run.finish(legs, channels, login, &pre, signed).await;
}

/// A connection signed in over NLA, authorized, with its target leg ready.
struct Ready {
    pre: signin::Prepared,
    signed: Signed,
    target: signin::TargetTls,
    nla_target: bool,
}

/// After the NLA sign-in as `name` with `secret` (a launch token, or with `[rdp]
/// nla_passwords` the Portcullis password): the token redeemed or the password checked, the
/// pipeline, the target leg (with NLA when the target asks). A refusal is audited here; its
/// Set Error Info code comes back.
async fn admit_and_connect(
    run: &mut Connection<'_>,
    name: &str,
    secret: Zeroizing<String>,
    listen_port: u16,
) -> Result<Ready, u32> {
    let (state, peer) = (run.state, run.peer);
    let source = peer.to_string();
    let (named, proxy_login) = if secret.starts_with(portcullis_core::connection::LAUNCH_TOKEN_PREFIX) {
        (Named::Token(secret.to_string()), None)
    } else {
        signed_in_with_password(state, name, secret, &source).await?
    };
    let Some(pre) = signin::prepare(state, named, peer, listen_port).await else {
        tracing::info!(%peer, user = %name, "rdp: the NLA sign-in gives no usable access; closed");
        return Err(errinfo::INSUFFICIENT_PRIVILEGES);
    };
    let user = pre.user.clone();
    let mismatch = match portcullis_core::connection::parse(name) {
        Ok(portcullis_core::connection::ConnectionString::Inband { user: u, account, asset }) => {
            (u != user.username || account != pre.account || asset != pre.asset.name).then(|| {
                format!("the launch token is for {}#{}@{}, not {name}", user.username, pre.account, pre.asset.name)
            })
        }
        _ => (portcullis_app::session_access::nla_user(name) != user.username)
            .then(|| format!("the launch token is not {name}'s")),
    };
    let refused = |reason: String, code: u32| {
        let user = user.clone();
        let source = source.clone();
        async move {
            signin::audit_refusal(state, &user, &reason, &source).await;
            Err(code)
        }
    };
    if let Some(reason) = mismatch {
        return refused(reason, errinfo::INSUFFICIENT_PRIVILEGES).await;
    }
    drop(run.ticket.take());
    run.shared.authenticated.send_replace(true);
    let authorized = match run.authorize(&user, &pre, &source, None, false).await {
        Ok(a) => a,
        Err(reason) => return refused(reason, errinfo::INSUFFICIENT_PRIVILEGES).await,
    };
    let (host, port) = pre.destination.clone();
    let (access, password) = (&authorized.0, &authorized.1);
    let leg = target_leg(&host, port, pre.source_address, &access.account.name);
    let (mut target, seen, nla_target) = match tokio::time::timeout(super::TARGET_CONNECT, leg).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let reason = format!("the target {} cannot be reached: {e}", access.asset.name);
            return refused(reason, errinfo::DENIED).await;
        }
        Err(_) => return refused(format!("the target {} did not answer", access.asset.name), errinfo::DENIED).await,
    };
    run.seen = seen;
    if let Err(reason) = run.check_pin(&access.asset).await {
        return refused(reason, errinfo::DENIED).await;
    }
    if nla_target {
        let key = target.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| public_key(c));
        let done = match key {
            Some(key) => connect(&mut target, key, &host, &access.account.name, password).await,
            None => Err(NlaError::Refused("its certificate has no readable public key".into())),
        };
        if let Err(e) = done {
            let reason = format!(
                "Portcullis could not log in to {}@{}: the target did not accept the vaulted credential over NLA ({e})",
                access.account.name, access.asset.name
            );
            tracing::warn!(%peer, %reason, "rdp: target NLA failed");
            return refused(reason, errinfo::DENIED).await;
        }
    }
    let signed = Signed { user, proxy_login, authorized };
    Ok(Ready { pre, signed, target, nla_target })
}

/// The NLA sign-in with the Portcullis password (`[rdp] nla_passwords`; NTLM proved it against
/// the kept NT hash): checked again as every sign-in (argon2, lockout), for an in-band name.
async fn signed_in_with_password(
    state: &AppState,
    name: &str,
    password: Zeroizing<String>,
    source: &str,
) -> Result<(Named, Option<portcullis_store::ProxyLogin>), u32> {
    let Ok(portcullis_core::connection::ConnectionString::Inband { user, account, asset }) =
        portcullis_core::connection::parse(name)
    else {
        tracing::info!(user = %name, "rdp: an NLA password sign-in without USER#ACCOUNT@ASSET; closed");
        return Err(errinfo::INSUFFICIENT_PRIVILEGES);
    };
    let (u, _) = match portcullis_app::auth::verify_login(state, source, &user, password, None).await {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(user = %user, reason = %e.message, "rdp: NLA password sign-in refused");
            return Err(errinfo::DENIED);
        }
    };
    let actor = portcullis_store::Actor { id: u.id.clone(), name: u.username.clone(), source: source.to_owned() };
    let login = portcullis_store::ProxyLogin {
        actor,
        at: state.now(),
        user_id: u.id.clone(),
        totp_step: None,
        key_fingerprint: None,
        via: "rdp",
    };
    Ok((Named::Inband { user, account, asset }, Some(login)))
}

/// Tells a client refused after its NLA sign-in why: a Set Error Info PDU (FreeRDP prints it),
/// which needs the MCS connection first — with no target yet, IronRDP's acceptor answers the
/// client's MCS connection up to its Client Info PDU (whose bytes go nowhere).
async fn refuse(client: &mut ClientTls, request: &[u8], rest: &[u8], code: u32) {
    use ironrdp_connector::Sequence as _;
    let run = async {
        let size = ironrdp_acceptor::DesktopSize { width: 800, height: 600 };
        let mut acceptor =
            ironrdp_acceptor::Acceptor::new(ironrdp_pdu::nego::SecurityProtocol::HYBRID, size, Vec::new(), None);
        let mut out = ironrdp_core::WriteBuf::new();
        // The negotiation and NLA happened already: the acceptor is walked past them.
        acceptor.step(request, None, &mut out).ok()?;
        acceptor.step(&[], None, &mut out).ok()?;
        acceptor.reached_security_upgrade()?;
        acceptor.mark_security_upgrade_as_done();
        if !acceptor.should_perform_credssp() {
            return None;
        }
        acceptor.mark_credssp_as_done();
        let mut reader = FrameReader::with(bytes::BytesMut::from(rest));
        while acceptor.state().name() != "LicensingExchange" {
            out.clear();
            if acceptor.next_pdu_hint().is_some() {
                let mut pdu = reader.next(client).await.ok()??;
                let step = acceptor.step(&pdu, None, &mut out);
                if let Ok(mut buf) = std::mem::take(&mut pdu).try_into_mut() {
                    zeroize::Zeroize::zeroize(&mut buf[..]);
                }
                step.ok()?;
            } else {
                acceptor.step(&[], None, &mut out).ok()?;
            }
            client.write_all(out.filled()).await.ok()?;
        }
        client.write_all(&wire::error_and_disconnect(1003, 1002, 0, code, false)).await.ok()?;
        client.shutdown().await.ok()
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), run).await;
}

/// The target leg after the authorization: TCP, the X.224 negotiation offering TLS and NLA,
/// TLS. The stream, the certificate's fingerprint, and whether the target selected NLA.
async fn target_leg(
    host: &str,
    port: u16,
    source: Option<std::net::IpAddr>,
    account: &str,
) -> std::io::Result<(signin::TargetTls, String, bool)> {
    let mut tcp = portcullis_connect::tcp(host, port, source).await?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(&wire::connect_request(account, wire::PROTOCOL_SSL | wire::PROTOCOL_HYBRID)).await?;
    let protocol = negotiated(&mut tcp).await?;
    let (tls, seen) = super::tls::connect_target(tcp, host).await?;
    Ok((tls, seen, protocol == wire::PROTOCOL_HYBRID))
}

/// The protocol a target's connection confirm selects (TLS or NLA), or why not.
async fn negotiated(tcp: &mut TcpStream) -> std::io::Result<u32> {
    let mut reader = FrameReader::default();
    let confirm = reader
        .next(tcp)
        .await?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed during the negotiation"))?;
    match wire::parse_connect_confirm(&confirm).map_err(std::io::Error::other)? {
        Confirm::Selected { protocol, .. } if protocol == wire::PROTOCOL_SSL || protocol == wire::PROTOCOL_HYBRID => {
            Ok(protocol)
        }
        Confirm::Selected { protocol, .. } => {
            Err(std::io::Error::other(format!("it selected security protocol {protocol:#x}, neither TLS nor NLA")))
        }
        Confirm::Failed(code) => {
            Err(std::io::Error::other(format!("it refused TLS and NLA (negotiation failure code {code})")))
        }
        Confirm::Legacy => Err(std::io::Error::other("it offers only Standard RDP Security, not TLS")),
    }
}

/// Whether the proxy answers a client's connection request with NLA: the client offers it,
/// and (with `[rdp] nla_passwords`, always but for a routing token) it named no target the
/// TLS sign-in could serve — a routing token (launch token) is
/// TLS; `USER#ACCOUNT@ASSET` is TLS (the Portcullis password in the Client Info PDU) unless
/// that user has a pending RDP launch token; anything else (mstsc's cut cookie, a plain user
/// name) is NLA.
pub(super) async fn chosen(state: &AppState, offered: u32, named: Option<&Named>) -> bool {
    if offered & wire::PROTOCOL_HYBRID == 0 {
        return false;
    }
    if offered & wire::PROTOCOL_SSL == 0 {
        return true;
    }
    if state.auth.rdp_nla_passwords {
        return !matches!(named, Some(Named::Token(_)));
    }
    match named {
        Some(Named::Token(_)) => false,
        Some(Named::Inband { user, .. }) => portcullis_app::session_access::has_nla_token(state, user).await,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn der_lengths_frame_ts_requests() {
        assert_eq!(ts_request_len(&[]).unwrap(), None);
        assert_eq!(ts_request_len(&[0x30]).unwrap(), None);
        assert_eq!(ts_request_len(&[0x30, 0x05]).unwrap(), Some(7));
        assert_eq!(ts_request_len(&[0x30, 0x82, 0x01]).unwrap(), None);
        assert_eq!(ts_request_len(&[0x30, 0x82, 0x01, 0x00]).unwrap(), Some(260));
        assert!(ts_request_len(&[0x31, 0x05]).is_err(), "not a SEQUENCE");
        assert!(ts_request_len(&[0x30, 0x80]).is_err(), "indefinite length");
        assert!(ts_request_len(&[0x30, 0x83, 0x10, 0x00, 0x00]).is_err(), "over the bound");
        let ts = TsRequest { nego_tokens: Some(vec![7; 300]), ..TsRequest::default() };
        let mut out = Vec::new();
        ts.encode_ts_request(&mut out).unwrap();
        assert_eq!(ts_request_len(&out).unwrap(), Some(out.len()));
    }

    proptest! {
        #[test]
        fn any_bytes_frame_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some(n)) = ts_request_len(&bytes) {
                prop_assert!((2..=MAX_TS_REQUEST).contains(&n));
            }
            let _ = TsRequest::from_buffer(&bytes);
        }
    }
}
