//! A target that costs almost nothing: an in-process SSH server that accepts any password,
//! opens any session and answers any command with one line. Pointed at it, the proxy's
//! sign-in capacity is the proxy's own (its client handshake, user authentication, request
//! lookup, session bookkeeping and its own leg's handshake), not the target's (sshd forks a
//! process and checks shadow for every login).

use std::sync::Arc;
use std::time::Duration;

use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId};

#[derive(Clone)]
struct Null;

impl russh::server::Handler for Null {
    type Error = russh::Error;

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        session.data(channel, b"x\n".to_vec())?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)
    }
}

/// Starts the null target on 127.0.0.1; returns its port. It runs until the process ends.
pub async fn start() -> u16 {
    let pair = portcullis_vault::generate_ssh_key(portcullis_vault::KeyAlgorithm::Ed25519, "null").expect("key");
    let text = String::from_utf8(pair.private_openssh.expose().to_vec()).expect("utf-8");
    let key = russh::keys::PrivateKey::from_openssh(text.trim()).expect("host key");
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(running) = russh::server::run_stream(config, stream, Null).await {
                    let _ = running.await;
                }
            });
        }
    });
    port
}
