//! The HTTP client: the saved sign-in, TLS trust (system roots, a pinned fingerprint, or an
//! explicit `--insecure`), and JSON requests with the server's errors turned into messages.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::CliError;

/// What `portcullis login` saves (mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Saved {
    pub server: String,
    pub token: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub insecure: bool,
}

pub fn saved_path() -> Result<PathBuf, CliError> {
    if let Ok(p) = std::env::var("PORTCULLIS_CLI_CONFIG") {
        return Ok(p.into());
    }
    let dir = dirs::config_dir()
        .ok_or_else(|| CliError::Usage("cannot find your configuration directory; set PORTCULLIS_CLI_CONFIG".into()))?;
    Ok(dir.join("portcullis").join("cli.json"))
}

pub fn load_saved() -> Result<Option<Saved>, CliError> {
    let path = saved_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| CliError::Usage(format!("{} is damaged: {e}", path.display())))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Io(path.display().to_string(), e)),
    }
}

pub fn store_saved(saved: &Saved) -> Result<PathBuf, CliError> {
    let path = saved_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CliError::Io(dir.display().to_string(), e))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| CliError::Io(tmp.display().to_string(), e))?;
    f.write_all(&serde_json::to_vec_pretty(saved).expect("serializable"))
        .map_err(|e| CliError::Io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| CliError::Io(path.display().to_string(), e))?;
    Ok(path)
}

pub fn forget_saved() -> Result<(), CliError> {
    let path = saved_path()?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CliError::Io(path.display().to_string(), e)),
        _ => Ok(()),
    }
}

/// Normalises `AB:cd:…` or `abcd…` to lowercase hex without separators.
pub fn normalise_fingerprint(f: &str) -> Result<String, CliError> {
    let hex: String = f.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CliError::Usage(
            "--fingerprint must be a SHA-256 fingerprint (64 hex digits, colons allowed)".into(),
        ));
    }
    Ok(hex)
}

#[derive(Debug)]
struct PinnedVerifier {
    /// `None` accepts any certificate (`--insecure`).
    fingerprint: Option<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.fingerprint {
            None => Ok(ServerCertVerified::assertion()),
            Some(expected) => {
                let actual = hex::encode(Sha256::digest(end_entity.as_ref()));
                if &actual == expected {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "the server's certificate fingerprint {actual} is not the pinned one"
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(
        server: &str,
        token: Option<String>,
        fingerprint: Option<&str>,
        insecure: bool,
    ) -> Result<Client, CliError> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(CliError::Usage(format!("--server must be an http:// or https:// URL, not '{server}'")));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let tls = if fingerprint.is_some() || insecure {
            let fingerprint = fingerprint.map(normalise_fingerprint).transpose()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier { fingerprint, provider }))
                .with_no_client_auth()
        } else {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(Client { http, base, token })
    }

    /// Sends a request; a non-2xx answer becomes [`CliError::Server`] with its message.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| CliError::Connect(self.base.clone(), describe(&e)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| CliError::Connect(self.base.clone(), describe(&e)))?;
        let value: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status.is_success() {
            Ok(value)
        } else {
            let code = value.get("code").and_then(Value::as_str).unwrap_or("error").to_owned();
            let message =
                value.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| status.to_string());
            Err(CliError::Server { status: status.as_u16(), code, message })
        }
    }

    /// Streams a non-JSON answer (a recording export) into `out`, with a progress bar on a
    /// terminal; returns the bytes written. A stream cut short by the server is an error.
    pub async fn download(&self, path: &str, out: &mut dyn std::io::Write) -> Result<u64, CliError> {
        self.stream(path, out, true).await
    }

    /// Copies a long-lived stream (a live session) into `out` as it comes, flushing each
    /// chunk; no time limit, no progress bar.
    pub async fn follow(&self, path: &str, out: &mut dyn std::io::Write) -> Result<u64, CliError> {
        self.stream(path, out, false).await
    }

    async fn stream(&self, path: &str, out: &mut dyn std::io::Write, export: bool) -> Result<u64, CliError> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if !export {
            // A watch lasts as long as the session.
            req = req.timeout(std::time::Duration::from_secs(7 * 24 * 3600));
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await.map_err(|e| CliError::Connect(self.base.clone(), describe(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = value.get("code").and_then(Value::as_str).unwrap_or("error").to_owned();
            let message =
                value.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| status.to_string());
            return Err(CliError::Server { status: status.as_u16(), code, message });
        }
        if let Some(n) = resp.headers().get("x-recording-cut-after-chunk").and_then(|v| v.to_str().ok()) {
            eprintln!(
                "warning: this recording has no final seal: it was cut after chunk {n} (a server crash or a \
                 truncation); what follows is authentic up to the cut. See `portcullis recording verify`."
            );
        }
        use std::io::IsTerminal;
        let bar = if export && std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {bytes} ({bytes_per_sec}) {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut total = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    out.write_all(&chunk).map_err(|e| CliError::Io("output".into(), e))?;
                    if !export {
                        out.flush().map_err(|e| CliError::Io("output".into(), e))?;
                    }
                    total += chunk.len() as u64;
                    bar.set_position(total);
                }
                Ok(None) => break,
                Err(e) => {
                    bar.finish_and_clear();
                    let what = if export { "the export" } else { "the watch" };
                    let hint = if export { " (verify the recording)" } else { "" };
                    return Err(CliError::Failed(format!(
                        "{what} stopped after {total} bytes: {}{hint}",
                        describe(&e)
                    )));
                }
            }
        }
        bar.finish_and_clear();
        Ok(total)
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.call(reqwest::Method::PUT, path, body).await
    }
    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
