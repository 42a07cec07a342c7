//! `portcullis serve`: opens the store, prepares the data directory and bootstrap secret, and
//! serves the HTTP application over HTTPS (or plain HTTP when configured).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use portcullis_api::ClientAddr;
use portcullis_app::auth::{new_token, token_hash};
use portcullis_app::{App, SystemClock};
use portcullis_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::Config;
use crate::keys::{ensure_private_dir, load_or_create_key};
use crate::tls;

pub async fn run(config: Config) -> Result<()> {
    // Everything the server creates (database, its journal, recordings, keys) is its own only.
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let data_dir = config.data_dir();
    ensure_private_dir(&data_dir)?;
    ensure_private_dir(&data_dir.join("keys"))?;
    let recordings_dir = config.recordings_dir();
    std::fs::create_dir_all(&recordings_dir)
        .with_context(|| format!("cannot create the recordings directory {}", recordings_dir.display()))?;
    // What an earlier run (or an administrator) left looser is narrowed, with a warning.
    for dir in [data_dir.clone(), data_dir.join("keys"), recordings_dir.clone()] {
        crate::keys::tighten(&dir, 0o700)?;
    }
    for file in ["portcullis.db", "portcullis.db-wal", "portcullis.db-shm"] {
        crate::keys::tighten(&data_dir.join(file), 0o600)?;
    }
    let audit_key = load_or_create_key(&data_dir.join("keys").join("audit.key"), 32)?;
    let vault = crate::keys::load_vault_ring(&config.vault, &data_dir.join("keys"))?;

    let store = Store::open(
        &StoreOptions {
            url: config.database_url(),
            sqlite_synchronous: config.storage.sqlite_synchronous.clone(),
            max_connections: config.storage.max_connections,
        },
        &audit_key,
    )
    .await
    .context("cannot open the database")?;

    // Keys that are not this database's are an error at start, before anything is served or
    // written (a node started with a fresh data directory on a shared database, a lost keys/):
    // the audit log must verify under the audit key — appending with another would break the
    // chain — and every KEK that wraps a stored credential or recording key must be loaded.
    if store.audit_key_matches().await? == Some(false) {
        anyhow::bail!(
            "{} is not the key this database's audit log is signed with (its latest events do not verify under it); \
             starting would break the audit chain. Copy keys/ from a server of this database (with several nodes: from \
             another node) into {}",
            data_dir.join("keys").join("audit.key").display(),
            data_dir.join("keys").display()
        );
    }
    for id in store.secret_kek_ids().await? {
        if vault.get(&id).is_err() {
            anyhow::bail!(
                "the vault key in use ({}) cannot open credentials sealed with key {id}; restore keys/vault.kek (or vault.key) to the key that was used, and any vault.kek.old.* files",
                vault.current().id()
            );
        }
    }

    let addr = config.listen_addr()?;
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let tls = if config.server.tls {
        let cert = (!config.server.tls_cert.is_empty())
            .then(|| (std::path::Path::new(&config.server.tls_cert), std::path::Path::new(&config.server.tls_key)));
        let mut hosts = vec!["localhost".to_owned(), local.ip().to_string()];
        if local.ip().is_unspecified() {
            hosts.push("127.0.0.1".into());
        }
        Some(tls::load_or_generate(cert, &data_dir, &hosts)?)
    } else {
        None
    };

    let ssh = if config.ssh.listen.is_empty() {
        None
    } else {
        let host_keys = portcullis_proxy::load_or_create_host_keys(&data_dir.join("keys"))?;
        let addr: std::net::SocketAddr = config.ssh.listen.parse()?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen for SSH on {addr}"))?;
        Some((listener, host_keys))
    };

    let aa_plugins = Arc::new(config.aa_plugins()?);
    let telnet = if config.telnet.listen.is_empty() {
        None
    } else {
        let addr: std::net::SocketAddr = config.telnet.listen.parse()?;
        Some(TcpListener::bind(addr).await.with_context(|| format!("cannot listen for Telnet on {addr}"))?)
    };

    let rdp = if config.rdp.listen.is_empty() {
        None
    } else {
        let addr: std::net::SocketAddr = config.rdp.listen.parse()?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen for RDP on {addr}"))?;
        let cert = (!config.rdp.tls_cert.is_empty())
            .then(|| (std::path::Path::new(&config.rdp.tls_cert), std::path::Path::new(&config.rdp.tls_key)));
        let hosts = vec!["localhost".to_owned(), addr.ip().to_string()];
        Some((listener, tls::rdp_identity(cert, &data_dir, &hosts)?))
    };

    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{local}");
    // Printed to standard output on purpose, not logged: the bootstrap secret must not reach
    // log collectors. Written in one piece, ending with the "Ready" line scripts wait for.
    let mut banner = format!("Portcullis {} listening on {url}\n", env!("CARGO_PKG_VERSION"));
    banner += &format!("Data directory: {}\n", data_dir.display());
    if store.backend() == portcullis_store::Backend::Postgres {
        // Several nodes may share the database: say which one this is, and who else is there.
        let node = config.node_name()?;
        let others: Vec<String> =
            store.nodes().await?.into_iter().filter(|n| n.name != node && n.state == "up").map(|n| n.name).collect();
        let with = if others.is_empty() { String::new() } else { format!("; other nodes up: {}", others.join(", ")) };
        banner += &format!("Node: {node} (PostgreSQL{with})\n");
    }
    if let Some(t) = &tls {
        banner += &format!("TLS certificate SHA-256 fingerprint: {}\n", t.fingerprint);
    }
    if let Some((l, keys)) = &ssh {
        let at = l.local_addr()?;
        banner += &format!("SSH proxy listening on {at}\n");
        // What `ssh` shows on first connect, to compare before answering "yes".
        for (algorithm, fingerprint, _) in portcullis_proxy::host_key_fingerprints(keys) {
            banner += &format!("SSH host key fingerprint: {fingerprint} ({algorithm})\n");
        }
        if let Some((_, _, public)) = portcullis_proxy::host_key_fingerprints(keys).first() {
            banner += &format!("known_hosts line: [{}]:{} {public}\n", at.ip(), at.port());
        }
    }
    if let Some(l) = &telnet {
        banner += &format!(
            "Telnet proxy listening on {} (cleartext; a connection policy must admit Telnet)\n",
            l.local_addr()?
        );
    }
    if let Some((l, identity)) = &rdp {
        banner += &format!(
            "RDP proxy listening on {} (TLS; a connection policy must admit RDP); certificate SHA-256 fingerprint: {}\n",
            l.local_addr()?,
            identity.fingerprint
        );
    }
    if store.user_count().await? == 0 {
        let secret = new_token("pcb_");
        // One per node: whichever node's secret is used first creates the administrator.
        let node = config.node_name()?;
        store.put_internal_setting(&format!("bootstrap_hash:{node}"), &token_hash(&secret)).await?;
        let pin = tls.as_ref().map(|t| format!(" --fingerprint {}", t.fingerprint)).unwrap_or_default();
        banner +=
            "\nNo administrator exists yet. One-time bootstrap secret (valid until used or this server restarts):\n";
        banner += &format!("  {}\n", &*secret);
        banner += "Create the first administrator with:\n";
        banner += &format!("  portcullis bootstrap --server {url}{pin} --username admin\n\n");
    }
    banner += &format!("Ready: API documentation at {url}/api/v1/docs\n");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(banner.as_bytes())?;
        out.flush()?;
    }
    // The banner held the secret; wipe it.
    zeroize::Zeroize::zeroize(&mut banner);
    tracing::info!(%url, backend = ?store.backend(), "server started");

    let channels = config.channels()?;
    let mut directories = Vec::new();
    for (settings, sync_interval) in config.directories()? {
        tracing::info!(directory = %settings.name, url = %settings.url, "directory users sign in with their directory password");
        let directory = portcullis_directory::Directory::new(settings)?;
        directories.push(portcullis_app::directory::DirectoryConn { directory, sync_interval });
    }
    let state = App::new(store.clone(), Arc::new(SystemClock), config.auth_settings(), vault)
        .with_change_settings(config.change_settings())
        .with_directories(directories)
        .with_sso(config.sso()?)
        .with_archive(match config.archive()? {
            Some(settings) => {
                let archive = portcullis_app::archive::Archive::new(settings).map_err(anyhow::Error::msg)?;
                tracing::info!(archive = %archive.location, "ended sessions' recordings are copied to the archive");
                Some(archive)
            }
            None => None,
        })
        .with_mail(channels.mail.is_some())
        .with_metrics_token(Some(config.server.metrics_token.clone()).filter(|t| !t.is_empty()))
        .with_recordings(recordings_dir.clone())
        .with_node(&config.node_name()?)
        .with_audit_anchor(data_dir.join("audit-anchors"))
        .with_aa_plugins(aa_plugins.keys().cloned().collect())
        .with_telnet_port(telnet.as_ref().and_then(|l| l.local_addr().ok()).map_or(0, |a| a.port()))
        .with_rdp_host(rdp.as_ref().and_then(|(l, _)| l.local_addr().ok()).map(|a| a.to_string()).unwrap_or_default())
        .with_ssh_host(ssh.as_ref().and_then(|(l, _)| l.local_addr().ok()).map(|a| a.to_string()).unwrap_or_default())
        .with_ssh_host_keys(
            ssh.as_ref()
                .map(|(_, keys)| portcullis_proxy::host_key_fingerprints(keys))
                .unwrap_or_default()
                .into_iter()
                .map(|(algorithm, fingerprint, public_key)| portcullis_app::HostKeyInfo {
                    algorithm,
                    fingerprint,
                    public_key,
                })
                .collect(),
        );
    // One-time-code secrets an older version kept as text are sealed now.
    match portcullis_app::totp_secret::seal_legacy(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(sealed = n, "sealed one-time-code secrets kept as text by an older version"),
        Err(e) => anyhow::bail!("cannot seal the stored one-time-code secrets: {}", e.message),
    }
    // This node joins the others on the database (its name must be its own).
    let cluster = config.cluster_settings()?;
    portcullis_app::cluster::join(&state, cluster).await.map_err(anyhow::Error::msg)?;
    tracing::info!(node = %state.node, "node registered");
    // Sessions an earlier run left open (a crash) are closed from their recordings first.
    match portcullis_app::sessions::close_orphans(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(sessions = n, "closed sessions left open by an earlier run"),
        Err(e) => tracing::error!(error = %e.message, "cannot close the sessions an earlier run left open"),
    }
    // The session search index, encrypted under a key the vault seals.
    let state = if config.storage.search_index {
        let search = portcullis_app::search::open(&state, &data_dir.join("search"))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the session search index: {}", e.message))?;
        let state = state.with_search(search);
        tokio::spawn(portcullis_app::search::run(state.clone()));
        state
    } else {
        tracing::warn!("session search is off (storage.search_index = false): sessions are not indexed");
        state
    };
    let heartbeats = tokio::spawn(portcullis_app::cluster::run_heartbeats(state.clone(), cluster));
    let cluster_events = tokio::spawn(portcullis_app::cluster::run_events(state.clone()));
    tokio::spawn(portcullis_app::retention::run(state.clone()));
    tokio::spawn(portcullis_app::archive::run(state.clone()));
    let scheduler = tokio::spawn(portcullis_app::scheduler::run_transitions(state.clone()));
    let proxy = ssh.map(|(listener, host_keys)| {
        let cfg = portcullis_proxy::ProxyConfig {
            host_keys,
            max_connections: config.ssh.max_connections,
            auth_timeout: Duration::from_secs(config.ssh.auth_timeout_seconds),
            pre_auth: portcullis_proxy::GateLimits {
                total: config.ssh.max_unauthenticated,
                per_source: config.ssh.max_unauthenticated_per_source,
            },
            aa_plugins: aa_plugins.clone(),
        };
        tokio::spawn(portcullis_proxy::serve(state.clone(), cfg, listener))
    });
    let telnet_proxy = match telnet {
        Some(listener) => {
            let cfg = portcullis_proxy::TelnetConfig {
                max_connections: config.telnet.max_connections,
                auth_timeout: Duration::from_secs(config.telnet.auth_timeout_seconds),
                pre_auth: portcullis_proxy::GateLimits {
                    total: config.telnet.max_unauthenticated,
                    per_source: config.telnet.max_unauthenticated_per_source,
                },
                prompts: config.telnet.prompts()?,
                aa_plugins: aa_plugins.clone(),
            };
            Some(tokio::spawn(portcullis_proxy::serve_telnet(state.clone(), cfg, listener)))
        }
        None => None,
    };
    let rdp_proxy = rdp.map(|(listener, identity)| {
        let public_key = portcullis_proxy::rdp_public_key(&identity.leaf).unwrap_or_default();
        let cfg = portcullis_proxy::RdpConfig {
            public_key,
            max_connections: config.rdp.max_connections,
            auth_timeout: Duration::from_secs(config.rdp.auth_timeout_seconds),
            pre_auth: portcullis_proxy::GateLimits {
                total: config.rdp.max_unauthenticated,
                per_source: config.rdp.max_unauthenticated_per_source,
            },
            tls: identity.config,
            logon_timeout: Duration::from_secs(config.rdp.logon_timeout_seconds),
            aa_plugins: aa_plugins.clone(),
        };
        tokio::spawn(portcullis_proxy::serve_rdp(state.clone(), cfg, listener))
    });
    let changer = tokio::spawn(portcullis_app::scheduler::run_credential_changes(state.clone()));
    // Directory synchronisations, and the end of disabled users' live sessions.
    let directory_sync = tokio::spawn(portcullis_app::directory::run(state.clone()));
    // Every audit event to the SIEM, from the cursor the store keeps.
    let (stop_delivery, delivery_stop) = tokio::sync::watch::channel(false);
    let siem = match config.siem.syslog()? {
        Some(cfg) => {
            tracing::info!(target = ?cfg.target, format = ?cfg.format, "forwarding every audit event to syslog");
            let forwarder = portcullis_notify::syslog::Forwarder::new(state.clone(), cfg)?;
            Some(tokio::spawn(forwarder.run(delivery_stop.clone())))
        }
        None => None,
    };
    // Notifications (e-mail, webhook), from the outbox.
    // Replies to approval mails, on Portcullis's own SMTP listener.
    let replies = match (channels.reply_listen, channels.mail.as_ref().and_then(|m| m.reply.clone())) {
        (Some(addr), Some(cfg)) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("mail.reply_listen: cannot listen on {addr}"))?;
            tracing::info!(listen = %addr, address = %cfg.address, "taking replies to approval mails");
            let inbound = portcullis_notify::inbound::Inbound::new(state.clone(), cfg);
            Some(tokio::spawn(inbound.run(listener, delivery_stop.clone())))
        }
        _ => None,
    };
    let mailer = if channels.mail.is_some() || channels.webhook.is_some() {
        let mail = match channels.mail {
            Some(cfg) => {
                tracing::info!(from = %cfg.from, "sending notifications by e-mail");
                Some(portcullis_notify::mail::Mailer::new(state.clone(), cfg)?)
            }
            None => None,
        };
        let hook = match channels.webhook {
            Some(cfg) => {
                tracing::info!(format = ?cfg.format, "sending notifications to a webhook");
                Some(portcullis_notify::webhook::Webhook::new(state.clone(), cfg).map_err(anyhow::Error::msg)?)
            }
            None => None,
        };
        let notifier = portcullis_notify::notifier::Notifier::new(state.clone(), mail, hook, channels.notifier);
        Some(tokio::spawn(notifier.run(delivery_stop.clone())))
    } else {
        None
    };
    // One origin: the API under /api/v1, the web UI at / (its own routes, headers and CSRF).
    let api = portcullis_api::router(portcullis_api::AppState::new(state.clone()));
    let node = state.clone();
    let app = secure_headers(api.clone().merge(portcullis_web::router(state, tls.is_some(), api)), tls.is_some());
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config));

    let connections = Arc::new(tokio::sync::Semaphore::new(HTTP_MAX_CONNECTIONS));
    let gate = portcullis_proxy::Gate::new("http", HTTP_WAITING);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let app = app.clone();
                let acceptor = acceptor.clone();
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    // At the cap: refused at once, so file descriptors never run out.
                    tracing::warn!(%peer, "too many HTTP connections; refusing a new one");
                    continue;
                };
                let ticket = gate.admit(peer.ip());
                let mut evicted = ticket.evicted.clone();
                let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let ticket = Waiting { ticket: std::sync::Mutex::new(Some(ticket)), asked: asked.clone() };
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = stream.set_nodelay(true);
                    let serve = async move {
                        match acceptor {
                            Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_connection(TokioIo::new(tls), peer, app, ticket).await,
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            },
                            None => serve_connection(TokioIo::new(stream), peer, app, ticket).await,
                        }
                    };
                    // Dropped to make room, or when its time is up, while it has not sent a
                    // whole first request (the TLS handshake and HTTP version detection have no
                    // deadline of their own in hyper).
                    let deadline = async {
                        tokio::time::sleep(HEADER_TIMEOUT).await;
                        if asked.load(std::sync::atomic::Ordering::Relaxed) {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        _ = serve => {}
                        Ok(_) = evicted.wait_for(|e| *e) => tracing::debug!(%peer, "dropped: no request yet and newer connections waiting"),
                        _ = deadline => tracing::debug!(%peer, "closed: no request within the time limit"),
                    }
                });
            }
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                break;
            }
        }
    }
    scheduler.abort();
    changer.abort();
    directory_sync.abort();
    // The forwarder saves its cursor before it ends (a few seconds at most).
    let _ = stop_delivery.send(true);
    for task in [siem, mailer, replies].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    for p in [proxy, telnet_proxy, rdp_proxy].into_iter().flatten() {
        p.abort();
    }
    heartbeats.abort();
    cluster_events.abort();
    portcullis_app::cluster::leave(&node).await;
    // The search index is written unsynced while the server runs; made durable now.
    if let Some(index) = node.search.clone() {
        let dir = data_dir.join("search");
        match tokio::task::spawn_blocking(move || index.close(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot close the search index cleanly; it is rebuilt if the machine stops")
            }
            Err(_) => {}
        }
    }
    store.close().await;
    Ok(())
}

