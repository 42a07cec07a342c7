//! The RDP proxy (R-SES-1, 7, 11): standard RDP clients (FreeRDP, mstsc) connect to Portcullis
//! naming the target as for SSH — `USER#ACCOUNT@ASSET` as the user name — and sign in with TLS
//! (the Portcullis password in the Client Info PDU; the client also sends the name before TLS
//! as its connection cookie, or a launch token as load-balancing info) or with NLA (a launch
//! token, or the password with `[rdp] nla_passwords`, proved inside CredSSP; see `nla`). The
//! proxy terminates TLS on both legs and relays the PDUs between them, with three
//! interventions: the X.224 negotiation is its own on each leg, the Client Info PDU the client
//! sends carries the Portcullis sign-in and is replaced by one carrying the vaulted credential
//! with automatic logon, and static virtual channels the connection policy refuses carry
//! nothing. Everything after the sign-in is recorded PDU by PDU (the Client Info PDU never).
//!
//! Module map: `wire` (the PDUs read or written, pure and property-tested), `frames` (whole
//! PDUs from a stream), `tls` (both legs' TLS and the target's certificate pin), `signin`
//! (who, which target, the pipeline up to the waits), `nla` (CredSSP on both legs, and telling
//! a client refused after NLA why), `relay` (the running session).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_app::App as AppState;
use portcullis_core::connection::{parse, ConnectionString};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::gate::GateLimits;
use crate::serve::{accept_loop, Shared};

mod frames;
mod nla;
mod relay;
mod signin;
mod tls;
pub mod wire;

pub use nla::public_key;
pub use tls::fingerprint;

use frames::FrameReader;
use wire::{errinfo, Confirm};

/// The RDP proxy's settings.
pub struct RdpConfig {
    /// Connections open at once (beyond: closed at accept).
    pub max_connections: usize,
    /// Time a client has from connecting to signing in.
    pub auth_timeout: Duration,
    /// Connections between accept and sign-in, in total and from one address.
    pub pre_auth: GateLimits,
    /// The proxy's TLS identity towards clients.
    pub tls: Arc<rustls::ServerConfig>,
    /// The public key of that identity's certificate (what NLA binds to; see `public_key`).
    pub public_key: Vec<u8>,
    /// Time a target has, after the credential, to report the logon.
    pub logon_timeout: Duration,
    /// The AA plugins connection policies may name.
    pub aa_plugins: Arc<crate::aa::AaPlugins>,
}

/// Time the target has to answer the connection request and the TLS handshake.
pub(super) const TARGET_CONNECT: Duration = Duration::from_secs(15);

/// Serves RDP on `listener` until the task is dropped.
pub async fn serve_rdp(state: AppState, cfg: RdpConfig, listener: TcpListener) {
    let (max, pre_auth) = (cfg.max_connections, cfg.pre_auth);
    let cfg = Arc::new(cfg);
    let app = state.clone();
    accept_loop(state, listener, max, pre_auth, "rdp", move |stream, peer, shared, ticket| {
        let (state, cfg) = (app.clone(), cfg.clone());
        async move {
            let deadline = cfg.auth_timeout;
            let run = connection(&state, &cfg, stream, peer, shared.clone(), ticket);
            // Until the session starts: the sign-in deadline (waits for a person excepted).
            let mut started = false;
            tokio::pin!(run);
            let mut limit = Box::pin(tokio::time::sleep(deadline));
            loop {
                tokio::select! {
                    _ = &mut run => return,
                    _ = &mut limit, if !started => {
                        if shared.live.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                            started = true;
                        } else if shared.waiting.load(std::sync::atomic::Ordering::Relaxed) {
                            limit = Box::pin(tokio::time::sleep(Duration::from_secs(1)));
                        } else {
                            tracing::debug!(%peer, "rdp: no sign-in in time; closed");
                            return;
                        }
                    }
                }
            }
        }
    })
    .await
}

/// Who the connection cookie names, before any password.
pub(crate) enum Named {
    Inband { user: String, account: String, asset: String },
    Token(String),
}