/// Headers every response carries unless its route set its own (the web UI sets a stricter
/// policy): no framing anywhere (the API docs page included), no type sniffing, no referrer to
/// other sites, and over TLS, HSTS.
fn secure_headers(app: axum::Router, tls: bool) -> axum::Router {
    use axum::http::{header, HeaderValue};
    use tower_http::set_header::SetResponseHeaderLayer;
    let app = app
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ));
    if tls {
        app.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
    } else {
        app
    }
}

/// The most HTTP connections open at once; more are closed as they arrive (the limit is
/// well below the usual 1,024 file descriptors, so the database and proxies keep theirs).
const HTTP_MAX_CONNECTIONS: usize = 768;
/// Connections that have not yet sent a whole first request: at most this many, and this many
/// from one address; a newcomer drops the oldest (slowloris, silent connections). Generous
/// per address: behind a reverse proxy or NAT, one address is many people, and a burst of
/// hundreds of genuine requests must not drop its own first ones.
const HTTP_WAITING: portcullis_proxy::GateLimits = portcullis_proxy::GateLimits { total: 512, per_source: 448 };
/// A request's headers must arrive within this time; a kept-alive HTTP/1.1 connection idle
/// for as long is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection's place among those that have not sent a whole first request yet.
struct Waiting {
    ticket: std::sync::Mutex<Option<portcullis_proxy::Ticket>>,
    /// Set with the first request.
    asked: Arc<std::sync::atomic::AtomicBool>,
}

impl Waiting {
    /// Leaves the waiting room (its first complete request arrived).
    fn leave(&self) {
        self.asked.store(true, std::sync::atomic::Ordering::Relaxed);
        self.ticket.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

async fn serve_connection<I>(io: I, peer: SocketAddr, app: axum::Router, waiting: Waiting)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        waiting.leave();
        req.extensions_mut().insert(ClientAddr(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(HEADER_TIMEOUT);
    if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