async fn connection(
    state: &AppState,
    cfg: &RdpConfig,
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut ticket: crate::gate::Ticket,
) {
    let listen_port = stream.local_addr().map_or(0, |a| a.port());
    let mut reader = FrameReader::default();
    let first = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(10), reader.next(&mut stream)) => r,
        _ = ticket.evicted.wait_for(|e| *e) => return,
    };
    let Ok(Ok(Some(first))) = first else { return };
    if first.len() > wire::MAX_CONNECT_REQUEST {
        return;
    }
    let Ok(request) = wire::parse_connect_request(&first) else {
        return tracing::debug!(%peer, "rdp: not an X.224 connection request; closed");
    };
    if request.protocols & (wire::PROTOCOL_SSL | wire::PROTOCOL_HYBRID) == 0 {
        // Standard RDP Security only: refused in the negotiation (the client says TLS is required).
        let _ = stream.write_all(&wire::connect_confirm(3, 0, wire::SSL_REQUIRED_BY_SERVER)).await;
        return tracing::info!(%peer, "rdp: a client without TLS was refused");
    }
    let named = match request.name.as_deref().map(parse) {
        Some(Ok(ConnectionString::Inband { user, account, asset })) => Some(Named::Inband { user, account, asset }),
        Some(Ok(ConnectionString::LaunchToken(t))) => Some(Named::Token(t)),
        _ => None,
    };
    if nla::chosen(state, request.protocols, named.as_ref()).await {
        // NLA: the target is named and the user signed in inside CredSSP, after TLS.
        if stream.write_all(&wire::connect_confirm(2, 0, wire::PROTOCOL_HYBRID)).await.is_err() {
            return;
        }
        let Some(client) = accept_tls(cfg, stream, peer).await else { return };
        let (seen, requested, ticket) = (String::new(), request.protocols, Some(ticket));
        let run = signin::Connection { state, cfg, peer, shared: &shared, ticket, seen, requested };
        return nla::serve(run, client, listen_port, &first).await;
    }
    let named = match named {
        Some(n) if request.protocols & wire::PROTOCOL_SSL != 0 => n,
        _ => {
            tracing::info!(%peer, "rdp: the client named no USER#ACCOUNT@ASSET (user name) or launch token; closed");
            return;
        }
    };
    let Some(pre) = signin::prepare(state, named, peer, listen_port).await else {
        return;
    };
    let (host, port) = pre.destination.clone();
    let target = tokio::time::timeout(TARGET_CONNECT, connect_target(&host, port, pre.source_address, &pre.account));
    let (target, confirm_flags, seen) = match target.await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::warn!(%peer, target = %format!("{host}:{port}"), error = %e, "rdp: the target cannot be reached");
            // The target's own negotiation failure (e.g. it requires NLA) goes to the client,
            // whose user then sees why (FreeRDP: HYBRID_REQUIRED_BY_SERVER).
            if let Some(NegotiationFailed(code)) = e.get_ref().and_then(|e| e.downcast_ref()) {
                let _ = stream.write_all(&wire::connect_confirm(3, 0, *code)).await;
            }
            return;
        }
        Err(_) => return tracing::warn!(%peer, target = %format!("{host}:{port}"), "rdp: the target did not answer"),
    };
    if stream.write_all(&wire::connect_confirm(2, confirm_flags, wire::PROTOCOL_SSL)).await.is_err() {
        return;
    }
    let Some(client) = accept_tls(cfg, stream, peer).await else { return };
    let requested = request.protocols;
    let run = signin::Connection { state, cfg, peer, shared: &shared, ticket: Some(ticket), seen, requested };
    run.go(client, target, pre).await;
}

/// The client's TLS handshake (10 seconds).
async fn accept_tls(cfg: &RdpConfig, stream: TcpStream, peer: SocketAddr) -> Option<signin::ClientTls> {
    let accept = tokio_rustls::TlsAcceptor::from(cfg.tls.clone()).accept(stream);
    match tokio::time::timeout(Duration::from_secs(10), accept).await {
        Ok(Ok(s)) => Some(s),
        _ => {
            tracing::debug!(%peer, "rdp: the client's TLS handshake failed");
            None
        }
    }
}

/// The target leg: TCP (from the policy's source address), the X.224 negotiation for TLS, the
/// TLS handshake. The confirm's flags and the certificate's fingerprint come back.
async fn connect_target(
    host: &str,
    port: u16,
    source: Option<std::net::IpAddr>,
    account: &str,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, u8, String)> {
    let mut tcp = portcullis_connect::tcp(host, port, source).await?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(&wire::connect_request(account, wire::PROTOCOL_SSL)).await?;
    let mut reader = FrameReader::default();
    let confirm = reader
        .next(&mut tcp)
        .await?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed during the negotiation"))?;
    let flags = match wire::parse_connect_confirm(&confirm).map_err(std::io::Error::other)? {
        Confirm::Selected { protocol, flags } if protocol == wire::PROTOCOL_SSL => flags,
        Confirm::Selected { protocol, .. } => {
            return Err(std::io::Error::other(format!("it selected security protocol {protocol:#x}, not TLS")))
        }
        Confirm::Failed(code) => return Err(std::io::Error::other(NegotiationFailed(code))),
        Confirm::Legacy => return Err(std::io::Error::other("it offers only Standard RDP Security, not TLS")),
    };
    let (tls, seen) = tls::connect_target(tcp, host).await?;
    Ok((tls, flags, seen))
}

/// A target's X.224 negotiation failure code.
#[derive(Debug)]
struct NegotiationFailed(u32);

impl std::fmt::Display for NegotiationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "it refused TLS (negotiation failure code {})", self.0)?;
        if self.0 == 5 {
            f.write_str(
                ": it requires NLA, which the proxy uses towards a target when the client signs in with a launch token",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for NegotiationFailed {}

/// The Set Error Info code a client is shown for why the proxy ended or refused it.
fn code_for(reason: &str) -> u32 {
    if reason.starts_with("Portcullis could not log in") {
        errinfo::DENIED
    } else if reason.starts_with("no activity") {
        errinfo::IDLE_TIMEOUT
    } else if reason.contains("expired") || reason.contains("access period ended") {
        errinfo::LOGON_TIMEOUT
    } else {
        errinfo::ADMIN_DISCONNECT
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_map_to_codes_clients_explain() {
        assert_eq!(super::code_for("no activity for 10 minutes"), super::errinfo::IDLE_TIMEOUT);
        assert_eq!(super::code_for("the request expired"), super::errinfo::LOGON_TIMEOUT);
        assert_eq!(super::code_for("the request was revoked"), super::errinfo::ADMIN_DISCONNECT);
    }
}
